"""Shared helpers of the nn layers: key names, key bookkeeping, per-key arguments, gradients.

Everything here runs on static metadata (NumPy) at trace time; only the gradient helpers touch
arrays.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ..block import TensorBlock
from ..labels import Labels, LabelsEntry
from ..tensormap import TensorMap

Array = Any

#: Keys of the blocks that are invariant under rotations and inversion.
INVARIANT_KEYS = Labels(["o3_lambda", "o3_sigma"], np.array([[0, 1]], dtype=np.int32))
#: Keys of pseudoscalar blocks: invariant under rotations, odd under inversion.
PSEUDOSCALAR_KEYS = Labels(["o3_lambda", "o3_sigma"], np.array([[0, -1]], dtype=np.int32))


def check_tensor(tensor: Any, layer: str) -> TensorMap:
    if not isinstance(tensor, TensorMap):
        raise TypeError(f"{layer} expects a TensorMap, got {type(tensor).__name__}")
    return tensor


def key_to_name(key: LabelsEntry) -> str:
    """The name of a key in the parameters of the nn layers.

    ``"name=value"`` for every key dimension, joined by commas, e.g.
    ``"o3_lambda=1,o3_sigma=-1"``: how the ``keys`` records of :class:`~eqx_tensor.nn.Linear`
    and the other layers name their keys, and the name of a :class:`~eqx_tensor.nn.ModuleMap`
    clone, so that ``params[key_to_name(key)]`` holds the parameters of ``key``'s module there.
    """
    if not isinstance(key, LabelsEntry):
        raise TypeError(f"key_to_name expects a LabelsEntry, got {type(key).__name__}")
    return _name(key.names, np.asarray(key.values))


def _name(names: Sequence[str], values: np.ndarray) -> str:
    return ",".join(f"{n}={int(v)}" for n, v in zip(names, values))


@functools.lru_cache(maxsize=256)
def key_names(keys: Labels) -> tuple[str, ...]:
    """:func:`key_to_name` of every entry of ``keys`` (cached: keys are static metadata)."""
    values = np.asarray(keys.values)
    return tuple(_name(keys.names, row) for row in values)


def _shown(names: Sequence[str], limit: int = 4) -> str:
    listed = ", ".join(f"'{n}'" for n in list(names)[:limit])
    more = len(names) - limit
    return f"[{listed}{f', ... ({more} more)' if more > 0 else ''}]"


def lookup(parameters: Mapping[str, Any], names: Sequence[str], layer: str, what: str) -> list[Any]:
    """``parameters[name]`` for every name, for parameters named by key (:func:`key_to_name`);
    keys the parameters lack are refused by name."""
    missing = [n for n in names if n not in parameters]
    if missing:
        raise ValueError(
            f"{layer}: the input has blocks with the keys {_shown(missing)}, for which the "
            f"parameters have no {what} (they have {_shown(sorted(parameters))}); pass in_keys= "
            "with every key the layer must accept and re-initialise, or re-initialise with an "
            "input holding these keys"
        )
    return [parameters[n] for n in names]


def key_positions(
    keys: TensorMap | Labels, in_keys: Labels | None, layer: str
) -> tuple[Labels, np.ndarray]:
    """The keys the parameters are indexed by, and the parameter row of each block.

    ``keys`` are the keys of the input (or the input itself). Without ``in_keys``, the
    parameters follow the blocks of the input in order.
    """
    if isinstance(keys, TensorMap):
        keys = keys.keys
    if in_keys is None:
        return keys, np.arange(len(keys))
    if not isinstance(in_keys, Labels):
        raise TypeError(f"{layer}: in_keys must be Labels, got {type(in_keys).__name__}")
    if list(in_keys.names) != list(keys.names):
        raise ValueError(
            f"{layer}: in_keys names {in_keys.names} differ from the key names of the input "
            f"{keys.names}"
        )
    positions = in_keys.positions(keys)
    missing = np.nonzero(positions < 0)[0]
    if len(missing):
        raise ValueError(
            f"{layer}: the input has a block with key {keys.entry(int(missing[0]))} "
            "that is not in in_keys"
        )
    return in_keys, positions


def in_features_per_key(
    module: Any,
    layer: str,
    param_keys: Labels,
    indices: Sequence[int],
    from_input: dict[int, int],
    what: str,
) -> list[int]:
    """Input features of the parameter keys at ``indices``: ``module.in_features`` checked
    against the input blocks (``from_input``: key position -> block features), or read from them.

    Keys without an input block take the width of the module's existing stacked ``weight``
    (applying parameters: those keys are unused), and are an error at init.
    """
    if module.in_features is not None:
        in_features = per_key(module.in_features, "in_features", int, len(indices), what)
        for j, k in enumerate(indices):
            if k in from_input and from_input[k] != in_features[j]:
                raise ValueError(
                    f"{layer}: in_features says {in_features[j]} for key {param_keys.entry(k)} "
                    f"but the input block has {from_input[k]} properties"
                )
        return in_features
    missing = [k for k in indices if k not in from_input]
    if missing and module.has_variable("params", "weight"):
        width = module.get_variable("params", "weight").shape[1]
        from_input = {**from_input, **{k: width for k in missing}}
    elif missing:
        raise ValueError(
            f"{layer}: the key {param_keys.entry(missing[0])} has no block in the input at "
            "init, so its in_features is unknown; pass in_features="
        )
    return [from_input[k] for k in indices]


def per_key(value: Any, name: str, kind: type | tuple[type, ...], n: int, what: str) -> list[Any]:
    """One value per key: a scalar is repeated, a sequence must have length ``n``.

    Mirrors metatensor-learn's ``_check_module_map_parameter``.
    """
    if isinstance(value, kind) and not isinstance(value, (list, tuple)):
        return [value] * n
    if isinstance(value, np.ndarray):
        value = value.tolist()
    if not isinstance(value, (list, tuple)):
        raise TypeError(f"{name} must be a {_kind_name(kind)} or a sequence of them, got {value!r}")
    if len(value) != n:
        raise ValueError(f"{name} has {len(value)} entries but there are {n} {what}")
    for entry in value:
        if not isinstance(entry, kind) or (isinstance(entry, bool) and kind is int):
            raise TypeError(f"every entry of {name} must be a {_kind_name(kind)}, got {entry!r}")
    return list(value)


def _kind_name(kind: type | tuple[type, ...]) -> str:
    if isinstance(kind, tuple):
        return " or ".join(k.__name__ for k in kind)
    return kind.__name__


def select_keys(keys: Labels, selection: Labels | None, default: Labels, layer: str) -> np.ndarray:
    """Boolean mask of the keys matching ``selection`` (``default`` when ``None``)."""
    selection = default if selection is None else selection
    if not isinstance(selection, Labels):
        raise TypeError(f"{layer}: invariant_keys must be Labels, got {type(selection).__name__}")
    missing = [n for n in selection.names if n not in keys.names]
    if missing:
        raise ValueError(
            f"{layer}: the keys {keys.names} have no dimension {missing} to select invariant "
            "blocks; pass invariant_keys= with a selection on the key dimensions you have"
        )
    mask = np.zeros(len(keys), dtype=bool)
    mask[keys.select(selection)] = True
    return mask


def o3_kind(keys: Labels) -> np.ndarray | None:
    """Per key: 1 invariant, -1 pseudoscalar, 0 covariant; ``None`` without o3 key dimensions."""
    if "o3_lambda" not in keys.names or "o3_sigma" not in keys.names:
        return None
    l = np.asarray(keys.column("o3_lambda"))
    sigma = np.asarray(keys.column("o3_sigma"))
    return np.where(l == 0, np.where(sigma == 1, 1, -1), 0)


def refuse_covariant(keys: Labels, mask: np.ndarray, layer: str, action: str) -> None:
    """Raise if ``mask`` selects a block that is not a true scalar (o3_lambda=0, o3_sigma=1)."""
    kind = o3_kind(keys)
    if kind is None:
        return
    bad = np.nonzero(mask & (kind != 1))[0]
    if len(bad):
        key = keys.entry(int(bad[0]))
        what = "pseudoscalar" if kind[bad[0]] == -1 else "covariant"
        raise ValueError(
            f"{layer}: {action} on the {what} block {key} would break equivariance: only "
            "blocks with o3_lambda=0, o3_sigma=1 are invariant under rotations and inversion"
        )


@functools.lru_cache(maxsize=128)
def range_properties(n: int) -> Labels:
    """``Labels.range("_", n)``, cached (metatensor-learn's default output properties)."""
    return Labels.range("_", n)


def out_properties_per_key(
    out_properties: Labels | Sequence[Labels] | None, n_keys: int, layer: str
) -> list[Labels] | None:
    if out_properties is None:
        return None
    if isinstance(out_properties, Labels):
        return [out_properties] * n_keys
    out_properties = list(out_properties)
    if len(out_properties) != n_keys:
        raise ValueError(
            f"{layer}: out_properties has {len(out_properties)} entries but there are {n_keys} keys"
        )
    for i, p in enumerate(out_properties):
        if not isinstance(p, Labels):
            raise TypeError(f"{layer}: out_properties[{i}] must be Labels, got {type(p).__name__}")
    return out_properties


def refuse_unordered(value: Sequence[Any], name: str, keys: Labels, layer: str) -> None:
    """Refuse a per-key sequence when nothing says which key each entry belongs to.

    Without ``in_keys`` and without a record of the keys in the parameters, the entries could
    only follow the block order of each input; a single entry for a single block is fine.
    """
    if len(keys) == 1 and len(value) == 1:
        return
    raise ValueError(
        f"{layer}: {name} has one entry per key, but in_keys is not given, so its entries "
        "could only follow the block order of each input; pass in_keys= (the keys the entries "
        "belong to, in that order) or a single value for every key"
    )


def per_block(
    value: Any,
    name: str,
    kind: type | tuple[type, ...],
    in_keys: Labels | None,
    keys: Labels,
    layer: str,
) -> list[Any]:
    """The value of a per-key attribute for each block of an input with ``keys``.

    For layers without parameters, hence without a record of the keys at init: one value is
    used for every block; a sequence has one entry per key of ``in_keys`` (see
    :func:`refuse_unordered` without ``in_keys``).
    """
    if isinstance(value, kind) and not isinstance(value, (list, tuple)):
        return [value] * len(keys)
    if in_keys is None:
        refuse_unordered(value, name, keys, layer)
        in_keys = keys
    _, positions = key_positions(keys, in_keys, layer)
    if kind is Labels:
        values = out_properties_per_key(value, len(in_keys), layer)
    else:
        values = per_key(value, name, kind, len(in_keys), "keys in in_keys")
    return [values[p] for p in positions]


def with_blocks(tensor: TensorMap, blocks: list[TensorBlock]) -> TensorMap:
    result = TensorMap(tensor.keys, blocks)
    for key, value in tensor.info().items():
        result.set_info(key, value)
    return result


def gradient_rows(gradient: TensorBlock) -> Array:
    """The values row each gradient row belongs to (the ``"sample"`` column)."""
    column = gradient.samples.column("sample")
    return column if isinstance(column, np.ndarray) else jnp.asarray(column)


def gradient_primal(values: Array, gradient: TensorBlock) -> tuple[Array, Array]:
    """The values under each gradient row, broadcast to the gradient's shape.

    Returns ``(primal, tangent)``, both of shape ``(n_gradient_rows * n_extra, *values.shape[1:])``
    where ``n_extra`` is the product of the gradient's extra components (e.g. ``xyz``).
    """
    tangent = jnp.asarray(gradient.values)
    per_row = values[gradient_rows(gradient)]  # (n_rows, *components, properties)
    n_extra = tangent.ndim - values.ndim
    primal = jnp.broadcast_to(
        per_row.reshape(per_row.shape[:1] + (1,) * n_extra + per_row.shape[1:]), tangent.shape
    )
    flat = (-1, *values.shape[1:])
    return primal.reshape(flat), tangent.reshape(flat)


def propagate_gradient(fn: Callable[[Array], Array], values: Array, gradient: TensorBlock) -> Array:
    """Chain rule for a gradient block through a function acting on each sample independently.

    ``fn`` maps ``(n, *components, in)`` to ``(n, *components, out)`` row by row; the result
    is ``J_fn(values[sample]) @ gradient`` for every gradient row, in the gradient's shape
    (with ``out`` properties).
    """
    primal, tangent = gradient_primal(values, gradient)
    _, out = jax.jvp(fn, (primal,), (tangent.astype(primal.dtype),))
    return out.reshape(*gradient.values.shape[:-1], out.shape[-1])


def float_dtype(tensor: TensorMap, param_dtype: Any) -> Any:
    """``param_dtype`` if given, else the (floating) dtype of the input values."""
    if param_dtype is not None:
        return jnp.dtype(param_dtype)
    dtype = tensor.dtype
    if dtype is None or not jnp.issubdtype(dtype, jnp.floating):
        return jnp.dtype(jnp.float32)
    return jnp.dtype(dtype)


def parameter_dtype(tensor: TensorMap, param_dtype: Any) -> Any:
    """The dtype of new parameters: ``param_dtype`` or the input's, as JAX will hold them.

    Canonical (``float32`` for ``float64`` with x64 off), so that creating them does not warn.
    """
    return jax.dtypes.canonicalize_dtype(float_dtype(tensor, param_dtype))


def check_existing(module: Any, name: str, n_keys: int, layer: str) -> None:
    """Refuse, with a clear message, parameters created for another number of keys."""
    if module.has_variable("params", name):
        existing = module.get_variable("params", name)
        if existing.shape[0] != n_keys:
            raise ValueError(
                f"{layer}: the parameter '{name}' was created for {existing.shape[0]} keys but "
                f"this input needs {n_keys}; pass in_keys= to apply the layer to tensors with "
                "other keys"
            )
