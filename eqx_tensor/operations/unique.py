"""``unique_metadata``: the sorted unique values of some sample or property dimensions.

This reads label values, so it needs static labels; the result is static :class:`Labels`
(usable, for example, as ``groups`` of :func:`~eqx_tensor.sum_over_samples`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..block import TensorBlock
from ..labels import Labels
from ..tensormap import TensorMap
from ._utils import _check_block, _check_tensormap

__all__ = ["unique_metadata", "unique_metadata_block"]


def _check_arguments(
    axis: str, names: str | Sequence[str], gradient: str | None, fname: str
) -> list[str]:
    if not isinstance(axis, str):
        raise TypeError(f"`axis` in '{fname}' must be a string, not {type(axis)}")
    if axis not in ("samples", "properties"):
        raise ValueError(
            f"`axis` in '{fname}' must be either 'samples' or 'properties', not '{axis}'"
        )
    if isinstance(names, str):
        names = [names]
    elif isinstance(names, (list, tuple)):
        names = list(names)
    else:
        raise TypeError(f"`names` in '{fname}' must be a str or a list of str, not {type(names)}")
    for name in names:
        if not isinstance(name, str):
            raise TypeError(f"`names` elements in '{fname}' must be strings, not {type(name)}")
    if gradient is not None and not isinstance(gradient, str):
        raise TypeError(f"`gradient` in '{fname}' must be a string, not {type(gradient)}")
    return names


def _unique_from_blocks(
    blocks: list[TensorBlock], axis: str, names: list[str], fname: str
) -> Labels:
    columns = []
    for block in blocks:
        labels = block.samples if axis == "samples" else block.properties
        labels.require_static(fname)
        for name in names:
            if name not in labels.names:
                raise ValueError(
                    f"'{name}' in '{fname}' is not a dimension of the {axis}, they are "
                    f"{labels.names}"
                )
        columns.append(np.asarray(labels.view(names).values))
    if not columns:
        return Labels(names, np.zeros((0, len(names)), dtype=np.int32))
    stacked = np.concatenate(columns, axis=0)
    if stacked.shape[0] == 0:
        return Labels(names, stacked.reshape(0, len(names)))
    return Labels._unchecked(tuple(names), np.unique(stacked, axis=0).astype(np.int32))


def _blocks(blocks: list[TensorBlock], gradient: str | None) -> list[TensorBlock]:
    if gradient is None:
        return blocks
    return [block.gradient(gradient) for block in blocks]


def unique_metadata(
    tensor: TensorMap,
    axis: str,
    names: str | Sequence[str],
    gradient: str | None = None,
) -> Labels:
    """Sorted unique values of the dimensions ``names`` along ``axis`` over all blocks.

    Args:
        tensor: input tensor.
        axis: ``"samples"`` or ``"properties"``.
        names: one name or a list of names of dimensions along ``axis``.
        gradient: if given, look at the gradient blocks of this parameter instead.

    Returns:
        Static Labels with ``names`` and the unique entries, sorted (possibly empty).
    """
    fname = "unique_metadata"
    _check_tensormap(tensor, fname)
    names = _check_arguments(axis, names, gradient, fname)
    return _unique_from_blocks(_blocks(tensor.blocks(), gradient), axis, names, fname)


def unique_metadata_block(
    block: TensorBlock,
    axis: str,
    names: str | Sequence[str],
    gradient: str | None = None,
) -> Labels:
    """Sorted unique values of the dimensions ``names`` along ``axis`` of one block.

    See :func:`unique_metadata`.
    """
    fname = "unique_metadata_block"
    _check_block(block, fname)
    names = _check_arguments(axis, names, gradient, fname)
    return _unique_from_blocks(_blocks([block], gradient), axis, names, fname)
