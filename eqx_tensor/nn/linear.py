"""Per-key linear layers over TensorMaps: :class:`Linear` and :class:`EquivariantLinear`.

Each block is multiplied along its properties by the weight matrix of its key, like
metatensor-learn's ``Linear`` (a ``ModuleMap`` of ``torch.nn.Linear``). The weights of all keys
live in one stacked array, so that the parameters are a handful of leaves for optax and the
blocks can be computed together (see :mod:`eqx_tensor.nn._stacking`): with one leaf per key,
the optimiser update and the backward pass would run one small operation per key instead of one
per stacked array.

Parameters (``variables["params"]``):

* ``weight``: shape ``(n_keys, in_features, out_features)``; ``weight[k]`` is the matrix of the
  ``k``-th key, i.e. the transpose of ``torch.nn.Linear.weight``. When keys have different
  feature sizes, the array is zero-padded to the largest ones and the padding is never read.
* ``bias`` (only if some key has a bias): shape ``(n_bias_keys, out_features)``, one row per
  key with a bias, in key order.
* ``keys``: which key each row belongs to, as static metadata in the tree's structure (no
  arrays): ``{"<k> <key name> <in>x<out>": None}``, e.g. ``"0 o3_lambda=0,o3_sigma=1 8x4"``
  (:func:`~eqx_tensor.nn.key_to_name`). These are the keys of ``in_keys``, or of the input at init.

Blocks are looked up by key: an input may hold any of these keys, in any order (the output keys
follow the input's order), and per-key attributes given as sequences follow the recorded key
order. A block whose key is not recorded, or whose number of properties differs from its key's
``in``, is refused. Parameters without ``keys`` (built by hand, or before it was recorded) are
only accepted with ``in_keys``, whose order then gives the rows, or for one block and one row.

Explicit gradient blocks (e.g. ``positions`` gradients) are transformed by the same weights
**without** the bias, so they stay the derivatives of the transformed values (metatensor-learn
adds the bias to gradient blocks too).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from ..labels import Labels
from ..tensormap import TensorMap
from . import _utils
from ._compiled import Compiled
from ._stacking import STACKING_MODES, grouped_matmul
from ._utils import _shown, key_names, parameter_dtype

__all__ = [
    "EquivariantLinear",
    "Linear",
    "LinearSpec",
    "linear",
    "torch_linear_init",
]

Array = Any
Initializer = Any  # flax-style: (key, shape, dtype) -> Array


def torch_linear_init(key: Array, shape: tuple[int, ...], dtype: Any, fan_in: int) -> Array:
    """``torch.nn.Linear``'s default: uniform in ``[-1/sqrt(fan_in), 1/sqrt(fan_in)]``."""
    bound = 1.0 / np.sqrt(fan_in) if fan_in > 0 else 0.0
    return jax.random.uniform(key, shape, dtype, -bound, bound)


# ----------------------------------------------------------------------------- pure function


def linear(
    tensor: TensorMap,
    weight: Array,
    bias: Array | None = None,
    *,
    weight_index: Sequence[int] | None = None,
    bias_index: Sequence[int] | None = None,
    out_features: Sequence[int] | None = None,
    out_properties: Sequence[Labels] | None = None,
    stacking: str = "auto",
) -> TensorMap:
    """Multiply every block of ``tensor`` by the weights of its key (pure function).

    Args:
        tensor: input TensorMap; block ``b`` has values ``(n_b, *components_b, in_b)``.
        weight: stacked weights ``(n_weights, max_in, max_out)``.
        bias: stacked biases ``(n_bias, max_out)``, or ``None``.
        weight_index: row of ``weight`` for each block (default: block order).
        bias_index: row of ``bias`` for each block, ``-1`` for no bias (default: block order
            when ``bias`` is given).
        out_features: output features of each block (default: ``weight.shape[2]``).
        out_properties: output properties of each block (default ``Labels.range("_", out)``).
        stacking: how blocks are batched together, one of ``"auto"``, ``"blocks"``, ``"pad"``.

    Returns:
        A TensorMap with the same keys, samples and components, values
        ``(n_b, *components_b, out_b)``; gradient blocks are transformed without the bias.
    """
    tensor = _utils.check_tensor(tensor, "linear")
    if stacking not in STACKING_MODES:
        raise ValueError(f"linear: stacking must be one of {STACKING_MODES}, got {stacking!r}")
    n_blocks = len(tensor)
    weight = jnp.asarray(weight)
    if weight.ndim != 3:
        raise ValueError(f"linear: weight must have shape (n_keys, in, out), got {weight.shape}")
    weight_index = tuple(
        range(n_blocks) if weight_index is None else (int(i) for i in weight_index)
    )
    if out_features is None:
        out_features = [weight.shape[2]] * n_blocks
    out_features = tuple(int(f) for f in out_features)
    if bias is not None:
        bias = jnp.asarray(bias)
        bias_index = tuple(range(n_blocks) if bias_index is None else (int(i) for i in bias_index))
    else:
        bias_index = None
    for b, block in enumerate(tensor.blocks()):
        fin = block.values.shape[-1]
        if fin > weight.shape[1]:
            raise ValueError(
                f"linear: the block {tensor.keys.entry(b)} has {fin} properties but the weights "
                f"take at most {weight.shape[1]} input features"
            )
    if out_properties is None:
        out_properties = tuple(_utils.range_properties(f) for f in out_features)
    else:
        out_properties = tuple(out_properties)
        for b, (fout, properties) in enumerate(zip(out_features, out_properties)):
            if len(properties) != fout:
                raise ValueError(
                    f"linear: out_properties for {tensor.keys.entry(b)} has {len(properties)} "
                    f"entries but the block has {fout} output features"
                )
    return _linear(
        tensor, weight, bias, weight_index, bias_index, out_features, out_properties, stacking
    )


