"""``slice`` and ``split``: keep some samples or properties of every block.

A selection is either :class:`Labels` over some of the sample (property) dimensions (every
entry matching one of its entries is kept) or a list / 1-D array of integer positions. The
kept positions are computed with NumPy from static metadata, and the arrays are gathered
with ``jax.numpy``. As in metatensor, samples are kept in the order of the selection (in the
block's order for a Labels selection), properties always in the block's order; gradient rows
of removed samples are dropped and the ``"sample"`` dimension of the others is remapped.

Slicing samples by Labels needs static sample labels; slicing samples by integer positions
also works on dynamic sample labels (their values are gathered) as long as gradient
samples are static. Slicing properties never looks at samples.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ..block import TensorBlock
from ..labels import Labels
from ..tensormap import TensorMap
from ._utils import _check_block, _check_tensormap, _refuse_gradients_of_gradients

__all__ = ["slice", "slice_block", "split", "split_block"]

Selection = Labels | Sequence[int] | np.ndarray
_SINGULAR = {"samples": "sample", "properties": "property"}


def _check_axis(axis: Any, fname: str) -> None:
    if not isinstance(axis, str):
        raise TypeError(f"`axis` in '{fname}' must be a string, not {type(axis)}")
    if axis not in ("samples", "properties"):
        raise ValueError(f"`axis` in '{fname}' must be 'samples' or 'properties', got '{axis}'")


def _check_selection(names: list[str], axis: str, selection: Any, fname: str) -> None:
    """Type of ``selection``, and for Labels, that its names are dimensions along ``axis``."""
    if isinstance(selection, Labels):
        for name in selection.names:
            if name not in names:
                raise ValueError(
                    f"invalid {_SINGULAR[axis]} name '{name}' in the selection given to "
                    f"'{fname}': "
                    f"it is not one of the {axis} dimensions {names}"
                )
        return
    if isinstance(selection, (np.ndarray, jax.Array)):
        if selection.ndim != 1:
            raise ValueError(f"`selection` in '{fname}' must be a 1-D array of integers")
        if selection.size and not np.issubdtype(selection.dtype, np.integer):
            raise ValueError(
                f"`selection` in '{fname}' must contain integers, got dtype {selection.dtype}"
            )
        return
    if isinstance(selection, (list, tuple)):
        for index in selection:
            if isinstance(index, bool) or not isinstance(index, (int, np.integer)):
                raise TypeError(
                    f"`selection` in '{fname}' must be Labels or a list of int, got an entry "
                    f"{index!r}"
                )
        return
    raise TypeError(
        f"`selection` in '{fname}' must be Labels, an array or a list of int, not {type(selection)}"
    )


def _positions(labels: Labels, selection: Selection, axis: str, fname: str) -> np.ndarray:
    """Positions (along ``axis``) selected by ``selection``, checked and non-negative."""
    n = len(labels)
    if isinstance(selection, Labels):
        labels.require_static(f"{fname} along {axis} with a Labels selection")
        return np.asarray(labels.select(selection), dtype=np.int64)
    if isinstance(selection, jax.Array):
        if isinstance(selection, jax.core.Tracer):
            raise ValueError(
                f"`selection` in '{fname}' must be concrete: the kept positions decide the "
                "shapes of the result and cannot be traced"
            )
        selection = np.asarray(selection)
    positions = np.asarray(selection, dtype=np.int64).reshape(-1)
    if positions.size and (positions.min() < -n or positions.max() >= n):
        bad = positions[(positions < -n) | (positions >= n)][0]
        raise ValueError(
            f"position {int(bad)} in the selection given to '{fname}' is out of range for "
            f"{n} {axis}"
        )
    positions = np.where(positions < 0, positions + n, positions)
    if len(np.unique(positions)) != len(positions):
        raise ValueError(f"the selection given to '{fname}' repeats some positions")
    return positions


def _take_labels(labels: Labels, positions: np.ndarray) -> Labels:
    if labels.is_dynamic:
        return Labels._unchecked(tuple(labels.names), jnp.asarray(labels.values)[positions])
    return Labels._unchecked(
        tuple(labels.names), np.ascontiguousarray(np.asarray(labels.values)[positions])
    )


def _slice_samples(block: TensorBlock, positions: np.ndarray, fname: str) -> TensorBlock:
    values = jnp.take(jnp.asarray(block.values), positions, axis=0)
    new = TensorBlock(
        values, _take_labels(block.samples, positions), block.components, block.properties
    )
    n = len(block.samples)
    mask = np.zeros(n, dtype=bool)
    mask[positions] = True
    sample_map = np.full(n, -1, dtype=np.int64)
    sample_map[positions] = np.arange(len(positions))
    for parameter, gradient in block.gradients():
        g_samples = gradient.samples.require_static(f"{fname} along samples (gradient samples)")
        rows = np.asarray(g_samples.values)
        keep = np.nonzero(mask[rows[:, 0]])[0] if rows.shape[0] else np.zeros(0, np.int64)
        new_rows = np.array(rows[keep], dtype=np.int32)
        if new_rows.shape[0]:
            new_rows[:, 0] = sample_map[new_rows[:, 0]]
        new.add_gradient(
            parameter,
            TensorBlock(
                jnp.take(jnp.asarray(gradient.values), keep, axis=0),
                Labels._unchecked(tuple(g_samples.names), new_rows),
                gradient.components,
                block.properties,
            ),
        )
    return new


def _slice_properties(block: TensorBlock, positions: np.ndarray) -> TensorBlock:
    # metatensor keeps properties in the order of the block, whatever the selection order
    mask = np.zeros(len(block.properties), dtype=bool)
    mask[positions] = True
    kept = np.nonzero(mask)[0]
    properties = _take_labels(block.properties, kept)
    values = jnp.take(jnp.asarray(block.values), kept, axis=-1)
    new = TensorBlock(values, block.samples, block.components, properties)
    for parameter, gradient in block.gradients():
        new.add_gradient(
            parameter,
            TensorBlock(
                jnp.take(jnp.asarray(gradient.values), kept, axis=-1),
                gradient.samples,
                gradient.components,
                properties,
            ),
        )
    return new


def _slice_block(block: TensorBlock, axis: str, selection: Selection, fname: str) -> TensorBlock:
    if axis == "samples":
        return _slice_samples(block, _positions(block.samples, selection, axis, fname), fname)
    return _slice_properties(block, _positions(block.properties, selection, axis, fname))


def _axis_names(tensor: TensorMap, axis: str) -> list[str]:
    return tensor.sample_names if axis == "samples" else tensor.property_names


def slice_block(block: TensorBlock, axis: str, selection: Selection) -> TensorBlock:
    """Keep the samples or properties of ``block`` selected by ``selection``.

    Args:
        block: input block.
        axis: ``"samples"`` or ``"properties"``.
        selection: Labels over some of the dimensions along ``axis`` (entries matching one
            of its entries are kept), or integer positions.

    Returns:
        The sliced block; if nothing matches, the block has 0 entries along ``axis``.
    """
    fname = "slice_block"
    _check_block(block, fname)
    _refuse_gradients_of_gradients(block, fname)
    _check_axis(axis, fname)
    names = block.samples.names if axis == "samples" else block.properties.names
    _check_selection(names, axis, selection, fname)
    return _slice_block(block, axis, selection, fname)


def slice(tensor: TensorMap, axis: str, selection: Selection) -> TensorMap:
    """Keep the samples or properties selected by ``selection`` in every block.

    Keys are unchanged; blocks where nothing matches become empty along ``axis``. See
    :func:`slice_block`.
    """
    fname = "slice"
    _check_tensormap(tensor, fname)
    _refuse_gradients_of_gradients(tensor, fname)
    _check_axis(axis, fname)
    _check_selection(_axis_names(tensor, axis), axis, selection, fname)
    return TensorMap(tensor.keys, [_slice_block(b, axis, selection, fname) for b in tensor])


def _check_selections(selections: Any, fname: str) -> list[Selection]:
    if not isinstance(selections, (list, tuple)):
        raise TypeError(f"`selections` in '{fname}' must be a list, not {type(selections)}")
    return list(selections)


def split_block(
    block: TensorBlock, axis: str, selections: Sequence[Selection]
) -> list[TensorBlock]:
    """One sliced block per selection (see :func:`slice_block`)."""
    fname = "split_block"
    _check_block(block, fname)
    _check_axis(axis, fname)
    selections = _check_selections(selections, fname)
    names = block.samples.names if axis == "samples" else block.properties.names
    for selection in selections:
        _check_selection(names, axis, selection, fname)
    return [_slice_block(block, axis, selection, fname) for selection in selections]


def split(tensor: TensorMap, axis: str, selections: Sequence[Selection]) -> list[TensorMap]:
    """One sliced TensorMap per selection, each with the keys of ``tensor``.

    For example, ``split(tensor, "samples", [Labels(["system"], [[0], [6]]), ...])``
    separates systems 0 and 6 from the others. See :func:`slice`.
    """
    fname = "split"
    _check_tensormap(tensor, fname)
    _check_axis(axis, fname)
    selections = _check_selections(selections, fname)
    for selection in selections:
        _check_selection(_axis_names(tensor, axis), axis, selection, fname)
    blocks = [
        [_slice_block(block, axis, selection, fname) for block in tensor]
        for selection in selections
    ]
    return [TensorMap(tensor.keys, group) for group in blocks]
