"""``join`` and ``join_blocks``: concatenate tensors along samples or properties.

Counterparts of metatensor-operations' ``join`` and ``join_blocks``, with explicit
gradients: along samples the gradient rows are concatenated (their ``"sample"`` dimension
shifted to the joined rows); along properties the gradient samples are merged (union) and
missing gradient rows are zero.

Joining along samples accepts dynamic sample labels (see :mod:`eqx_tensor.labels`): values and label
arrays are concatenated, which only needs names and sizes (uniqueness of the joined entries
cannot be checked then). Joining along properties compares the blocks' samples, which for
traced dynamic labels means equal names and sizes.

.. note:: Departures from metatensor-operations 0.5:

   - ``add_dimension`` is applied even when a single tensor / block is given (metatensor
     returns the input unchanged, so the labels' names would depend on how many inputs a
     pipeline happens to join);
   - sample names in a different order are reordered to the first input's order
     (metatensor accepts them but copies the columns in the wrong order).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax.numpy as jnp
import numpy as np

from .._backend import to_jax
from ..block import TensorBlock
from ..labels import Labels
from ..tensormap import TensorMap
from ._utils import (
    NotEqualError,
    _check_blocks_raise,
    _check_same_gradients_raise,
    _check_same_keys_raise,
    _refuse_gradients_of_gradients,
)

__all__ = ["join", "join_blocks"]


def _check_axis(axis: Any, fname: str) -> None:
    if axis not in ("samples", "properties"):
        raise ValueError(
            f"`axis` in '{fname}' must be 'samples' or 'properties', got {axis!r} (only "
            "`'properties'` or `'samples'` are valid values for the `axis` parameter)"
        )


def _labels(names: list[str], values: Any, what: str, fname: str, add_dimension: str | None):
    """Joined labels: validated (unique entries) when static, unchecked when dynamic."""
    if not isinstance(values, np.ndarray):
        return Labels._unchecked(tuple(names), values)
    try:
        return Labels(names, values)
    except ValueError as error:
        hint = "" if add_dimension else "; use `add_dimension` to tell the inputs apart"
        raise ValueError(f"'{fname}' cannot join the {what}: {error}{hint}") from None


def _concatenate_labels(columns: list[Any]) -> Any:
    if all(isinstance(c, np.ndarray) for c in columns):
        return np.concatenate(columns, axis=0).astype(np.int32)
    return jnp.concatenate([jnp.asarray(c, dtype=jnp.int32) for c in columns], axis=0)


def _with_index_column(values: Any, index: int) -> Any:
    """``values`` with an extra last column equal to ``index``."""
    if isinstance(values, np.ndarray):
        column = np.full((values.shape[0], 1), index, dtype=np.int32)
        return np.concatenate([values, column], axis=1)
    column = jnp.full((values.shape[0], 1), index, dtype=jnp.int32)
    return jnp.concatenate([jnp.asarray(values, dtype=jnp.int32), column], axis=1)


def _join_block_samples(
    blocks: list[TensorBlock], fname: str, add_dimension: str | None
) -> TensorBlock:
    first = blocks[0]
    names = first.samples.names
    for block in blocks[1:]:
        _check_blocks_raise(first, block, fname, ["components", "properties"])
        _check_same_gradients_raise(first, block, fname, ["components"])

    sample_values = []
    for i, block in enumerate(blocks):
        samples = block.samples
        if samples.names != names:
            samples = samples.view(names)  # same names in another order: reorder columns
        values = samples.values
        if add_dimension is not None:
            values = _with_index_column(values, i)
        sample_values.append(values)
    new_names = names + ([add_dimension] if add_dimension is not None else [])
    samples = _labels(
        new_names, _concatenate_labels(sample_values), "samples", fname, add_dimension
    )
    values = jnp.concatenate([to_jax(b.values) for b in blocks], axis=0)
    new = TensorBlock(values, samples, first.components, first.properties)

    for parameter, first_gradient in first.gradients():
        gradients = [block.gradient(parameter) for block in blocks]
        g_names = first_gradient.samples.names
        rows, shift = [], 0
        for block, gradient in zip(blocks, gradients):
            if gradient.samples.names != g_names:
                raise NotEqualError(
                    f"inputs to '{fname}' should have the same gradients: gradient "
                    f"'{parameter}' sample names {gradient.samples.names} != {g_names}"
                )
            g_values = gradient.samples.values
            if isinstance(g_values, np.ndarray):
                g_values = np.array(g_values)
                g_values[:, 0] += shift
            else:
                g_values = to_jax(g_values).at[:, 0].add(shift)
            rows.append(g_values)
            shift += len(block.samples)
        new.add_gradient(
            parameter,
            TensorBlock(
                jnp.concatenate([to_jax(g.values) for g in gradients], axis=0),
                _labels(
                    g_names,
                    _concatenate_labels(rows),
                    f"'{parameter}' gradient samples",
                    fname,
                    add_dimension,
                ),
                first_gradient.components,
                first.properties,
            ),
        )
    return new


def _join_block_properties(
    blocks: list[TensorBlock], fname: str, add_dimension: str | None
) -> TensorBlock:
    first = blocks[0]
    names = first.properties.names
    for block in blocks[1:]:
        _check_blocks_raise(first, block, fname, ["samples", "components"])
        _check_same_gradients_raise(first, block, fname, ["components"])
    different_names = any(block.properties.names != names for block in blocks)

    if different_names:
        if add_dimension is not None:
            raise ValueError(
                f"'{fname}' cannot add the dimension '{add_dimension}' to properties when "
                "the inputs have different property names"
            )
        rows = [
            np.stack([np.full(len(b.properties), i), np.arange(len(b.properties))], axis=1)
            for i, b in enumerate(blocks)
        ]
        properties = Labels(["joined_index", "property"], np.concatenate(rows).astype(np.int32))
    else:
        rows = [np.asarray(b.properties.values) for b in blocks]
        if add_dimension is not None:
            rows = [_with_index_column(r, i) for i, r in enumerate(rows)]
        new_names = names + ([add_dimension] if add_dimension is not None else [])
        properties = _labels(new_names, np.concatenate(rows), "properties", fname, add_dimension)

    values = jnp.concatenate([to_jax(b.values) for b in blocks], axis=-1)
    new = TensorBlock(values, first.samples, first.components, properties)

    offsets = np.cumsum([0] + [len(b.properties) for b in blocks])
    for parameter, first_gradient in first.gradients():
        gradients = [block.gradient(parameter) for block in blocks]
        arrays = [to_jax(g.values) for g in gradients]
        if all(g.samples == first_gradient.samples for g in gradients):
            # same gradient rows everywhere (the common case): a plain concatenation
            joined = first_gradient.samples
            g_values = jnp.concatenate(arrays, axis=-1)
        else:
            joined = first_gradient.samples.require_static(f"{fname} (gradient samples)")
            for gradient in gradients:
                gradient.samples.require_static(f"{fname} (gradient samples)")
                joined = joined.union(gradient.samples)
            shape = (len(joined), *first_gradient.values.shape[1:-1], len(properties))
            g_values = jnp.zeros(shape, dtype=jnp.result_type(*arrays))
            for gradient, array, start, stop in zip(gradients, arrays, offsets, offsets[1:]):
                rows_in_joined = joined.positions(gradient.samples)
                g_values = g_values.at[rows_in_joined, ..., start:stop].set(array)
        new.add_gradient(
            parameter, TensorBlock(g_values, joined, first_gradient.components, properties)
        )
    return new


def _join_blocks(
    blocks: list[TensorBlock], axis: str, fname: str, add_dimension: str | None
) -> TensorBlock:
    if axis == "samples":
        return _join_block_samples(blocks, fname, add_dimension)
    return _join_block_properties(blocks, fname, add_dimension)


def _empty_like(block: TensorBlock, axis: str) -> TensorBlock:
    """A block with the metadata of ``block`` but no entries along ``axis``."""

    def empty_labels(labels: Labels) -> Labels:
        return Labels(labels.names, np.zeros((0, len(labels.names)), dtype=np.int32))

    values = to_jax(block.values)
    if axis == "samples":
        samples, properties = empty_labels(block.samples), block.properties
        values = jnp.zeros((0, *values.shape[1:]), dtype=values.dtype)
    else:
        samples, properties = block.samples, empty_labels(block.properties)
        values = jnp.zeros((*values.shape[:-1], 0), dtype=values.dtype)
    new = TensorBlock(values, samples, block.components, properties)
    for parameter, gradient in block.gradients():
        g_values = to_jax(gradient.values)
        if axis == "samples":
            g_samples = empty_labels(gradient.samples)
            g_values = jnp.zeros((0, *g_values.shape[1:]), dtype=g_values.dtype)
        else:
            g_samples = gradient.samples
            g_values = jnp.zeros((*g_values.shape[:-1], 0), dtype=g_values.dtype)
        new.add_gradient(
            parameter, TensorBlock(g_values, g_samples, gradient.components, properties)
        )
    return new


def _aligned_blocks(
    tensors: list[TensorMap], axis: str, different_keys: str
) -> tuple[Labels, list[list[TensorBlock]]]:
    """The keys of the result and, for each key, the block of every tensor."""
    if different_keys == "error":
        for tensor in tensors[1:]:
            _check_same_keys_raise(tensors[0], tensor, "join")
        keys = tensors[0].keys
    elif different_keys == "intersection":
        keys = tensors[0].keys
        for tensor in tensors[1:]:
            keys = keys.intersection(tensor.keys)
    elif different_keys == "union":
        keys = tensors[0].keys
        for tensor in tensors[1:]:
            keys = keys.union(tensor.keys)
    else:
        raise ValueError(
            f"'{different_keys}' is not a valid option for `different_keys`. Choose either "
            "'error', 'intersection' or 'union'."
        )
    positions = [tensor.keys.positions(keys) for tensor in tensors]
    per_key = []
    for k in range(len(keys)):
        blocks: list[TensorBlock | None] = [
            tensor.block_by_id(int(p[k])) if p[k] >= 0 else None
            for tensor, p in zip(tensors, positions)
        ]
        reference = next(b for b in blocks if b is not None)
        per_key.append([b if b is not None else _empty_like(reference, axis) for b in blocks])
    return keys, per_key


def join(
    tensors: Sequence[TensorMap],
    axis: str,
    different_keys: str = "error",
    add_dimension: str | None = None,
) -> TensorMap:
    """Join tensors with the same keys along ``"samples"`` or ``"properties"``.

    Args:
        tensors: the TensorMaps to join (a list or tuple).
        axis: ``"samples"`` or ``"properties"``.
        different_keys: ``"error"`` (all tensors must have the same keys, in any order),
            ``"intersection"`` (keep keys present in every tensor) or ``"union"`` (a
            missing block counts as a block without entries along ``axis``).
        add_dimension: name of an extra last dimension of the joined labels holding the
            index of the input each entry comes from (to keep entries unique).

    Returns:
        A TensorMap with the keys of the first tensor (for ``"error"``), and blocks with
        more samples or properties. When the tensors have different property names, the
        joined properties are ``("joined_index", "property")``: input index and position.
        A single tensor is returned as it is, as metatensor does, unless ``add_dimension``
        is given (metatensor ignores it then; here the dimension is added all the same).

    Raises:
        NotEqualError: (a ``ValueError``) for mismatched keys, components, properties (when
            joining samples), samples (when joining properties) or gradients.
        ValueError: for joined entries that are not unique, or different sample names.
    """
    if not isinstance(tensors, (list, tuple)):
        raise TypeError(f"`tensors` must be a list or a tuple, not {type(tensors)}")
    for tensor in tensors:
        if not isinstance(tensor, TensorMap):
            raise TypeError(f"`tensors` elements must be TensorMap, not {type(tensor)}")
    if len(tensors) == 0:
        raise ValueError("provide at least one `TensorMap` for joining")
    _check_axis(axis, "join")
    tensors = list(tensors)
    if len(tensors) == 1 and add_dimension is None:
        # as metatensor: nothing to join, the tensor itself (metatensor also ignores
        # add_dimension then; here the dimension is still added)
        return tensors[0]
    for tensor in tensors:
        _refuse_gradients_of_gradients(tensor, "join")

    if axis == "samples":
        reference = tensors[0].sample_names
        for tensor in tensors[1:]:
            if sorted(tensor.sample_names) != sorted(reference):
                raise ValueError(
                    "Different tensor have different sample names in `join`. Joining along "
                    "samples with different sample names will lose information and is not "
                    f"supported. (The sample names are {reference} and {tensor.sample_names}.)"
                )

    keys, per_key = _aligned_blocks(tensors, axis, different_keys)
    blocks = [_join_blocks(group, axis, "join", add_dimension) for group in per_key]
    return TensorMap(keys, blocks)


def join_blocks(
    blocks: Sequence[TensorBlock], axis: str, add_dimension: str | None = None
) -> TensorBlock:
    """Join blocks along ``"samples"`` or ``"properties"`` (see :func:`join`)."""
    if not isinstance(blocks, (list, tuple)):
        raise TypeError(f"`blocks` must be a list or a tuple, not {type(blocks)}")
    for block in blocks:
        if not isinstance(block, TensorBlock):
            raise TypeError(f"`blocks` elements must be TensorBlock, not {type(block)}")
    if len(blocks) == 0:
        raise ValueError("provide at least one `TensorBlock` for joining")
    _check_axis(axis, "join_blocks")
    blocks = list(blocks)
    if axis == "samples":
        reference = blocks[0].samples.names
        for block in blocks[1:]:
            if sorted(block.samples.names) != sorted(reference):
                raise ValueError(
                    "different blocks have different sample names in `join_blocks` "
                    f"({reference} and {block.samples.names}); joining along samples would "
                    "lose information"
                )
    return _join_blocks(blocks, axis, "join_blocks", add_dimension)