# One compiled program per TensorMap structure: eager callers (notebooks, tests) would otherwise
# compile every small per-block operation separately. Inside a user's jit this is inlined.
@functools.partial(jax.jit, static_argnums=(3, 4, 5, 6, 7))
def _linear(
    tensor: TensorMap,
    weight: Array,
    bias: Array | None,
    weight_index: tuple[int, ...],
    bias_index: tuple[int, ...] | None,
    out_features: tuple[int, ...],
    out_properties: tuple[Labels, ...],
    stacking: str,
) -> TensorMap:
    segments, segment_weight, segment_out = [], [], []
    for b, block in enumerate(tensor.blocks()):
        fin = block.values.shape[-1]
        for array in [block.values] + [g.values for _, g in block.gradients()]:
            segments.append(array.reshape(math.prod(array.shape[:-1]), fin))
            segment_weight.append(weight_index[b])
            segment_out.append(out_features[b])
    outputs = grouped_matmul(segments, segment_weight, weight, segment_out, stacking=stacking)

    blocks = []
    position = 0
    for b, block in enumerate(tensor.blocks()):
        fout = out_features[b]
        values = outputs[position]
        position += 1
        if bias is not None and bias_index[b] >= 0:
            values = values + bias[bias_index[b], :fout]
        values = values.reshape(*block.values.shape[:-1], fout)
        gradients = {}
        for parameter, gradient in block.gradients():
            gradients[parameter] = outputs[position].reshape(*gradient.values.shape[:-1], fout)
            position += 1
        blocks.append(block.with_arrays(values, properties=out_properties[b], gradients=gradients))
    return _utils.with_blocks(tensor, blocks)


# ----------------------------------------------------------------------------- key record
#: The parameter entry recording the key of each stacked row (module docstring).
KEYS_ENTRY = "keys"


def key_record(names: Sequence[str], shapes: Sequence[tuple[int, ...] | None]) -> dict[str, None]:
    """The ``keys`` entry of the parameters: ``{"<row> <key name> <shape>": None}``.

    ``shape`` is ``"<in>x<out>"`` for a weight matrix, ``"<n>"`` for a vector, ``"-"`` for a
    key without parameters. The row number is zero-padded so that the entries sort in row
    order (JAX sorts dict keys when it rebuilds a tree).
    """
    width = len(str(max(len(names) - 1, 0)))
    return {
        f"{row:0{width}d} {name} {_shape_text(shape)}": None
        for row, (name, shape) in enumerate(zip(names, shapes))
    }


def _shape_text(shape: tuple[int, ...] | None) -> str:
    return "-" if shape is None else "x".join(str(int(d)) for d in shape)


class KeyRecord(NamedTuple):
    """The parsed ``keys`` entry: the keys of the rows, their names, shapes and rows."""

    keys: Labels
    names: tuple[str, ...]
    shapes: tuple[tuple[int, ...] | None, ...]
    rows: Mapping[str, int]


