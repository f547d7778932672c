"""keys_to_samples, keys_to_properties and components_to_properties.

All index computations happen on static metadata with NumPy; the arrays are only gathered,
concatenated and scattered (with NumPy for NumPy data, ``jax.numpy`` otherwise, see
``_backend``), so these functions are jit-able and differentiable through the values.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from ._backend import namespace, set_rows
from .block import TensorBlock
from .labels import Labels

if TYPE_CHECKING:
    from .tensormap import TensorMap


def _names_to_move(
    tensor: TensorMap, keys_to_move: str | Sequence[str], operation: str
) -> list[str]:
    names = [keys_to_move] if isinstance(keys_to_move, str) else list(keys_to_move)
    if not names:
        raise ValueError(f"{operation}: give at least one key dimension to move")
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


def keys_to_samples(
    tensor: TensorMap, keys_to_move: str | Sequence[str], *, sort_samples: bool = True
) -> TensorMap:
    from .tensormap import TensorMap

    operation = "keys_to_samples"
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
            if block.properties != first.properties:
                raise ValueError(
                    f"{operation}: the blocks for {tensor.keys.entry(int(index))} and "
                    f"{tensor.keys.entry(int(group[0]))} have different properties and "
                    "cannot be merged along samples"
                )
        sample_rows = []
        for index, block in zip(group, blocks):
            samples = _static_samples(block, operation).values
            extra = np.broadcast_to(moved_columns[index], (samples.shape[0], len(moved)))
            sample_rows.append(np.concatenate([samples, extra], axis=1))
        all_samples = np.concatenate(sample_rows, axis=0)
        order = _lexsort_rows(all_samples) if sort_samples else np.arange(len(all_samples))
        new_position = np.empty(len(order), dtype=np.int64)
        new_position[order] = np.arange(len(order))
        xp = namespace(*[b.values for b in blocks])
        values = xp.concatenate([b.values for b in blocks], axis=0)
        new_block = TensorBlock(
            values[order],
            Labels(first.samples.names + moved, all_samples[order]),
            first.components,
            first.properties,
        )
        offsets = np.cumsum([0] + [len(b.samples) for b in blocks])
        for parameter, gradient in first.gradients():
            rows, arrays = [], []
            for offset, block in zip(offsets, blocks):
                g = block.gradient(parameter)
                g_samples = np.array(_static_samples(g, operation).values)
                g_samples[:, 0] = new_position[g_samples[:, 0] + offset]
                rows.append(g_samples)
                arrays.append(g.values)
            g_rows = np.concatenate(rows, axis=0)
            g_order = _lexsort_rows(g_rows) if sort_samples else np.arange(len(g_rows))
            new_block.add_gradient(
                parameter,
                TensorBlock(
                    namespace(*arrays).concatenate(arrays, axis=0)[g_order],
                    Labels(gradient.samples.names, g_rows[g_order]),
                    gradient.components,
                    gradient.properties,
                ),
            )
        new_blocks.append(new_block)
    return TensorMap(new_keys, new_blocks)


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
    from .tensormap import TensorMap

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
            g_values = _scatter(
                g_shape,
                [
                    (g_rows[b], offsets[i], g_blocks[b].values)
                    for i, b in enumerate(block_of_entry)
                    if b is not None
                ],
                fill_value=0.0,
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
    return TensorMap(new_keys, new_blocks)


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
    from .tensormap import TensorMap

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
    return TensorMap(tensor.keys, [_components_to_properties_block(b, names) for b in tensor])


def _move_components(
    values: Any, components: list[Labels], properties: Labels, names: list[str]
) -> tuple[Any, list[Labels], Labels]:
    """Move the named components of ``values`` into the front of the properties."""
    component_names = [c.names[0] for c in components]
    moved_axes = [1 + component_names.index(n) for n in names]
    kept_axes = [a for a in range(values.ndim - 1) if a not in moved_axes]
    xp = namespace(values)
    permuted = xp.transpose(values, [*kept_axes, *moved_axes, values.ndim - 1])
    new_shape = (*[values.shape[a] for a in kept_axes], -1)
    moved_labels = [components[a - 1] for a in moved_axes]
    grids = np.meshgrid(
        *[c.values[:, 0] for c in moved_labels], np.arange(len(properties)), indexing="ij"
    )
    columns = [g.reshape(-1) for g in grids[:-1]]
    property_values = properties.values[grids[-1].reshape(-1)]
    new_properties = Labels(
        names + properties.names, np.column_stack([*columns, property_values]).astype(np.int32)
    )
    kept = [c for c in components if c.names[0] not in names]
    return permuted.reshape(new_shape), kept, new_properties


def _components_to_properties_block(block: TensorBlock, names: list[str]) -> TensorBlock:
    values, components, properties = _move_components(
        block.values, block.components, block.properties, names
    )
    new_block = TensorBlock(values, block.samples, components, properties)
    for parameter, gradient in block.gradients():
        g_values, g_components, _ = _move_components(
            gradient.values, gradient.components, gradient.properties, names
        )
        new_block.add_gradient(
            parameter, TensorBlock(g_values, gradient.samples, g_components, properties)
        )
    return new_block
