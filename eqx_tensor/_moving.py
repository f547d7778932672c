"""keys_to_samples, keys_to_properties and components_to_properties, and the TensorMap methods.

All index computations happen on static metadata with NumPy; the arrays are only gathered,
concatenated and scattered (with NumPy for NumPy data, ``jax.numpy`` otherwise, see
``_backend``), so these functions are jit-able and differentiable through the values. Like every
operation, they return JAX arrays (see :mod:`eqx_tensor.operations`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import numpy as np

from ._backend import namespace, set_rows, to_jax
from .block import TensorBlock
from .labels import Labels
from .tensormap import TensorMap


def _names_to_move(
    tensor: TensorMap, keys_to_move: str | Sequence[str], operation: str
) -> list[str]:
    names = [keys_to_move] if isinstance(keys_to_move, str) else list(keys_to_move)
    if not names:
        raise ValueError(f"{operation}: give at least one key dimension to move")
    if len(tensor.keys) == 0:
        raise ValueError(
            f"invalid parameter: there are no keys to move in an empty TensorMap ({operation})"
        )
    for name in names:
        if name not in tensor.keys.names:
            raise ValueError(
                f"{operation}: '{name}' is not a key dimension, keys are {tensor.keys.names}"
            )
    return names


def _group_blocks(tensor: TensorMap, moved: list[str]) -> tuple[Labels, list[np.ndarray]]:
    """New keys (remaining dimensions, first-appearance order) and the block indices of each."""
    keys = tensor.keys
    remaining = [n for n in keys.names if n not in moved]
    if not remaining:
        return Labels.single(), [np.arange(len(keys))]
    view = keys.view(remaining).values
    unique, first, inverse = np.unique(view, axis=0, return_index=True, return_inverse=True)
    order = np.argsort(first, kind="stable")
    inverse = inverse.reshape(-1)
    groups = [np.nonzero(inverse == u)[0] for u in order]
    return Labels(remaining, unique[order]), groups


def _lexsort_rows(values: np.ndarray) -> np.ndarray:
    if values.shape[0] == 0 or values.shape[1] == 0:
        return np.arange(values.shape[0])
    return np.lexsort(values.T[::-1])


def _static_samples(block: TensorBlock, operation: str) -> Labels:
    return block.samples.require_static(operation)


def _with_info(result: TensorMap, tensor: TensorMap) -> TensorMap:
    """``result`` with JAX arrays (the operations' array policy) and ``tensor``'s info.

    The rows are moved with NumPy when the input is NumPy (nothing to compile) and the result
    is converted once at the end, block by block.
    """
    result = jax.tree.map(to_jax, result)
    # metatensor-core's keys_to_* and components_to_properties keep the info
    for key, value in tensor.info().items():
        result.set_info(key, value)
    return result


def _union_properties(blocks: list[TensorBlock]) -> tuple[Labels, list[np.ndarray]]:
    """Union of the blocks' properties in first-appearance order, and each block's
    positions in it (metatensor's merged properties in ``keys_to_samples``)."""
    union = blocks[0].properties
    for block in blocks[1:]:
        if block.properties != union:
            union = union.union(block.properties)
    positions = [
        np.arange(len(union)) if b.properties == union else union.positions(b.properties)
        for b in blocks
    ]
    return union, positions


def _place(
    shape: tuple[int, ...],
    fill_value: float,
    pieces: list[tuple[np.ndarray, np.ndarray, Any]],
    dtype_like: list[Any],
) -> Any:
    """A ``fill_value`` array of ``shape`` with each ``values`` at ``(rows, ..., columns)``."""
    xp = namespace(*dtype_like)
    dtype = xp.result_type(*[a.dtype for a in dtype_like])
    out = xp.full(shape, np.array(fill_value, dtype=dtype), dtype=dtype)
    for rows, columns, values in pieces:
        values = values.astype(dtype)
        if len(columns) == shape[-1] and np.array_equal(columns, np.arange(shape[-1])):
            out = set_rows(out, (rows,), values)
        else:
            # advanced indices apart: their broadcast axes (rows, columns) come first
            index = (rows[:, None], Ellipsis, columns[None, :])
            out = set_rows(out, index, xp.moveaxis(values, -1, 1))
    return out


def _stack_rows(
    parts: list[np.ndarray],
    sort: bool,
    components: Sequence[Labels],
    properties: Labels,
    columns: list[np.ndarray],
    fill_value: float,
    arrays: list[Any],
) -> tuple[np.ndarray, np.ndarray, Any]:
    """Sample rows of several blocks stacked (sorted if asked), and their arrays merged.

    Returns the rows, the new position of each stacked row, and an array of shape
    ``(n_rows, *components, len(properties))`` holding each block's ``arrays`` entry at its rows
    and property ``columns``, ``fill_value`` elsewhere.
    """
    rows = np.concatenate(parts, axis=0)
    order = _lexsort_rows(rows) if sort else np.arange(len(rows))
    position = np.empty(len(order), dtype=np.int64)
    position[order] = np.arange(len(order))
    offsets = np.cumsum([0] + [len(part) for part in parts])
    shape = (len(rows), *[len(c) for c in components], len(properties))
    pieces = [
        (position[offset : offset + len(part)], cols, array)
        for offset, part, cols, array in zip(offsets, parts, columns, arrays)
    ]
    return rows[order], position, _place(shape, fill_value, pieces, arrays)


def keys_to_samples(
    tensor: TensorMap,
    keys_to_move: str | Sequence[str],
    *,
    fill_value: float = 0.0,
    sort_samples: bool = True,
) -> TensorMap:
    """Move key dimensions to the end of the samples, merging the blocks that then share keys.

    metatensor-core's ``TensorMap.keys_to_samples``: the merged blocks must have the same
    components (and gradient parameters); their properties may differ, the merged block
    then has the union of the properties (in the order they first appear) and the entries
    a block does not have are ``fill_value``, in the values and in the gradients. Samples
    are sorted with ``sort_samples``, else kept in block order; gradient samples (their
    ``"sample"`` dimension remapped to the merged rows) are always sorted, as metatensor
    does. The info of ``tensor`` is kept.

    Args:
        tensor: the tensor; its samples (and gradient samples) must be static.
        keys_to_move: one key dimension name or several (or empty Labels naming them).
        fill_value: the value of missing entries (cast to the values' dtype).
        sort_samples: sort the merged samples lexicographically.
    """
    operation = "keys_to_samples"
    if isinstance(keys_to_move, Labels):
        if len(keys_to_move) != 0:
            raise ValueError(
                f"{operation}: the Labels of keys to move must be empty (only their names "
                f"are used), got {len(keys_to_move)} entries"
            )
        keys_to_move = keys_to_move.names
    moved = _names_to_move(tensor, keys_to_move, operation)
    new_keys, groups = _group_blocks(tensor, moved)
    moved_columns = tensor.keys.view(moved).values
    new_blocks = []
    for group in groups:
        blocks = tensor.blocks_by_id(group)
        first = blocks[0]
        for index, block in zip(group[1:], blocks[1:]):
            if block.components != first.components:
                raise ValueError(
                    f"{operation}: the blocks for {tensor.keys.entry(int(index))} and "
                    f"{tensor.keys.entry(int(group[0]))} have different components and "
                    "cannot be merged along samples"
                )
            if sorted(block.gradients_list()) != sorted(first.gradients_list()):
                raise ValueError(
                    f"{operation}: the blocks for {tensor.keys.entry(int(index))} and "
                    f"{tensor.keys.entry(int(group[0]))} have different gradients "
                    f"({block.gradients_list()} and {first.gradients_list()}) and cannot be "
                    "merged"
                )
        properties, columns = _union_properties(blocks)
        sample_rows = []
        for index, block in zip(group, blocks):
            samples = _static_samples(block, operation).values
            extra = np.broadcast_to(moved_columns[index], (samples.shape[0], len(moved)))
            sample_rows.append(np.concatenate([samples, extra], axis=1))
        samples, new_position, values = _stack_rows(
            sample_rows,
            sort_samples,
            first.components,
            properties,
            columns,
            fill_value,
            [b.values for b in blocks],
        )
        new_block = TensorBlock(
            values, Labels(first.samples.names + moved, samples), first.components, properties
        )
        offsets = np.cumsum([0] + [len(b.samples) for b in blocks])
        for parameter, gradient in first.gradients():
            gradients = [block.gradient(parameter) for block in blocks]
            rows = []
            for offset, g in zip(offsets, gradients):
                g_samples = np.array(_static_samples(g, operation).values)
                g_samples[:, 0] = new_position[g_samples[:, 0] + offset]
                rows.append(g_samples)
            # metatensor sorts gradient samples whatever sort_samples says
            g_samples, _, g_values = _stack_rows(
                rows,
                True,
                gradient.components,
                properties,
                columns,
                fill_value,
                [g.values for g in gradients],
            )
            new_block.add_gradient(
                parameter,
                TensorBlock(
                    g_values,
                    Labels(gradient.samples.names, g_samples),
                    gradient.components,
                    properties,
                ),
            )
        new_blocks.append(new_block)
    return _with_info(TensorMap(new_keys, new_blocks), tensor)


def _merged_samples(
    sample_sets: list[np.ndarray], sort: bool
) -> tuple[np.ndarray, list[np.ndarray]]:
    """Union of row sets (first-appearance order, or sorted) and each set's rows in it."""
    width = sample_sets[0].shape[1]
    stacked = np.concatenate(sample_sets, axis=0) if sample_sets else np.zeros((0, width), np.int32)
    if len(stacked) == 0:
        return stacked, [np.zeros(0, dtype=np.int64) for _ in sample_sets]
    unique, first, inverse = np.unique(stacked, axis=0, return_index=True, return_inverse=True)
    inverse = inverse.reshape(-1)
    if sort:
        merged, position_of_unique = unique, np.arange(len(unique))
    else:
        order = np.argsort(first, kind="stable")
        merged = unique[order]
        position_of_unique = np.empty(len(order), dtype=np.int64)
        position_of_unique[order] = np.arange(len(order))
    positions = position_of_unique[inverse]
    splits = np.cumsum([len(s) for s in sample_sets])[:-1]
    return merged, np.split(positions, splits)


def keys_to_properties(
    tensor: TensorMap,
    keys_to_move: str | Sequence[str] | Labels,
    *,
    fill_value: float = 0.0,
    sort_samples: bool = True,
) -> TensorMap:

    operation = "keys_to_properties"
    selected: Labels | None = None
    if isinstance(keys_to_move, Labels):
        selected = keys_to_move.require_static(operation)
        moved = _names_to_move(tensor, selected.names, operation)
    else:
        moved = _names_to_move(tensor, keys_to_move, operation)
    new_keys, groups = _group_blocks(tensor, moved)
    moved_columns = tensor.keys.view(moved).values
    new_blocks = []
    for group in groups:
        blocks = tensor.blocks_by_id(group)
        first = blocks[0]
        group_keys = moved_columns[group]
        if selected is None:
            entries = group_keys
            block_of_entry = list(range(len(blocks)))
        else:
            entries = selected.values
            lookup = {row.tobytes(): i for i, row in enumerate(group_keys)}
            block_of_entry = [lookup.get(row.tobytes()) for row in entries]
            missing = set(range(len(blocks))) - {b for b in block_of_entry if b is not None}
            if missing:
                raise ValueError(
                    f"{operation}: the key {tensor.keys.entry(int(group[min(missing)]))} is not "
                    "in the Labels of keys to move, its block would be dropped"
                )
        for index, block in zip(group[1:], blocks[1:]):
            if block.components != first.components:
                raise ValueError(
                    f"{operation}: the blocks for {tensor.keys.entry(int(index))} and "
                    f"{tensor.keys.entry(int(group[0]))} have different components"
                )
        property_rows, offsets = [], []
        offset = 0
        for entry, b in zip(entries, block_of_entry):
            properties = (blocks[b] if b is not None else first).properties.values
            if b is None and any(blk.properties != first.properties for blk in blocks):
                raise ValueError(
                    f"{operation}: cannot fill the missing key {entry.tolist()} because the "
                    "merged blocks have different properties"
                )
            extra = np.broadcast_to(entry, (properties.shape[0], len(moved)))
            property_rows.append(np.concatenate([extra, properties], axis=1))
            offsets.append(offset)
            offset += properties.shape[0]
        new_properties = Labels(moved + first.properties.names, np.concatenate(property_rows))

        samples, rows_of_block = _merged_samples(
            [_static_samples(b, operation).values for b in blocks], sort_samples
        )
        shape = (len(samples), *[len(c) for c in first.components], len(new_properties))
        values = _scatter(
            shape,
            [
                (rows_of_block[b], offsets[i], blocks[b].values)
                for i, b in enumerate(block_of_entry)
                if b is not None
            ],
            fill_value,
            blocks,
        )
        new_block = TensorBlock(
            values, Labels(first.samples.names, samples), first.components, new_properties
        )
        for parameter, gradient in first.gradients():
            g_blocks = [b.gradient(parameter) for b in blocks]
            remapped = []
            for rows, g in zip(rows_of_block, g_blocks):
                g_samples = np.array(_static_samples(g, operation).values)
                g_samples[:, 0] = rows[g_samples[:, 0]] if len(g_samples) else g_samples[:, 0]
                remapped.append(g_samples)
            # metatensor sorts merged gradient samples whatever sort_samples says
            g_merged, g_rows = _merged_samples(remapped, sort=True)
            g_shape = (len(g_merged), *[len(c) for c in gradient.components], len(new_properties))
            # metatensor fills the gradients with fill_value too
            g_values = _scatter(
                g_shape,
                [
                    (g_rows[b], offsets[i], g_blocks[b].values)
                    for i, b in enumerate(block_of_entry)
                    if b is not None
                ],
                fill_value=fill_value,
                blocks=blocks,
            )
            new_block.add_gradient(
                parameter,
                TensorBlock(
                    g_values,
                    Labels(gradient.samples.names, g_merged),
                    gradient.components,
                    new_properties,
                ),
            )
        new_blocks.append(new_block)
    return _with_info(TensorMap(new_keys, new_blocks), tensor)


def _scatter(
    shape: tuple[int, ...],
    pieces: list[tuple[np.ndarray, int, Any]],
    fill_value: float,
    blocks: list[TensorBlock],
) -> Any:
    xp = namespace(*[b.values for b in blocks])
    dtype = xp.result_type(*[b.values.dtype for b in blocks])
    out = xp.full(shape, fill_value, dtype=dtype)
    for rows, offset, values in pieces:
        n = values.shape[-1]
        out = set_rows(out, (rows, ..., slice(offset, offset + n)), values.astype(dtype))
    return out


def components_to_properties(tensor: TensorMap, dimensions: str | Sequence[str]) -> TensorMap:
    """Move component dimensions to the properties, as metatensor-core does.

    The dimensions are moved one after the other, each to the front of the properties, so
    the new properties are ``[*reversed(dimensions), *old_properties]`` (metatensor's
    order), entries ordered with the first of these dimensions varying slowest. The info of
    ``tensor`` is kept.

    Departure: metatensor-core 0.2 mislays the values when the moved component is neither
    the last nor the second to last of three or more components (it swaps the moved axis
    with the last component axis instead of moving it); here the values always match the
    labels (the remaining components keep their order).
    """
    names = [dimensions] if isinstance(dimensions, str) else list(dimensions)
    if not names:
        raise ValueError("components_to_properties: give at least one component dimension")
    component_names = tensor.component_names
    for name in names:
        if name not in component_names:
            raise ValueError(
                f"components_to_properties: '{name}' is not a component dimension, components "
                f"are {component_names}"
            )
    if len(set(names)) != len(names):
        raise ValueError(f"components_to_properties: dimensions repeat in {names}")
    blocks = [_components_to_properties_block(b, names) for b in tensor]
    return _with_info(TensorMap(tensor.keys, blocks), tensor)


def _move_component(
    values: Any, components: list[Labels], properties: Labels, name: str
) -> tuple[Any, list[Labels], Labels]:
    """Move the component ``name`` of ``values`` to the front of the properties.

    ``values`` has shape ``(n, *[len(c) for c in components], len(properties))``; the
    result has the component axis merged with the property axis, component-major.
    """
    component_names = [c.names[0] for c in components]
    axis = 1 + component_names.index(name)
    last = values.ndim - 1
    kept_axes = [a for a in range(last) if a != axis]
    xp = namespace(values)
    permuted = xp.transpose(values, [*kept_axes, axis, last])
    moved = components[axis - 1]
    new_shape = (*[values.shape[a] for a in kept_axes], len(moved) * len(properties))
    column = np.repeat(np.asarray(moved.values)[:, 0], len(properties))
    rest = np.tile(np.asarray(properties.values), (len(moved), 1))
    new_properties = Labels(
        [name, *properties.names], np.column_stack([column, rest]).astype(np.int32)
    )
    kept = [c for c in components if c.names[0] != name]
    return permuted.reshape(new_shape), kept, new_properties


def _components_to_properties_block(block: TensorBlock, names: list[str]) -> TensorBlock:
    values, components, properties = block.values, list(block.components), block.properties
    for name in names:
        values, components, properties = _move_component(values, components, properties, name)
    new_block = TensorBlock(values, block.samples, components, properties)
    for parameter, gradient in block.gradients():
        g_values, g_components, g_properties = (
            gradient.values,
            list(gradient.components),
            gradient.properties,
        )
        for name in names:
            g_values, g_components, g_properties = _move_component(
                g_values, g_components, g_properties, name
            )
        new_block.add_gradient(
            parameter, TensorBlock(g_values, gradient.samples, g_components, properties)
        )
    return new_block


# ------------------------------------------------------------------------- TensorMap methods
# The data model imports nothing above it: this module adds metatensor's methods to TensorMap
# when it is imported, which ``import eqx_tensor`` always does.
def _keys_to_samples_method(
    self: TensorMap,
    keys_to_move: str | Sequence[str],
    *,
    fill_value: float = 0.0,
    sort_samples: bool = True,
) -> TensorMap:
    """Move key dimensions to the end of the samples, merging the blocks that then share keys.

    metatensor-core's method: merged blocks must have the same components; their
    properties may differ, missing entries are then ``fill_value`` (values and gradients).
    See :func:`eqx_tensor._moving.keys_to_samples`.
    """
    return keys_to_samples(self, keys_to_move, fill_value=fill_value, sort_samples=sort_samples)


def _keys_to_properties_method(
    self: TensorMap,
    keys_to_move: str | Sequence[str] | Labels,
    *,
    fill_value: float = 0.0,
    sort_samples: bool = True,
) -> TensorMap:
    """Move key dimensions to the front of the properties, merging blocks.

    The merged samples are the union of the blocks' samples; rows a block does not have
    are filled with ``fill_value``. With ``Labels``, the new properties contain exactly
    these key values, in this order (missing blocks are filled too).
    """
    return keys_to_properties(self, keys_to_move, fill_value=fill_value, sort_samples=sort_samples)


def _components_to_properties_method(self: TensorMap, dimensions: str | Sequence[str]) -> TensorMap:
    """Move component dimensions to the properties, each to the front in turn (the new
    properties are ``[*reversed(dimensions), *old]``, as in metatensor)."""
    return components_to_properties(self, dimensions)


for _name, _method in (
    ("keys_to_samples", _keys_to_samples_method),
    ("keys_to_properties", _keys_to_properties_method),
    ("components_to_properties", _components_to_properties_method),
):
    _method.__name__ = _name
    _method.__qualname__ = f"TensorMap.{_name}"
    setattr(TensorMap, _name, _method)