@functools.lru_cache(maxsize=256)
def _parse_record(entries: tuple[str, ...], empty_names: tuple[str, ...], layer: str) -> KeyRecord:
    parsed = []
    for entry in entries:
        try:
            row, name, shape = entry.split(" ")
            pairs = [item.split("=") for item in name.split(",")]
            dimensions = tuple(n for n, _ in pairs)
            values = tuple(int(v) for _, v in pairs)
            dims = None if shape == "-" else tuple(int(d) for d in shape.split("x"))
            parsed.append((int(row), name, dimensions, values, dims))
        except ValueError:
            raise ValueError(
                f"{layer}: the entry {entry!r} of the parameters' '{KEYS_ENTRY}' is not "
                "'<row> <key name> <shape>' (e.g. '0 o3_lambda=0,o3_sigma=1 8x4'); keep the "
                f"'{KEYS_ENTRY}' that model.init created"
            ) from None
    parsed.sort()
    if [p[0] for p in parsed] != list(range(len(parsed))) or len({p[2] for p in parsed}) > 1:
        raise ValueError(
            f"{layer}: the parameters' '{KEYS_ENTRY}' must number its rows 0, 1, ... with the "
            f"same key dimensions, got {list(entries)}; keep the '{KEYS_ENTRY}' that model.init "
            "created"
        )
    dimensions = parsed[0][2] if parsed else empty_names
    values = np.array([p[3] for p in parsed], dtype=np.int32).reshape(len(parsed), len(dimensions))
    names = tuple(p[1] for p in parsed)
    return KeyRecord(
        Labels(list(dimensions), values),
        names,
        tuple(p[4] for p in parsed),
        {name: row for row, name in enumerate(names)},
    )


def read_record(module: Any, keys: Labels, layer: str) -> KeyRecord | None:
    """The parsed ``keys`` entry of ``module``'s parameters, ``None`` if there is none."""
    if not module.has_variable("params", KEYS_ENTRY):
        return None
    record = module.get_variable("params", KEYS_ENTRY)
    if not isinstance(record, Mapping):
        raise ValueError(
            f"{layer}: the parameters' '{KEYS_ENTRY}' must be the mapping that model.init "
            f"created, got a {type(record).__name__}"
        )
    return _parse_record(tuple(sorted(record)), tuple(keys.names), layer)


def record_rows(
    record: KeyRecord, keys: Labels, in_keys: Labels | None, layer: str, what: str
) -> np.ndarray:
    """The row of each block of an input with ``keys``, refusing keys that are not recorded."""
    if in_keys is not None:
        _utils.key_positions(keys, in_keys, layer)  # keys outside in_keys: that error first
    if in_keys is not None and key_names(in_keys) != record.names:
        raise ValueError(
            f"{layer}: the parameters were created for the keys {_shown(record.names)}, not for "
            f"in_keys {_shown(key_names(in_keys))}; re-initialise them with these in_keys"
        )
    names = key_names(keys)
    missing = [name for name in names if name not in record.rows]
    if missing:
        raise ValueError(
            f"{layer}: the input has blocks with the keys {_shown(missing)}, for which the "
            f"parameters have no {what} (they were created for {_shown(record.names)}); pass "
            "in_keys= with every key the layer must accept (and in_features= for keys absent "
            "from the input at init) and re-initialise, or re-initialise with an input holding "
            "these keys"
        )
    return np.array([record.rows[name] for name in names], dtype=np.int64)


def _stacked(make: Any, shapes: list[tuple[int, ...]], key: Array, dtype: Any) -> Array:
    """Stack ``make(key_k, shapes[k], dtype)`` for every key, zero-padded to the largest shape.

    Keys with equal shapes are drawn together with ``jax.vmap``.
    """
    keys = jax.random.split(key, len(shapes))
    full = tuple(max(s[d] for s in shapes) for d in range(len(shapes[0])))
    groups: dict[tuple[int, ...], list[int]] = {}
    for k, shape in enumerate(shapes):
        groups.setdefault(shape, []).append(k)
    if len(groups) == 1 and shapes[0] == full:
        return jax.vmap(lambda k: make(k, full, dtype))(keys)
    stacked = jnp.zeros((len(shapes), *full), dtype)
    for shape, members in groups.items():
        drawn = jax.vmap(lambda k, shape=shape: make(k, shape, dtype))(keys[np.array(members)])
        index = (np.array(members), *(slice(0, n) for n in shape))
        stacked = stacked.at[index].set(drawn)
    return stacked


