"""Editing label dimensions: insert, append, permute, remove and rename.

Counterparts of metatensor-operations' ``insert_dimension``, ``append_dimension``,
``permute_dimensions``, ``remove_dimension`` and ``rename_dimension``. Only metadata
changes; arrays are passed through (as JAX arrays). As in metatensor, editing the samples
does not touch the gradient samples (whose dimensions have their own meaning), except
``rename_dimension``, which also renames a gradient sample dimension of the same name.

Dynamic sample labels are accepted by every edit except ``remove_dimension`` along
samples, which must check that the remaining entries are unique.

.. note:: Departures from metatensor: ``axis="components"`` in ``insert_dimension``,
   ``permute_dimensions`` and ``remove_dimension`` raises a ``ValueError`` (metatensor
   silently returns the tensor unchanged: components have exactly one dimension each),
   and so does ``rename_dimension`` of a name that no component has (metatensor ignores it).
   Removing the only dimension of some labels raises (as metatensor documents).
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
from ._utils import _check_tensormap

__all__ = [
    "append_dimension",
    "insert_dimension",
    "permute_dimensions",
    "remove_dimension",
    "rename_dimension",
]

_AXES = ("keys", "samples", "components", "properties")


def _check_axis(axis: Any, fname: str, allowed: Sequence[str] = _AXES) -> None:
    if axis not in allowed:
        choices = ", ".join(f"'{a}'" for a in allowed)
        raise ValueError(f"'{axis}' is not a valid axis for '{fname}'. Choose from {choices}.")


def _rebuild(
    tensor: TensorMap,
    keys: Labels,
    edit_samples: Any = None,
    edit_properties: Any = None,
    edit_components: Any = None,
    edit_gradient_samples: Any = None,
) -> TensorMap:
    """Rebuild ``tensor`` with edited labels; ``edit_*`` map a Labels (or list) to a new one."""
    blocks = []
    for block in tensor:
        samples = edit_samples(block.samples) if edit_samples else block.samples
        properties = edit_properties(block.properties) if edit_properties else block.properties
        components = edit_components(block.components) if edit_components else block.components
        new = TensorBlock(jnp.asarray(block.values), samples, components, properties)
        for parameter, gradient in block.gradients():
            g_samples = gradient.samples
            if edit_gradient_samples:
                g_samples = edit_gradient_samples(g_samples)
            g_components = gradient.components
            if edit_components:
                g_components = edit_components(g_components)
            new.add_gradient(
                parameter,
                TensorBlock(jnp.asarray(gradient.values), g_samples, g_components, properties),
            )
        blocks.append(new)
    return TensorMap(keys, blocks)


def _column_values(values: Any, n: int, name: str, fname: str) -> Any:
    """The values of a new dimension with ``n`` entries: an int, or an array of shape (n,)."""
    if isinstance(values, (bool, np.bool_)):
        raise TypeError(f"`values` in '{fname}' must be an int or an integer array, got a bool")
    if isinstance(values, (int, np.integer)):
        return np.full(n, int(values), dtype=np.int32)
    if isinstance(values, jax.Array):
        array = values
    else:
        array = np.asarray(values)
    if array.ndim != 1 or array.shape[0] != n:
        raise ValueError(
            f"`values` for the new dimension '{name}' in '{fname}' must have shape ({n},), "
            f"got {tuple(array.shape)}"
        )
    if not np.issubdtype(array.dtype, np.integer):
        raise ValueError(
            f"`values` for the new dimension '{name}' in '{fname}' must be integers, got "
            f"dtype {array.dtype}"
        )
    return array


def insert_dimension(tensor: TensorMap, axis: str, index: int, name: str, values: Any) -> TensorMap:
    """Insert a dimension ``name`` before position ``index`` of the labels along ``axis``.

    Args:
        tensor: input tensor.
        axis: ``"keys"``, ``"samples"`` or ``"properties"``.
        index: position of the new dimension among the existing ones.
        name: name of the new dimension.
        values: an ``int`` (every entry gets this value) or an integer array with one value
            per entry (for samples and properties: the same array for every block).

    Gradient samples are unchanged.
    """
    fname = "insert_dimension"
    _check_tensormap(tensor, fname)
    _check_axis(axis, fname, ("keys", "samples", "properties"))

    def edit(labels: Labels) -> Labels:
        column = _column_values(values, len(labels), name, fname)
        return labels.insert(index, name, column)

    if axis == "keys":
        return _rebuild(tensor, edit(tensor.keys))
    if axis == "samples":
        return _rebuild(tensor, tensor.keys, edit_samples=edit)
    return _rebuild(tensor, tensor.keys, edit_properties=edit)


def append_dimension(tensor: TensorMap, axis: str, name: str, values: Any) -> TensorMap:
    """Append a dimension ``name`` to the labels along ``axis``.

    See :func:`insert_dimension`.
    """
    _check_tensormap(tensor, "append_dimension")
    _check_axis(axis, "append_dimension", ("keys", "samples", "properties"))
    if axis == "keys":
        index = len(tensor.keys.names)
    elif axis == "samples":
        index = len(tensor.sample_names)
    else:
        index = len(tensor.property_names)
    return insert_dimension(tensor, axis, index, name, values)


def permute_dimensions(tensor: TensorMap, axis: str, dimensions_indexes: list[int]) -> TensorMap:
    """Reorder the dimensions of the labels along ``axis``.

    New dimension ``i`` is old dimension ``dimensions_indexes[i]``. Gradient samples are
    unchanged.
    """
    fname = "permute_dimensions"
    _check_tensormap(tensor, fname)
    _check_axis(axis, fname, ("keys", "samples", "properties"))
    order = [int(i) for i in dimensions_indexes]

    def edit(labels: Labels) -> Labels:
        if sorted(order) != list(range(len(labels.names))):
            raise ValueError(
                f"`dimensions_indexes` in '{fname}' must be a permutation of "
                f"0..{len(labels.names) - 1} for the {axis} {labels.names}, got {order}"
            )
        return labels.permute(order)

    if axis == "keys":
        return _rebuild(tensor, edit(tensor.keys))
    if axis == "samples":
        return _rebuild(tensor, tensor.keys, edit_samples=edit)
    return _rebuild(tensor, tensor.keys, edit_properties=edit)


def remove_dimension(tensor: TensorMap, axis: str, name: str) -> TensorMap:
    """Remove dimension ``name`` from the labels along ``axis``.

    The remaining entries must be unique, and at least one dimension must remain. Gradient
    samples are unchanged. Dynamic sample labels are refused (uniqueness cannot be checked).
    """
    fname = "remove_dimension"
    _check_tensormap(tensor, fname)
    _check_axis(axis, fname, ("keys", "samples", "properties"))

    def edit(labels: Labels) -> Labels:
        if name not in labels.names:
            raise ValueError(
                f"'{name}' in '{fname}' is not a dimension of the {axis}, they are {labels.names}"
            )
        if len(labels.names) == 1:
            raise ValueError(f"'{fname}' cannot remove '{name}', the only dimension of the {axis}")
        labels.require_static(f"{fname} along samples (to check the remaining entries)")
        try:
            return labels.remove(name)
        except ValueError as error:
            raise ValueError(f"'{fname}' along {axis}: {error}") from None

    if axis == "keys":
        return _rebuild(tensor, edit(tensor.keys))
    if axis == "samples":
        return _rebuild(tensor, tensor.keys, edit_samples=edit)
    return _rebuild(tensor, tensor.keys, edit_properties=edit)


def rename_dimension(tensor: TensorMap, axis: str, old: str, new: str) -> TensorMap:
    """Rename dimension ``old`` to ``new`` in the labels along ``axis``.

    ``axis`` is ``"keys"``, ``"samples"``, ``"components"`` or ``"properties"``. Renaming
    a sample dimension also renames it in the gradient samples that have it; renaming a
    component also renames it in the gradient components.
    """
    fname = "rename_dimension"
    _check_tensormap(tensor, fname)
    _check_axis(axis, fname)

    def edit(labels: Labels) -> Labels:
        if old not in labels.names:
            raise ValueError(
                f"'{old}' in '{fname}' is not a dimension of the {axis}, they are {labels.names}"
            )
        return labels.rename(old, new)

    def edit_gradient_samples(labels: Labels) -> Labels:
        return labels.rename(old, new) if old in labels.names else labels

    def edit_components(components: Sequence[Labels]) -> list[Labels]:
        return [c.rename(old, new) if c.names == [old] else c for c in components]

    if axis == "keys":
        return _rebuild(tensor, edit(tensor.keys))
    if axis == "samples":
        return _rebuild(
            tensor, tensor.keys, edit_samples=edit, edit_gradient_samples=edit_gradient_samples
        )
    if axis == "properties":
        return _rebuild(tensor, tensor.keys, edit_properties=edit)
    if len(tensor) and old not in tensor.component_names:
        raise ValueError(
            f"'{old}' in '{fname}' is not a component dimension, the components are "
            f"{tensor.component_names}"
        )
    return _rebuild(tensor, tensor.keys, edit_components=edit_components)
