"""``sort``: reorder keys, samples, components and properties by their label values.

Label entries are sorted lexicographically (ascending, or descending with
``descending=True``) with NumPy at trace time, and the arrays are gathered with
``jax.numpy.take``. Explicit gradients are reordered consistently: the ``"sample"``
dimension of gradient samples is remapped to the sorted rows before the gradient rows are
sorted themselves. Sorting samples needs static sample labels.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax.numpy as jnp
import numpy as np

from ..block import TensorBlock
from ..labels import Labels
from ..tensormap import TensorMap
from ._utils import _check_block, _check_tensormap, _refuse_gradients_of_gradients

__all__ = ["sort", "sort_block"]

_BLOCK_AXES = ("samples", "components", "properties")


def _argsort_rows(values: np.ndarray, descending: bool) -> np.ndarray:
    """Indices sorting the rows lexicographically (first column first)."""
    values = np.asarray(values)
    if values.shape[0] < 2 or values.shape[1] == 0:
        return np.arange(values.shape[0])
    order = np.lexsort(values.T[::-1])
    # label rows are unique, so reversing the ascending order gives the descending one
    return order[::-1].copy() if descending else order


def _sorted_labels(labels: Labels, order: np.ndarray) -> Labels:
    return Labels._unchecked(
        tuple(labels.names), np.ascontiguousarray(np.asarray(labels.values)[order])
    )


def _sort_arrays_and_labels(
    values: jnp.ndarray,
    samples: Labels,
    components: list[Labels],
    properties: Labels,
    axes: list[str],
    descending: bool,
    sample_order: np.ndarray | None,
) -> tuple[jnp.ndarray, Labels, list[Labels], Labels]:
    if sample_order is not None:
        values = jnp.take(values, sample_order, axis=0)
        samples = _sorted_labels(samples, sample_order)
    if "components" in axes:
        new_components = []
        for i, component in enumerate(components):
            order = _argsort_rows(component.values, descending)
            values = jnp.take(values, order, axis=i + 1)
            new_components.append(_sorted_labels(component, order))
        components = new_components
    if "properties" in axes:
        order = _argsort_rows(properties.values, descending)
        values = jnp.take(values, order, axis=-1)
        properties = _sorted_labels(properties, order)
    return values, samples, components, properties


def _check_axes(axes: str | Sequence[str], fname: str, allowed: Sequence[str]) -> list[str]:
    if isinstance(axes, str):
        axes_list = list(allowed) if axes == "all" else [axes]
    elif isinstance(axes, (list, tuple)):
        axes_list = list(axes)
    else:
        raise TypeError(
            f"'axes' in '{fname}' should be a string or list of strings, not {type(axes)}"
        )
    for axis in axes_list:
        if axis not in allowed:
            choices = ", ".join(f"'{a}'" for a in allowed)
            raise ValueError(f"`axes` in '{fname}' must be one of {choices}, not '{axis}'")
    return axes_list


def _sort_block(block: TensorBlock, axes: list[str], descending: bool) -> TensorBlock:
    sample_order = None
    inverse = None
    if "samples" in axes:
        samples = block.samples.require_static("sort along samples")
        sample_order = _argsort_rows(samples.values, descending)
        inverse = np.empty(len(sample_order), dtype=np.int64)
        inverse[sample_order] = np.arange(len(sample_order))
    values, samples, components, properties = _sort_arrays_and_labels(
        jnp.asarray(block.values),
        block.samples,
        block.components,
        block.properties,
        axes,
        descending,
        sample_order,
    )
    new = TensorBlock(values, samples, components, properties)
    for parameter, gradient in block.gradients():
        g_samples = gradient.samples
        g_order = None
        if inverse is not None:
            g_samples = g_samples.require_static("sort along samples (gradient samples)")
            rows = np.array(g_samples.values)
            if rows.shape[0]:
                rows[:, 0] = inverse[rows[:, 0]]
            g_samples = Labels._unchecked(tuple(g_samples.names), rows)
            g_order = _argsort_rows(rows, descending)
        g_values, g_samples, g_components, _ = _sort_arrays_and_labels(
            jnp.asarray(gradient.values),
            g_samples,
            gradient.components,
            gradient.properties,
            axes,
            descending,
            g_order,
        )
        new.add_gradient(parameter, TensorBlock(g_values, g_samples, g_components, properties))
    return new


def sort_block(
    block: TensorBlock, axes: str | Sequence[str] = "all", descending: bool = False
) -> TensorBlock:
    """Reorder a block so that the label entries along ``axes`` are sorted.

    Args:
        block: input block.
        axes: ``"samples"``, ``"components"``, ``"properties"``, a list of these, or
            ``"all"``.
        descending: sort in descending order.

    Gradient blocks are sorted along the same axes (all their components included).
    Unlike metatensor 0.5, which fails on blocks without samples, empty blocks are sorted
    too.
    """
    _check_block(block, "sort_block")
    _refuse_gradients_of_gradients(block, "sort_block")
    axes_list = _check_axes(axes, "sort_block", _BLOCK_AXES)
    return _sort_block(block, axes_list, bool(descending))


def sort(
    tensor: TensorMap, axes: str | Sequence[str] = "all", descending: bool = False
) -> TensorMap:
    """Sort the keys and/or every block of ``tensor`` (see :func:`sort_block`).

    ``axes`` may also contain ``"keys"``; ``"all"`` sorts keys, samples, components and
    properties. The ``axes`` argument is not modified (metatensor removes ``"keys"`` from
    the list it is given).
    """
    _check_tensormap(tensor, "sort")
    _refuse_gradients_of_gradients(tensor, "sort")
    axes_list = _check_axes(axes, "sort", ("keys", *_BLOCK_AXES))
    block_axes = [axis for axis in axes_list if axis != "keys"]
    if "keys" in axes_list:
        order = _argsort_rows(tensor.keys.values, bool(descending))
    else:
        order = np.arange(len(tensor))
    keys = _sorted_labels(tensor.keys, order)
    blocks = [_sort_block(tensor.block_by_id(int(i)), block_axes, bool(descending)) for i in order]
    return TensorMap(keys, blocks)