# One compiled program per parameter (cached by the static shapes) for flax's eager init path
# (nn.Compiled falls back to it): drawn operation by operation, every random draw and every
# padded write would compile on its own. Inside the compiled init these jits are inlined.
@functools.partial(jax.jit, static_argnums=(1, 2, 3))
def _custom_stacked(key: Array, init: Initializer, shapes: tuple[tuple[int, ...], ...], dtype: Any):
    return _stacked(init, list(shapes), key, dtype)


@functools.partial(jax.jit, static_argnums=(1, 2, 3, 4))
def _torch_uniform_stacked(
    key: Array,
    fan_in: tuple[int, ...],
    rows: tuple[int, ...],
    columns: tuple[int, ...],
    dtype: Any,
) -> Array:
    """``(n, max(rows), max(columns))``: key ``k`` uniform in ``+-1/sqrt(fan_in[k])`` on its
    ``rows[k] x columns[k]`` corner, zero elsewhere (torch.nn.Linear's default, one draw)."""
    n, height, width = len(rows), max(rows), max(columns)
    bound = np.array([1.0 / np.sqrt(f) if f > 0 else 0.0 for f in fan_in])
    drawn = jax.random.uniform(key, (n, height, width), dtype, -1.0, 1.0)
    inside = (np.arange(height)[None, :, None] < np.array(rows)[:, None, None]) & (
        np.arange(width)[None, None, :] < np.array(columns)[:, None, None]
    )
    scale = np.where(inside, bound[:, None, None], 0.0)
    return drawn * jnp.asarray(scale, dtype)


def _stacked_init(init: Initializer | None, in_features: list[int], out_features: list[int]) -> Any:
    """Initialiser of the stacked ``(n_keys, max_in, max_out)`` weights, zero-padded."""

    def init_fn(key: Array, dtype: Any) -> Array:
        if not in_features:  # a TensorMap without blocks
            return jnp.zeros((0, 0, 0), dtype)
        if init is None:
            fan = tuple(in_features)
            return _torch_uniform_stacked(key, fan, fan, tuple(out_features), dtype)
        return _custom_stacked(key, init, tuple(zip(in_features, out_features)), dtype)

    return init_fn


def _stacked_bias_init(
    init: Initializer | None, in_features: list[int], out_features: list[int]
) -> Any:
    """Initialiser of the stacked ``(n_keys, max_out)`` biases, zero-padded."""

    def init_fn(key: Array, dtype: Any) -> Array:
        n = len(out_features)
        if init is None:
            ones = (1,) * n
            drawn = _torch_uniform_stacked(
                key, tuple(in_features), ones, tuple(out_features), dtype
            )
        else:
            # a (1, fout) shape per key so that keys of equal out_features share a draw
            rows = tuple((1, f) for f in out_features)
            drawn = _custom_stacked(key, _bias_as_row(init), rows, dtype)
        return drawn.reshape(n, max(out_features))

    return init_fn


@functools.lru_cache(maxsize=64)
def _bias_as_row(init: Initializer) -> Initializer:
    # cached so that the jitted draw sees the same (hashable) initialiser on every call
    def row(key: Array, shape: tuple[int, int], dtype: Any) -> Array:
        return init(key, shape[1:], dtype)[None]

    return row


class LinearSpec(NamedTuple):
    """Everything :func:`linear` needs besides the tensor, per block of the input."""

    weight: Array
    bias: Array | None
    weight_index: tuple[int, ...]
    bias_index: tuple[int, ...] | None
    out_features: tuple[int, ...]
    out_properties: tuple[Labels, ...] | None

    def apply(self, tensor: TensorMap, stacking: str) -> TensorMap:
        return linear(
            tensor,
            self.weight,
            self.bias,
            weight_index=self.weight_index,
            bias_index=self.bias_index,
            out_features=self.out_features,
            out_properties=self.out_properties,
            stacking=stacking,
        )


