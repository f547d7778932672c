"""Per-key linear layers over TensorMaps: :class:`Linear` and :class:`EquivariantLinear`.

Each block is multiplied along its properties by the weight matrix of its key, like
metatensor-learn's ``Linear`` (a ``ModuleMap`` of ``torch.nn.Linear``). The weights of all keys
live in one stacked array, so that the parameters are a handful of leaves for optax and the
blocks can be computed together (see :mod:`eqx_tensor.nn._stacking`).

Parameters (``variables["params"]``):

* ``weight``: shape ``(n_keys, in_features, out_features)``; ``weight[k]`` is the matrix of the
  ``k``-th key (the ``k``-th entry of ``in_keys``, or of the input keys at init), i.e. the
  transpose of ``torch.nn.Linear.weight``. When keys have different feature sizes, the array
  is zero-padded to the largest ones and the padding is never read.
* ``bias`` (only if some key has a bias): shape ``(n_bias_keys, out_features)``, one row per
  key with a bias, in key order.

Explicit gradient blocks (e.g. ``positions`` gradients) are transformed by the same weights
**without** the bias, so they stay the derivatives of the transformed values (metatensor-learn
adds the bias to gradient blocks too).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from ..labels import Labels
from ..tensormap import TensorMap
from . import _utils
from ._stacking import STACKING_MODES, grouped_matmul

__all__ = ["EquivariantLinear", "Linear", "LinearSpec", "linear", "torch_linear_init"]

Array = Any
Initializer = Any  # flax-style: (key, shape, dtype) -> Array


def torch_linear_init(key: Array, shape: tuple[int, ...], dtype: Any, fan_in: int) -> Array:
    """``torch.nn.Linear``'s default: uniform in ``[-1/sqrt(fan_in), 1/sqrt(fan_in)]``."""
    bound = 1.0 / np.sqrt(fan_in) if fan_in > 0 else 0.0
    return jax.random.uniform(key, shape, dtype, -bound, bound)


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
        blocks.append(_utils.rebuild_block(block, values, out_properties[b], gradients))
    return _utils.with_blocks(tensor, blocks)


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
    if module.in_features is not None:
        in_features = _utils.per_key(module.in_features, "in_features", int, n, "keys")
        for p, fin in from_input.items():
            if in_features[p] != fin:
                raise ValueError(
                    f"{layer}: in_features says {in_features[p]} for key {param_keys.entry(p)} "
                    f"but the input block has {fin} properties"
                )
    else:
        missing = [p for p in range(n) if p not in from_input]
        if missing and module.has_variable("params", "weight"):
            # applying existing parameters: absent keys are never used
            width = module.get_variable("params", "weight").shape[1]
            from_input.update({p: width for p in missing})
        elif missing:
            raise ValueError(
                f"{layer}: the key {param_keys.entry(missing[0])} of in_keys has no block in the "
                "input at init, so its in_features is unknown; pass in_features="
            )
        in_features = [from_input[p] for p in range(n)]

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


