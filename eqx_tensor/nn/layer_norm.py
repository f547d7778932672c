"""Layer normalisation per block: :class:`LayerNorm` and :class:`InvariantLayerNorm`.

Same normalisation as metatensor-learn's ``LayerNorm``: for every sample, the mean and the
biased variance are taken over **all** the other axes of the block (components and properties
together), then

``y = (x - mean) / sqrt(var + eps) * weight + bias``

with ``weight`` and ``bias`` of shape ``(in_features,)`` per key, broadcast over the
components. With ``mean=False`` the mean is not subtracted but the variance is still the
centred one (as in metatensor-learn, which divides by ``sqrt(torch.var(x) + eps)``).

Parameters (``variables["params"]``, only with ``elementwise_affine``): ``weight`` of shape
``(n_norm_keys, in_features)`` initialised to ones and ``bias`` of the same shape initialised to
zeros, one row per normalised key in key order (padded to the largest ``in_features``), and
``keys``, the record of the normalised keys (of ``in_keys``, or of the input at init), one per
row, as in :mod:`eqx_tensor.nn.linear`: ``"<row> <key name> <features>"``. Normalised blocks are
looked up by key: an input may list them in any order, and per-key ``eps`` and ``mean`` follow
the recorded order; a normalised block whose key is not recorded, or whose feature count differs,
is refused. Without parameters (``elementwise_affine=False``) nothing is recorded, and per-key
sequences of ``eps`` and ``mean`` need ``in_keys``; so do per-key ``out_properties`` (one per key
of ``in_keys``) in any case.

Departures from metatensor-learn: explicit gradient blocks are supported (chain rule through
the normalisation; metatensor-learn refuses them), and the output keeps the input properties
unless ``out_properties`` is given.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from ..labels import Labels
from ..tensormap import TensorMap
from . import _utils
from ._compiled import Compiled
from ._utils import key_names, parameter_dtype, per_block, refuse_unordered
from .linear import KEYS_ENTRY, key_record, read_record, record_rows

__all__ = ["InvariantLayerNorm", "LayerNorm", "layer_norm"]

Array = Any


def _normalise(x: Array, eps: float, mean: bool) -> Array:
    axes = tuple(range(1, x.ndim))
    centred = x - jnp.mean(x, axis=axes, keepdims=True)
    var = jnp.mean(centred * centred, axis=axes, keepdims=True)
    return (centred if mean else x) / jnp.sqrt(var + eps)


def layer_norm(
    tensor: TensorMap,
    weight: Array | None = None,
    bias: Array | None = None,
    *,
    mask: Sequence[bool] | np.ndarray | None = None,
    param_index: Sequence[int] | None = None,
    eps: float | Sequence[float] = 1e-5,
    mean: bool | Sequence[bool] = True,
    out_properties: Sequence[Labels] | None = None,
) -> TensorMap:
    """Normalise the selected blocks of ``tensor`` per sample (pure function).

    Args:
        tensor: input TensorMap.
        weight: ``(n_params, max_features)`` scales, or ``None`` for no scaling.
        bias: ``(n_params, max_features)`` shifts, or ``None``.
        mask: per block, whether to normalise it (default all); others pass through.
        param_index: per block, the row of ``weight``/``bias`` (default block order).
        eps: added to the variance, one value or one per block.
        mean: whether to subtract the mean, one value or one per block.
        out_properties: output properties per block; default the input properties.

    Returns:
        A TensorMap with the same metadata (gradients follow the chain rule).
    """
    tensor = _utils.check_tensor(tensor, "layer_norm")
    n = len(tensor)
    mask = (True,) * n if mask is None else tuple(bool(m) for m in mask)
    param_index = tuple(range(n)) if param_index is None else tuple(int(i) for i in param_index)
    eps = tuple(float(e) for e in _utils.per_key(eps, "eps", (float, int), n, "blocks"))
    mean = tuple(_utils.per_key(mean, "mean", bool, n, "blocks"))
    if out_properties is None:
        out_properties = tuple(block.properties for block in tensor.blocks())
    out_properties = tuple(out_properties)
    for b, (block, properties) in enumerate(zip(tensor.blocks(), out_properties)):
        if len(properties) != block.values.shape[-1]:
            raise ValueError(
                f"layer_norm: out_properties for {tensor.keys.entry(b)} has {len(properties)} "
                f"entries but the block has {block.values.shape[-1]} properties"
            )
    return _layer_norm(tensor, weight, bias, mask, param_index, eps, mean, out_properties)


# one compiled program per structure for eager callers; inlined inside a user's jit
@functools.partial(jax.jit, static_argnums=(3, 4, 5, 6, 7))
def _layer_norm(
    tensor: TensorMap,
    weight: Array | None,
    bias: Array | None,
    mask: tuple[bool, ...],
    param_index: tuple[int, ...],
    eps: tuple[float, ...],
    mean: tuple[bool, ...],
    out_properties: tuple[Labels, ...],
) -> TensorMap:
    blocks = []
    for b, block in enumerate(tensor.blocks()):
        properties = out_properties[b]
        if not mask[b]:
            gradients = {p: g.values for p, g in block.gradients()}
            blocks.append(
                block.with_arrays(block.values, properties=properties, gradients=gradients)
            )
            continue
        f = block.values.shape[-1]
        scale = None if weight is None else weight[param_index[b], :f]
        shift = None if bias is None else bias[param_index[b], :f]

        def fn(
            x: Array, eps_b: float = eps[b], mean_b: bool = mean[b], scale=scale, shift=shift
        ) -> Array:
            y = _normalise(x, eps_b, mean_b)
            if scale is not None:
                y = y * scale
            if shift is not None:
                y = y + shift
            return y

        values = jnp.asarray(block.values)
        gradients = {p: _utils.propagate_gradient(fn, values, g) for p, g in block.gradients()}
        blocks.append(block.with_arrays(fn(values), properties=properties, gradients=gradients))
    return _utils.with_blocks(tensor, blocks)


def _selection(module: Any, keys: Labels, layer: str, invariant_only: bool) -> np.ndarray:
    """Per key, whether the layer normalises its block."""
    if not invariant_only:
        return np.ones(len(keys), dtype=bool)
    selected = _utils.select_keys(keys, module.invariant_keys, _utils.INVARIANT_KEYS, layer)
    _utils.refuse_covariant(keys, selected, layer, "a layer normalisation")
    return selected


def _apply(module: Any, tensor: TensorMap, layer: str, invariant_only: bool) -> TensorMap:
    tensor = _utils.check_tensor(tensor, layer)
    keys = tensor.keys
    what = "invariant keys" if invariant_only else "keys"
    features = [int(b.values.shape[-1]) for b in tensor.blocks()]
    if module.in_keys is not None:
        _utils.key_positions(keys, module.in_keys, layer)  # refuse keys outside in_keys
    # which blocks are normalised is a property of their keys
    normalised = np.nonzero(_selection(module, keys, layer, invariant_only))[0]
    record = read_record(module, keys, layer) if module.elementwise_affine else None
    if record is None and module.elementwise_affine and not module.has_variable("params", "weight"):
        _create_parameters(module, tensor, layer, invariant_only, features, what)
        record = read_record(module, keys, layer)

    if record is not None:
        # the record lists the normalised keys: the rows of weight and bias, and the order of
        # per-key eps and mean
        if module.in_keys is not None:
            selected = _selection(module, module.in_keys, layer, invariant_only)
            expected = key_names(module.in_keys[np.nonzero(selected)[0]])
            if expected != record.names:
                raise ValueError(
                    f"{layer}: the parameters were created for the keys {list(record.names)}, "
                    f"not for the keys {list(expected)} of in_keys; re-initialise them"
                )
        rows = record_rows(record, keys[normalised], None, layer, "parameters")
        for b, r in zip(normalised, rows):
            if record.shapes[r] is None or record.shapes[r][0] != features[b]:
                raise ValueError(
                    f"{layer}: the block with key '{record.names[r]}' has {features[b]} "
                    f"properties but its parameters have shape {record.shapes[r]}; they were "
                    "created for another input: re-initialise them"
                )
        n_norm = len(record.names)
        in_features = [shape[0] for shape in record.shapes if shape is not None]
    else:
        single = (
            module.elementwise_affine
            and len(keys) == 1
            and module.get_variable("params", "weight").shape[0] == 1
        )
        if module.elementwise_affine and module.in_keys is None and not single:
            raise ValueError(
                f"{layer}: the parameters have a stacked 'weight' but no '{KEYS_ENTRY}' entry "
                "recording the key of each row, so the rows could only follow the block order "
                "of each input; pass in_keys= (the keys of the rows, in order), or start from "
                f"the parameters of model.init and replace their arrays, keeping '{KEYS_ENTRY}'"
            )
        param_keys, positions = _utils.key_positions(keys, module.in_keys, layer)
        selected = _selection(module, param_keys, layer, invariant_only)
        in_features = _in_features(module, layer, param_keys, selected, positions, features, what)
        n_norm = int(selected.sum())
        row = np.full(len(param_keys), -1)
        row[selected] = np.arange(n_norm)
        rows = row[positions[normalised]]
        if module.in_keys is None:
            # nothing records the key order: per-key sequences would follow each input's
            for name in ("eps", "mean"):
                value = getattr(module, name)
                if isinstance(value, (list, tuple)):
                    refuse_unordered(value, name, keys[normalised], layer)
    eps = _utils.per_key(module.eps, "eps", (float, int), n_norm, what)
    mean = _utils.per_key(module.mean, "mean", bool, n_norm, what)
    out_properties = None
    if module.out_properties is not None:
        # one per key of in_keys; without in_keys the record (normalised keys only) does not
        # give the order of all the keys
        out_properties = per_block(
            module.out_properties, "out_properties", Labels, module.in_keys, keys, layer
        )

    weight = bias = None
    if module.elementwise_affine and n_norm:
        _utils.check_existing(module, "weight", n_norm, layer)
        weight = module.get_variable("params", "weight")
        if weight.shape[1] < max(in_features):
            raise ValueError(
                f"{layer}: the parameter 'weight' has shape {weight.shape}, too small for keys "
                f"with up to {max(in_features)} features"
            )
        if module.bias:
            _utils.check_existing(module, "bias", n_norm, layer)
            bias = module.get_variable("params", "bias")

    block_row = np.full(len(keys), -1)
    block_row[normalised] = rows
    return layer_norm(
        tensor,
        weight,
        bias,
        mask=block_row >= 0,
        param_index=np.maximum(block_row, 0),
        eps=[float(eps[r]) if r >= 0 else 0.0 for r in block_row],
        mean=[bool(mean[r]) if r >= 0 else True for r in block_row],
        out_properties=out_properties,
    )


def _create_parameters(
    module: Any,
    tensor: TensorMap,
    layer: str,
    invariant_only: bool,
    features: list[int],
    what: str,
) -> None:
    """``weight`` (ones), ``bias`` (zeros) and the record of the normalised keys, at init."""
    param_keys, positions = _utils.key_positions(tensor.keys, module.in_keys, layer)
    selected = _selection(module, param_keys, layer, invariant_only)
    in_features = _in_features(module, layer, param_keys, selected, positions, features, what)
    if in_features:
        dtype = parameter_dtype(tensor, module.param_dtype)
        width = max(in_features)
        valid = np.arange(width)[None, :] < np.array(in_features)[:, None]
        module.param("weight", lambda key, d: jnp.asarray(valid.astype(d)), dtype)
        if module.bias:
            module.param("bias", lambda key, d: jnp.zeros((len(in_features), width), d), dtype)
    names = [key_names(param_keys)[k] for k in np.nonzero(selected)[0]]
    shapes = [(f,) for f in in_features]
    module.param(KEYS_ENTRY, lambda _: key_record(names, shapes))


def _in_features(
    module: Any,
    layer: str,
    param_keys: Labels,
    selected: np.ndarray,
    positions: np.ndarray,
    features: list[int],
    what: str,
) -> list[int]:
    """Features of every normalised parameter key, from ``in_features`` or the input."""
    norm_keys = [int(k) for k in np.nonzero(selected)[0]]
    from_input = {int(p): f for p, f in zip(positions, features)}
    return _utils.in_features_per_key(module, layer, param_keys, norm_keys, from_input, what)


class LayerNorm(Compiled, nn.Module):
    """Layer normalisation of every block over its components and properties, per sample.

    Counterpart of ``metatensor.learn.nn.LayerNorm`` (see the module docstring).

    Attributes:
        in_keys: keys the parameters are created for (default: the input keys at init);
            inputs with other keys are refused.
        in_features: features per key (default: read from the input at init).
        out_properties: output properties, one for all or one per key of ``in_keys``
            (default: the input's).
        eps: added to the variance, one value or one per key.
        elementwise_affine: whether to learn a scale (and a shift if ``bias``) per feature.
        bias: whether to learn the shift.
        mean: whether to subtract the mean, one value or one per key.
        param_dtype: parameter dtype (default: that of the input values, as JAX holds them).

    Per-key ``eps`` and ``mean`` follow ``in_keys``, or the keys of the input at init as the
    parameters record them (without parameters, ``elementwise_affine=False``, they need
    ``in_keys``); per-key ``out_properties`` need ``in_keys``.
    """

    in_keys: Labels | None = None
    in_features: int | Sequence[int] | None = None
    out_properties: Labels | Sequence[Labels] | None = None
    eps: float | Sequence[float] = 1e-5
    elementwise_affine: bool = True
    bias: bool = True
    mean: bool | Sequence[bool] = True
    param_dtype: Any = None

    @nn.compact
    def __call__(self, tensor: TensorMap) -> TensorMap:
        return _apply(self, tensor, "LayerNorm", invariant_only=False)


class InvariantLayerNorm(Compiled, nn.Module):
    """Layer normalisation of the invariant blocks only; the other blocks pass through.

    Counterpart of ``metatensor.learn.nn.InvariantLayerNorm``: ``in_features``, ``eps`` and
    ``mean`` given as sequences have one entry per *invariant* key. Normalising a covariant
    block over its components would break equivariance, so selecting one (with
    ``o3_lambda``/``o3_sigma`` key dimensions) raises a ``ValueError``.

    Attributes:
        invariant_keys: selection of the invariant blocks; default ``o3_lambda=0,
            o3_sigma=1``.
        others: as in :class:`LayerNorm`.
    """

    in_keys: Labels | None = None
    in_features: int | Sequence[int] | None = None
    out_properties: Labels | Sequence[Labels] | None = None
    invariant_keys: Labels | None = None
    eps: float | Sequence[float] = 1e-5
    elementwise_affine: bool = True
    bias: bool = True
    mean: bool | Sequence[bool] = True
    param_dtype: Any = None

    def identity_blocks(self, keys: Labels) -> np.ndarray:
        """Per block with these keys, whether this layer leaves its values unchanged."""
        layer = "InvariantLayerNorm"
        param_keys, positions = _utils.key_positions(keys, self.in_keys, layer)
        selected = _utils.select_keys(param_keys, self.invariant_keys, _utils.INVARIANT_KEYS, layer)
        return ~selected[positions]

    @nn.compact
    def __call__(self, tensor: TensorMap) -> TensorMap:
        return _apply(self, tensor, "InvariantLayerNorm", invariant_only=True)