def _resolve_features(
    module: Any,
    layer: str,
    param_keys: Labels,
    block_features: Sequence[int],
    positions: np.ndarray,
) -> tuple[list[int], list[int], list[Labels] | None]:
    """Input features, output features and output properties of every parameter key."""
    n = len(param_keys)
    from_input: dict[int, int] = {int(p): int(f) for p, f in zip(positions, block_features)}
    in_features = _utils.in_features_per_key(
        module, layer, param_keys, range(n), from_input, "keys"
    )

    out_properties = _utils.out_properties_per_key(module.out_properties, n, layer)
    if module.out_features is None:
        if out_properties is None:
            raise ValueError(f"{layer}: give out_features or out_properties")
        out_features = [len(p) for p in out_properties]
    else:
        out_features = _utils.per_key(module.out_features, "out_features", int, n, "keys")
        if out_properties is not None:
            for p, (fout, labels) in enumerate(zip(out_features, out_properties)):
                if fout != len(labels):
                    raise ValueError(
                        f"{layer}: out_features is {fout} for key {param_keys.entry(p)} but its "
                        f"out_properties have {len(labels)} entries"
                    )
    return in_features, out_features, out_properties


def _create_parameters(
    module: Any,
    layer: str,
    keys: Labels,
    block_features: Sequence[int],
    dtype: Any,
    has_bias: Any,
) -> None:
    """Create ``weight``, ``bias`` and the ``keys`` record for ``in_keys`` or these keys."""
    param_keys, positions = _utils.key_positions(keys, module.in_keys, layer)
    in_features, out_features, _ = _resolve_features(
        module, layer, param_keys, block_features, positions
    )
    with_bias = np.nonzero(has_bias(param_keys))[0]
    module.param("weight", _stacked_init(module.kernel_init, in_features, out_features), dtype)
    if len(with_bias):
        init = _stacked_bias_init(
            module.bias_init,
            [in_features[k] for k in with_bias],
            [out_features[k] for k in with_bias],
        )
        module.param("bias", init, dtype)
    shapes = list(zip(in_features, out_features))
    module.param(KEYS_ENTRY, lambda _: key_record(key_names(param_keys), shapes))


def _linear_spec(
    module: Any,
    keys: Labels,
    block_features: Sequence[int],
    dtype: Any,
    layer: str,
    has_bias: Any,
) -> LinearSpec:
    """Create (at init) or fetch the stacked parameters, and find the rows of every block.

    ``has_bias(param_keys)`` says which parameter keys have a bias (a boolean array).
    """
    if module.stacking not in STACKING_MODES:
        raise ValueError(f"{layer}: stacking must be one of {STACKING_MODES}")
    record = read_record(module, keys, layer)
    if record is None and not module.has_variable("params", "weight"):
        _create_parameters(module, layer, keys, block_features, dtype, has_bias)
        record = read_record(module, keys, layer)
    if record is None:
        # stacked parameters built by hand (or before the record): only in_keys gives the rows,
        # unless there is one row for one block
        single = len(keys) == 1 and module.get_variable("params", "weight").shape[0] == 1
        if module.in_keys is None and not single:
            raise ValueError(
                f"{layer}: the parameters have a stacked 'weight' but no '{KEYS_ENTRY}' entry "
                "recording the key of each row, so the rows could only follow the block order "
                "of each input; pass in_keys= (the keys of the rows, in order), or start from "
                f"the parameters of model.init and replace their arrays, keeping '{KEYS_ENTRY}'"
            )
        param_keys, rows = _utils.key_positions(keys, module.in_keys, layer)
        in_features, out_features, out_properties = _resolve_features(
            module, layer, param_keys, block_features, rows
        )
    else:
        param_keys, rows = record.keys, record_rows(record, keys, module.in_keys, layer, "weights")
        in_features = [shape[0] for shape in record.shapes]
        out_features = [shape[1] for shape in record.shapes]
        for row, fin in zip(rows, block_features):
            if fin != in_features[row]:
                raise ValueError(
                    f"{layer}: the block with key '{record.names[row]}' has {fin} properties "
                    f"but its weights take {in_features[row]} input features; these "
                    "parameters were created for another input: re-initialise them"
                )
        _check_recorded(module, layer, record, in_features, out_features)
        out_properties = _utils.out_properties_per_key(
            module.out_properties, len(param_keys), layer
        )
        if out_properties is not None:
            for name, labels, fout in zip(record.names, out_properties, out_features):
                if len(labels) != fout:
                    raise ValueError(
                        f"{layer}: out_properties for the key '{name}' has {len(labels)} "
                        f"entries but its weights give {fout} output features"
                    )
    n = len(param_keys)
    with_bias = np.asarray(has_bias(param_keys), dtype=bool)

    _utils.check_existing(module, "weight", n, layer)
    weight = module.get_variable("params", "weight")
    if n and (weight.shape[1] < max(in_features) or weight.shape[2] < max(out_features)):
        raise ValueError(
            f"{layer}: the parameter 'weight' has shape {weight.shape}, too small for keys with "
            f"up to {max(in_features)} input and {max(out_features)} output features"
        )
    bias = None
    bias_index = None
    if with_bias.any():
        if not module.has_variable("params", "bias"):
            biased = [key_names(param_keys)[k] for k in np.nonzero(with_bias)[0]]
            raise ValueError(
                f"{layer}: the keys {_shown(biased)} have a bias but the parameters have no "
                "'bias'; re-initialise them"
            )
        _utils.check_existing(module, "bias", int(with_bias.sum()), layer)
        bias = module.get_variable("params", "bias")
        row = np.full(n, -1)
        row[with_bias] = np.arange(int(with_bias.sum()))
        bias_index = tuple(int(r) for r in row[rows])
    return LinearSpec(
        weight,
        bias,
        tuple(int(r) for r in rows),
        bias_index,
        tuple(out_features[r] for r in rows),
        None if out_properties is None else tuple(out_properties[r] for r in rows),
    )


