"""Squared-error losses between TensorMaps, with block weights, gradient terms and masks.

Both losses compare ``prediction`` and ``target`` block by block (blocks are matched by key,
so the target may list its keys in another order) and are jit-able and differentiable with
respect to the prediction. Every block of the target must have a prediction: a target block
without one is refused, naming its key, unless ``ignore_missing_keys=True`` asks to compare only
the prediction's blocks (e.g. a model predicting a subset of the targets on purpose).

* :func:`sum_squared_error`: ``values_weight * sum_b w_b * SSE_b +
  sum_p gradient_weights[p] * sum_b w_b * SSE_b[p]``, where ``SSE_b`` is the sum of squared
  differences of the values of block ``b`` and ``SSE_b[p]`` that of its gradient with respect
  to ``p`` (e.g. ``"positions"`` for forces).
* :func:`mean_squared_error`: the same with each term divided by its number of compared
  elements, ``values_weight * sum_b w_b SSE_b / sum_b N_b + sum_p ...``: with all weights 1
  this is the mean over all values of all blocks, plus the mean over all gradient entries.

``per_block=True`` also returns the contribution of every block as a TensorMap of scalars
(samples ``_``, property ``loss``): for the sum the contributions add up to the total, for the
mean each block's entry is its own mean (its sum divided by its own element count).

Padded rows (see the data loaders) are excluded with ``mask`` (one boolean per sample and
block) or ``padding_system`` (rows whose ``system`` sample equals this sentinel). Gradient rows
follow the mask of the values row they belong to. Masked entries contribute exactly zero,
even if they hold NaN or inf.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ..block import TensorBlock
from ..labels import Labels, LabelsEntry
from ..tensormap import TensorMap
from . import _utils

__all__ = ["mean_squared_error", "sum_squared_error"]

Array = Any
_LOSS_PROPERTIES = Labels(["loss"], np.zeros((1, 1), dtype=np.int32))


def sum_squared_error(
    prediction: TensorMap,
    target: TensorMap,
    *,
    block_weights: Sequence[float] | Mapping[Any, float] | Array | None = None,
    values_weight: float = 1.0,
    gradient_weights: Mapping[str, float] | None = None,
    mask: Sequence[Array] | Mapping[Any, Array] | None = None,
    padding_system: int | None = None,
    system_name: str = "system",
    per_block: bool = False,
    ignore_missing_keys: bool = False,
) -> Array | tuple[Array, TensorMap]:
    """Sum of squared errors between two TensorMaps (see the module docstring).

    Args:
        prediction: predicted TensorMap.
        target: reference TensorMap with the prediction's keys, in any order; matching blocks
            must have the same shapes, and the same samples when both are static.
        block_weights: weight of each block: a sequence or array in the order of the
            prediction keys, or a mapping from key (``LabelsEntry`` or tuple of key values) to
            weight, missing keys weighing 1.
        values_weight: weight of the values terms (0 to fit only gradients).
        gradient_weights: weight of each gradient term, e.g. ``{"positions": 0.1}``; gradients
            not listed are ignored. Both tensors must have the listed gradients.
        mask: per block of the prediction, a boolean array ``(n_samples,)``, true for rows
            to compare; a sequence in key order or a mapping from key to array.
        padding_system: rows whose ``system_name`` sample equals this value are ignored.
        system_name: the sample dimension holding the system index.
        per_block: also return the contribution of every block.
        ignore_missing_keys: compare only the prediction's blocks, ignoring the target blocks
            that the prediction lacks; by default these raise a ``ValueError`` naming them.

    Returns:
        The scalar loss, or ``(loss, per_block)`` with ``per_block`` a TensorMap of scalars.
    """
    return _loss(
        prediction,
        target,
        block_weights,
        values_weight,
        gradient_weights,
        mask,
        padding_system,
        system_name,
        per_block,
        ignore_missing_keys,
        "sum_squared_error",
    )


def mean_squared_error(
    prediction: TensorMap,
    target: TensorMap,
    *,
    block_weights: Sequence[float] | Mapping[Any, float] | Array | None = None,
    values_weight: float = 1.0,
    gradient_weights: Mapping[str, float] | None = None,
    mask: Sequence[Array] | Mapping[Any, Array] | None = None,
    padding_system: int | None = None,
    system_name: str = "system",
    per_block: bool = False,
    ignore_missing_keys: bool = False,
) -> Array | tuple[Array, TensorMap]:
    """Mean squared error between two TensorMaps; arguments as in :func:`sum_squared_error`.

    Each term (values, and each gradient in ``gradient_weights``) is a weighted sum of squared
    errors over all blocks divided by the number of compared (unmasked) elements.
    """
    return _loss(
        prediction,
        target,
        block_weights,
        values_weight,
        gradient_weights,
        mask,
        padding_system,
        system_name,
        per_block,
        ignore_missing_keys,
        "mean_squared_error",
    )


def _key_tuple(key: Any, names: list[str]) -> tuple[int, ...]:
    if isinstance(key, LabelsEntry):
        if key.names != names:
            raise ValueError(f"key {key} does not have the key names {names}")
        return tuple(int(v) for v in key.values)
    if isinstance(key, (int, np.integer)):
        key = (key,)
    return tuple(int(v) for v in key)


def _per_block(value: Any, keys: Labels, name: str, default: Any) -> list[Any]:
    """Spread ``value`` (sequence in key order or mapping by key) to one entry per block."""
    n = len(keys)
    if value is None:
        return [default] * n
    if isinstance(value, Mapping):
        lookup = {_key_tuple(k, keys.names): v for k, v in value.items()}
        known = {tuple(int(v) for v in key.values) for key in keys}
        unknown = [k for k in lookup if k not in known]
        if unknown:
            raise ValueError(
                f"{name} has an entry for the key {dict(zip(keys.names, unknown[0]))}, which is "
                "not a key of the prediction"
            )
        return [lookup.get(tuple(int(v) for v in key.values), default) for key in keys]
    if hasattr(value, "shape") and getattr(value, "ndim", 1) == 1 and not isinstance(value, list):
        if value.shape[0] != n:
            raise ValueError(f"{name} has {value.shape[0]} entries but there are {n} blocks")
        return [value[i] for i in range(n)]
    value = list(value)
    if len(value) != n:
        raise ValueError(f"{name} has {len(value)} entries but there are {n} blocks")
    return value


def _check_pair(ours: TensorBlock, theirs: TensorBlock, key: LabelsEntry, what: str) -> None:
    if tuple(ours.values.shape) != tuple(theirs.values.shape):
        raise ValueError(
            f"the {what} of the block {key} have shape {tuple(ours.values.shape)} in the "
            f"prediction but {tuple(theirs.values.shape)} in the target"
        )
    a, b = ours.samples, theirs.samples
    if a.names != b.names:
        raise ValueError(
            f"the {what} of the block {key} have sample names {a.names} in the prediction but "
            f"{b.names} in the target"
        )
    if not a.is_dynamic and not b.is_dynamic and a != b:
        raise ValueError(
            f"the {what} of the block {key} have different samples in the prediction and the "
            "target (same count, different values or order)"
        )


def _row_mask(
    block: TensorBlock, explicit: Array | None, padding_system: int | None, system_name: str
) -> Array | None:
    mask = None
    if explicit is not None:
        mask = jnp.asarray(explicit)
        if mask.shape != (block.values.shape[0],):
            raise ValueError(
                f"a mask must have shape (n_samples,) = ({block.values.shape[0]},), got "
                f"{tuple(mask.shape)}"
            )
        mask = mask.astype(bool)
    if padding_system is not None:
        if system_name not in block.samples.names:
            raise ValueError(
                f"padding_system needs a '{system_name}' sample dimension, the samples are "
                f"{block.samples.names}"
            )
        real = jnp.asarray(block.samples.column(system_name)) != padding_system
        mask = real if mask is None else mask & real
    return mask


def _squares(prediction: Array, target: Array, rows: Array | None) -> tuple[Array, Array]:
    """Squared differences (zero on masked rows), and how many elements were compared."""
    diff = jnp.asarray(prediction) - jnp.asarray(target)
    per_row = int(np.prod(diff.shape[1:]))
    if rows is None:
        return diff * diff, jnp.asarray(diff.size, dtype=diff.dtype)
    keep = rows.reshape(rows.shape + (1,) * (diff.ndim - 1))
    # mask the difference, not its square: the gradient of where(keep, d * d, 0) is
    # 0 * 2d on masked rows, which is NaN when padding holds NaN or inf
    diff = jnp.where(keep, diff, 0.0)
    return diff * diff, jnp.sum(rows).astype(diff.dtype) * per_row


def _packed_term(
    pairs: list[tuple[Array, Array, Array | None]], weights: list[Any]
) -> tuple[Array, Array]:
    """``sum_b w_b * SSE_b`` and the number of compared elements, from all blocks at once.

    The blocks are concatenated before anything is computed on them: XLA compiles one kernel
    per element-wise loop or reduction, and one per block made the loss a third of the
    kernels of a small model's train step.
    """
    if not pairs:
        return jnp.asarray(0.0), jnp.asarray(0.0)
    sizes = [int(np.prod(p.shape)) for p, _, _ in pairs]
    ours = jnp.concatenate([jnp.ravel(jnp.asarray(p)) for p, _, _ in pairs])
    theirs = jnp.concatenate([jnp.ravel(jnp.asarray(t)) for _, t, _ in pairs])
    diff = ours - theirs
    if any(rows is not None for _, _, rows in pairs):
        keep = jnp.concatenate(
            [
                jnp.ones(size, bool)
                if rows is None
                else jnp.repeat(rows, size // max(len(rows), 1), total_repeat_length=size)
                for size, (_, _, rows) in zip(sizes, pairs)
            ]
        )
        # mask the difference, not its square (see _squares)
        diff = jnp.where(keep, diff, 0.0)
        count = jnp.sum(keep).astype(diff.dtype)
    else:
        count = jnp.asarray(sum(sizes), dtype=diff.dtype)
    squares = diff * diff
    if all(isinstance(w, (int, float)) for w in weights):
        if any(w != 1 for w in weights):
            squares = squares * np.repeat(np.asarray(weights, dtype=diff.dtype), sizes)
    else:
        per_block = jnp.stack([jnp.asarray(w, dtype=diff.dtype) for w in weights])
        squares = squares * jnp.repeat(per_block, np.asarray(sizes), total_repeat_length=sum(sizes))
    return jnp.sum(squares), count


def _loss(
    prediction: TensorMap,
    target: TensorMap,
    block_weights: Any,
    values_weight: float,
    gradient_weights: Mapping[str, float] | None,
    mask: Any,
    padding_system: int | None,
    system_name: str,
    per_block: bool,
    ignore_missing_keys: bool,
    fname: str,
) -> Array | tuple[Array, TensorMap]:
    mean = fname == "mean_squared_error"
    prediction = _utils.check_tensor(prediction, f"{fname} (prediction)")
    target = _utils.check_tensor(target, f"{fname} (target)")
    keys = prediction.keys
    if keys.names != target.keys.names:
        raise ValueError(
            f"{fname}: the prediction has key names {keys.names} but the target has "
            f"{target.keys.names}"
        )
    positions = target.keys.positions(keys)
    if (positions < 0).any():
        missing = keys.entry(int(np.nonzero(positions < 0)[0][0]))
        raise ValueError(f"{fname}: the target has no block for the prediction key {missing}")
    if not ignore_missing_keys:
        unmatched = np.nonzero(keys.positions(target.keys) < 0)[0]
        if len(unmatched):
            shown = ", ".join(str(target.keys.entry(int(i))) for i in unmatched[:4])
            more = f" and {len(unmatched) - 4} more" if len(unmatched) > 4 else ""
            raise ValueError(
                f"{fname}: the prediction has no block for the target keys {shown}{more} "
                f"({len(unmatched)} of the {len(target.keys)} target blocks), which the loss "
                "would silently leave out: predict every target block, select the target "
                "blocks to compare first, or pass ignore_missing_keys=True to compare only the "
                "prediction's blocks"
            )
    weights = _per_block(block_weights, keys, "block_weights", 1.0)
    masks = _per_block(mask, keys, "mask", None)
    gradient_weights = dict(gradient_weights or {})
    return _loss_core(
        prediction,
        target,
        weights,
        values_weight,
        gradient_weights,
        masks,
        tuple(int(p) for p in positions),
        padding_system,
        system_name,
        per_block,
        mean,
    )


# one compiled program per structure for eager callers; inlined inside a user's jit
@functools.partial(jax.jit, static_argnums=(6, 7, 8, 9, 10))
def _loss_core(
    prediction: TensorMap,
    target: TensorMap,
    weights: list[Any],
    values_weight: Any,
    gradient_weights: dict[str, Any],
    masks: list[Any],
    positions: tuple[int, ...],
    padding_system: int | None,
    system_name: str,
    per_block: bool,
    mean: bool,
) -> Array | tuple[Array, TensorMap]:
    keys = prediction.keys
    # terms[name] = list over blocks of (prediction, target, row mask or None)
    terms: dict[str, list[tuple[Array, Array, Array | None]]] = {"values": []}
    for parameter in gradient_weights:
        terms[parameter] = []
    for b, (key, ours) in enumerate(zip(keys, prediction.blocks())):
        theirs = target.block_by_id(positions[b])
        _check_pair(ours, theirs, key, "values")
        rows = _row_mask(ours, masks[b], padding_system, system_name)
        terms["values"].append((ours.values, theirs.values, rows))
        for parameter in gradient_weights:
            for tensor_name, block in (("prediction", ours), ("target", theirs)):
                if not block.has_gradient(parameter):
                    raise ValueError(
                        f"gradient_weights asks for '{parameter}' gradients but the {tensor_name} "
                        f"block {key} has gradients {block.gradients_list()}"
                    )
            grad_ours, grad_theirs = ours.gradient(parameter), theirs.gradient(parameter)
            _check_pair(grad_ours, grad_theirs, key, f"'{parameter}' gradients")
            grad_rows = None if rows is None else rows[_utils.gradient_rows(grad_ours)]
            terms[parameter].append((grad_ours.values, grad_theirs.values, grad_rows))

    term_weights = {"values": values_weight, **gradient_weights}
    if not per_block:
        total = 0.0
        for name, pairs in terms.items():
            term, count = _packed_term(pairs, weights)
            if mean:
                term = term / jnp.maximum(count, 1)
            total = total + term_weights[name] * term
        return jnp.asarray(total)
    total = 0.0
    contributions = [0.0] * len(keys)
    for name, pairs in terms.items():
        scale = term_weights[name]
        per_term = [_squares(*pair) for pair in pairs]
        weighted = [w * jnp.sum(sq) for w, (sq, _) in zip(weights, per_term)]
        term = sum(weighted)
        if mean:
            count = sum(n for _, n in per_term)
            term = term / jnp.maximum(count, 1)
            weighted = [s / jnp.maximum(n, 1) for s, (_, n) in zip(weighted, per_term)]
        total = total + scale * term
        contributions = [c + scale * s for c, s in zip(contributions, weighted)]
    total = jnp.asarray(total)
    blocks = [
        TensorBlock(jnp.reshape(c, (1, 1)), Labels.single(), [], _LOSS_PROPERTIES)
        for c in contributions
    ]
    return total, TensorMap(keys, blocks)