def _stacked(make: Any, shapes: list[tuple[int, ...]], key: Array, dtype: Any) -> Array:
    """Stack ``make(key_k, shapes[k], dtype)`` for every key, zero-padded to the largest shape.

    Keys with equal shapes are drawn together with ``jax.vmap`` (one small program per shape
    instead of one per key).
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


def _stacked_init(init: Initializer | None, in_features: list[int], out_features: list[int]) -> Any:
    def make(key: Array, shape: tuple[int, int], dtype: Any) -> Array:
        if init is None:
            return torch_linear_init(key, shape, dtype, shape[0])
        return init(key, shape, dtype)

    def init_fn(key: Array, dtype: Any) -> Array:
        if not in_features:  # a TensorMap without blocks
            return jnp.zeros((0, 0, 0), dtype)
        return _stacked(make, list(zip(in_features, out_features)), key, dtype)

    return init_fn


def _stacked_bias_init(
    init: Initializer | None, in_features: list[int], out_features: list[int]
) -> Any:
    # the shape carries fan_in as a dummy leading axis so that keys with the same fan_in and
    # out_features share a program; it is dropped below
    def make(key: Array, shape: tuple[int, int], dtype: Any) -> Array:
        fan_in, fout = shape
        if init is None:
            return torch_linear_init(key, (fout,), dtype, fan_in)
        return init(key, (fout,), dtype)

    def init_fn(key: Array, dtype: Any) -> Array:
        keys = jax.random.split(key, len(out_features))
        width = max(out_features)
        stacked = jnp.zeros((len(out_features), width), dtype)
        groups: dict[tuple[int, int], list[int]] = {}
        for k, shape in enumerate(zip(in_features, out_features)):
            groups.setdefault(shape, []).append(k)
        for shape, members in groups.items():
            drawn = jax.vmap(lambda k, shape=shape: make(k, shape, dtype))(keys[np.array(members)])
            if len(groups) == 1 and shape[1] == width:
                return drawn
            stacked = stacked.at[np.array(members), : shape[1]].set(drawn)
        return stacked

    return init_fn


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


def _linear_spec(
    module: Any,
    keys: Labels,
    block_features: Sequence[int],
    dtype: Any,
    layer: str,
    has_bias: np.ndarray | None,
) -> LinearSpec:
    """Create (at init) or fetch the stacked parameters for blocks with these keys and features.

    ``has_bias`` is per parameter key (``None``: from ``module.bias``).
    """
    if module.stacking not in STACKING_MODES:
        raise ValueError(f"{layer}: stacking must be one of {STACKING_MODES}")
    param_keys, positions = _utils.key_positions(keys, module.in_keys, layer)
    in_features, out_features, out_properties = _resolve_features(
        module, layer, param_keys, block_features, positions
    )
    n = len(param_keys)
    if has_bias is None:
        has_bias = np.array(_utils.per_key(module.bias, "bias", bool, n, "keys"), dtype=bool)

    _utils.check_existing(module, "weight", n, layer)
    weight = module.param(
        "weight", _stacked_init(module.kernel_init, in_features, out_features), dtype
    )
    bias = None
    bias_index = None
    if has_bias.any():
        bias_keys = np.nonzero(has_bias)[0]
        _utils.check_existing(module, "bias", len(bias_keys), layer)
        bias = module.param(
            "bias",
            _stacked_bias_init(
                module.bias_init,
                [in_features[k] for k in bias_keys],
                [out_features[k] for k in bias_keys],
            ),
            dtype,
        )
        row = np.full(n, -1)
        row[bias_keys] = np.arange(len(bias_keys))
        bias_index = tuple(int(r) for r in row[positions])
    return LinearSpec(
        weight,
        bias,
        tuple(int(p) for p in positions),
        bias_index,
        tuple(out_features[p] for p in positions),
        None if out_properties is None else tuple(out_properties[p] for p in positions),
    )


def _block_features(tensor: TensorMap) -> list[int]:
    return [int(block.values.shape[-1]) for block in tensor.blocks()]


class Linear(nn.Module):
    """A linear map per block, along the properties: ``values @ W[key] + b[key]``.

    Counterpart of ``metatensor.learn.nn.Linear``. ``in_keys`` and ``in_features`` are read from
    the input at init unless given.

    Attributes:
        out_features: output features, one for all keys or one per key.
        out_properties: output property labels, one for all keys or one per key; sets
            ``out_features``. Default ``Labels.range("_", out_features)``.
        in_keys: the keys the parameters are indexed by; inputs may then hold any subset of
            them, in any order. Default: the keys of the input at init; later inputs must then
            have the same keys in the same order, with at most as many properties per block,
            which the parameters (a plain pytree of arrays) cannot check: pass ``in_keys``
            and ``in_features`` to have blocks looked up by key and their sizes checked.
        in_features: input features, checked against every input; needed for ``in_keys``
            that have no block in the input at init.
        bias: whether to add a bias, for all keys or per key.
        kernel_init: flax initializer ``(key, (in, out), dtype)`` for each key's matrix;
            default ``torch.nn.Linear``'s uniform ``±1/sqrt(in)``.
        bias_init: flax initializer ``(key, (out,), dtype)``; default uniform ``±1/sqrt(in)``.
        param_dtype: parameter dtype; default the dtype of the input values.
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
        return _linear_spec(self, keys, block_features, dtype, "Linear", None)

    def __call__(self, tensor: TensorMap) -> TensorMap:
        tensor = _utils.check_tensor(tensor, "Linear")
        dtype = _utils.float_dtype(tensor, self.param_dtype)
        return self.spec(tensor.keys, _block_features(tensor), dtype).apply(tensor, self.stacking)


class EquivariantLinear(nn.Module):
    """A linear map per block that preserves O(3) equivariance: biases on invariant blocks only.

    Counterpart of ``metatensor.learn.nn.EquivariantLinear``. Mixing properties within a
    block commutes with rotations of its components, so every block gets its own weights;
    a bias only commutes with the identity representation, so only the invariant blocks
    (``invariant_keys``, by default ``o3_lambda=0, o3_sigma=1``) may have one.

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
        param_keys, _ = _utils.key_positions(keys, self.in_keys, layer)
        has_bias = _equivariant_bias(self, param_keys, layer)
        return _linear_spec(self, keys, block_features, dtype, layer, has_bias)

    def __call__(self, tensor: TensorMap) -> TensorMap:
        tensor = _utils.check_tensor(tensor, "EquivariantLinear")
        dtype = _utils.float_dtype(tensor, self.param_dtype)
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