def _check_recorded(
    module: Any, layer: str, record: KeyRecord, in_features: list[int], out_features: list[int]
) -> None:
    """Refuse feature attributes that disagree with the recorded parameter shapes."""
    n = len(record.names)
    for attribute, recorded in (("in_features", in_features), ("out_features", out_features)):
        value = getattr(module, attribute)
        if value is None:
            continue
        expected = _utils.per_key(value, attribute, int, n, "keys")
        for name, want, got in zip(record.names, expected, recorded):
            if want != got:
                raise ValueError(
                    f"{layer}: {attribute} says {want} for key '{name}' but the parameters were "
                    f"created with {got}; re-initialise them"
                )


def _block_features(tensor: TensorMap) -> list[int]:
    return [int(block.values.shape[-1]) for block in tensor.blocks()]


class Linear(Compiled, nn.Module):
    """A linear map per block, along the properties: ``values @ W[key] + b[key]``.

    Counterpart of ``metatensor.learn.nn.Linear``. ``in_keys`` and ``in_features`` are read from
    the input at init unless given. The parameters record their keys (module docstring), so
    an input may hold any of the keys they were created for, in any order.

    Attributes:
        out_features: output features, one for all keys or one per key (of ``in_keys``, or of
            the input at init).
        out_properties: output property labels, one for all keys or one per key (of
            ``in_keys``, or of the input at init); sets ``out_features``. Default
            ``Labels.range("_", out_features)``.
        in_keys: the keys the parameters are created for; default the keys of the input at
            init. Inputs with other keys are refused.
        in_features: input features, one for all keys or one per key; needed for ``in_keys``
            that have no block in the input at init.
        bias: whether to add a bias, for all keys or per key.
        kernel_init: flax initializer ``(key, (in, out), dtype)`` for each key's matrix;
            default ``torch.nn.Linear``'s uniform ``±1/sqrt(in)``.
        bias_init: flax initializer ``(key, (out,), dtype)``; default uniform ``±1/sqrt(in)``.
        param_dtype: parameter dtype; default the dtype of the input values (as JAX holds it:
            ``float32`` for ``float64`` data with x64 off).
        stacking: how blocks are batched, ``"auto"``, ``"blocks"`` or ``"pad"`` (see
            :mod:`eqx_tensor.nn._stacking`); all give the same result.
    """

    # positional order as in metatensor-learn: Linear(in_keys, in_features, out_features)
    in_keys: Labels | None = None
    in_features: int | Sequence[int] | None = None
    out_features: int | Sequence[int] | None = None
    out_properties: Labels | Sequence[Labels] | None = None
    bias: bool | Sequence[bool] = True
    kernel_init: Initializer | None = None
    bias_init: Initializer | None = None
    param_dtype: Any = None
    stacking: str = "auto"

    @nn.compact
    def spec(self, keys: Labels, block_features: Sequence[int], dtype: Any) -> LinearSpec:
        """Parameters and per-block arguments of :func:`linear` for blocks with these keys and
        input features (used by :class:`~eqx_tensor.nn.Sequential` to fuse linear layers)."""

        def has_bias(param_keys: Labels) -> np.ndarray:
            n = len(param_keys)
            return np.array(_utils.per_key(self.bias, "bias", bool, n, "keys"), dtype=bool)

        return _linear_spec(self, keys, block_features, dtype, "Linear", has_bias)

    def __call__(self, tensor: TensorMap) -> TensorMap:
        tensor = _utils.check_tensor(tensor, "Linear")
        dtype = parameter_dtype(tensor, self.param_dtype)
        return self.spec(tensor.keys, _block_features(tensor), dtype).apply(tensor, self.stacking)


class EquivariantLinear(Compiled, nn.Module):
    """A linear map per block that preserves O(3) equivariance: biases on invariant blocks only.

    Counterpart of ``metatensor.learn.nn.EquivariantLinear``. Mixing properties within a
    block commutes with rotations of its components, so every block gets its own weights;
    a bias only commutes with the identity representation, so only the invariant blocks
    (``invariant_keys``, by default ``o3_lambda=0, o3_sigma=1``) may have one. Parameters are
    laid out and looked up by key as in :class:`Linear`.

    Attributes:
        out_features, out_properties, in_keys, in_features, kernel_init, bias_init,
        param_dtype, stacking: as in :class:`Linear`.
        invariant_keys: selection (Labels on some key dimensions) of the invariant blocks;
            default ``Labels(["o3_lambda", "o3_sigma"], [[0, 1]])``.
        bias: whether the invariant blocks get a bias: one bool, one per invariant key (as
            in metatensor-learn) or one per key. A bias on a covariant or pseudoscalar block
            (when the keys have ``o3_lambda``/``o3_sigma``) raises a ``ValueError``.
    """

    # positional order as in metatensor-learn: Linear(in_keys, in_features, out_features)
    in_keys: Labels | None = None
    in_features: int | Sequence[int] | None = None
    out_features: int | Sequence[int] | None = None
    out_properties: Labels | Sequence[Labels] | None = None
    invariant_keys: Labels | None = None
    bias: bool | Sequence[bool] = True
    kernel_init: Initializer | None = None
    bias_init: Initializer | None = None
    param_dtype: Any = None
    stacking: str = "auto"

    @nn.compact
    def spec(self, keys: Labels, block_features: Sequence[int], dtype: Any) -> LinearSpec:
        """Parameters and per-block arguments of :func:`linear` (see :meth:`Linear.spec`)."""
        layer = "EquivariantLinear"

        def has_bias(param_keys: Labels) -> np.ndarray:
            return _equivariant_bias(self, param_keys, layer)

        return _linear_spec(self, keys, block_features, dtype, layer, has_bias)

    def __call__(self, tensor: TensorMap) -> TensorMap:
        tensor = _utils.check_tensor(tensor, "EquivariantLinear")
        dtype = parameter_dtype(tensor, self.param_dtype)
        return self.spec(tensor.keys, _block_features(tensor), dtype).apply(tensor, self.stacking)


def _equivariant_bias(module: EquivariantLinear, keys: Labels, layer: str) -> np.ndarray:
    """Which keys get a bias, refusing biases that would break equivariance."""
    n = len(keys)
    if isinstance(module.bias, (bool, np.bool_)) and not module.bias:
        return np.zeros(n, dtype=bool)
    invariant = _utils.select_keys(keys, module.invariant_keys, _utils.INVARIANT_KEYS, layer)
    if isinstance(module.bias, (bool, np.bool_)):
        has_bias = invariant.copy()
    else:
        requested = list(module.bias)
        n_invariant = int(invariant.sum())
        if len(requested) == n_invariant:
            has_bias = np.zeros(n, dtype=bool)
            has_bias[invariant] = _utils.per_key(requested, "bias", bool, n_invariant, "keys")
        elif len(requested) == n:
            has_bias = np.array(_utils.per_key(requested, "bias", bool, n, "keys"))
            bad = np.nonzero(has_bias & ~invariant)[0]
            if len(bad):
                raise ValueError(
                    f"{layer}: a bias was requested for the block {keys.entry(int(bad[0]))}, "
                    "which is not selected by invariant_keys: a bias on a covariant block "
                    "would break equivariance"
                )
        else:
            raise ValueError(
                f"{layer}: bias has {len(requested)} entries, expected one per invariant key "
                f"({n_invariant}) or one per key ({n})"
            )
    _utils.refuse_covariant(keys, has_bias, layer, "a bias")
    return has_bias
