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
   and so does ``rename_dimension`` of a name that no component of the values or of the
   gradients has (metatensor ignores it).
   Removing the only dimension of some labels raises (as metatensor documents).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import numpy as np

from .._backend import TRACER_ERRORS, to_jax
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
        new = TensorBlock(to_jax(block.values), samples, components, properties)
        for parameter, gradient in block.gradients():
            g_samples = gradient.samples
            if edit_gradient_samples:
                g_samples = edit_gradient_samples(g_samples)
            g_components = gradient.components
            if edit_components:
                g_components = edit_components(g_components)
            new.add_gradient(
                parameter,
                TensorBlock(to_jax(gradient.values), g_samples, g_components, properties),
            )
        blocks.append(new)
    return TensorMap(keys, blocks)


def _column_values(values: Any, n: int, name: str, fname: str, static: bool) -> Any:
    """The values of a new dimension with ``n`` entries: an int, or an array of shape (n,).

    ``static`` labels (keys, properties) take a concrete JAX array as NumPy; samples keep a
    JAX array as it is, which makes them dynamic labels.
    """
    if isinstance(values, (bool, np.bool_)):
        raise TypeError(f"`values` in '{fname}' must be an int or an integer array, got a bool")
    if isinstance(values, (int, np.integer)):
        return np.full(n, int(values), dtype=np.int32)
    if isinstance(values, jax.Array) and not static:
        array = values
    else:
        try:
            array = np.asarray(values)
        except TRACER_ERRORS:
            raise ValueError(
                f"`values` for the new dimension '{name}' in '{fname}' must be known at trace "
                "time for keys and properties (static labels), got a traced JAX array"
            ) from None
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


def _dimension_index(index: Any, n_names: int, fname: str, inserting: bool) -> int:
    """``index`` as a position, negative values counting from the end as in metatensor."""
    if isinstance(index, (bool, np.bool_)) or not isinstance(index, (int, np.integer)):
        raise TypeError(f"dimension index in '{fname}' must be an int, got {index!r}")
    # numpy.insert's range (-n..n) when inserting, list indexing (-n..n-1) otherwise
    stop = n_names + 1 if inserting else n_names
    if not -n_names <= index < stop:
        raise ValueError(
            f"dimension index {index} in '{fname}' is out of range for {n_names} dimensions"
        )
    return int(index) + n_names if index < 0 else int(index)


def insert_dimension(tensor: TensorMap, axis: str, index: int, name: str, values: Any) -> TensorMap:
    """Insert a dimension ``name`` before position ``index`` of the labels along ``axis``.

    Args:
        tensor: input tensor.
        axis: ``"keys"``, ``"samples"`` or ``"properties"``.
        index: position of the new dimension among the existing ones (negative values
            count from the end, ``-1`` inserting before the last dimension, as in metatensor).
        name: name of the new dimension.
        values: an ``int`` (every entry gets this value) or an integer array with one value
            per entry (for samples and properties: the same array for every block).

    Gradient samples are unchanged.
    """
    return _insert_dimension(tensor, axis, index, name, values, "insert_dimension")


def _insert_dimension(
    tensor: TensorMap, axis: str, index: int | None, name: str, values: Any, fname: str
) -> TensorMap:
    """:func:`insert_dimension`; ``index=None`` appends; errors name ``fname``."""
    _check_tensormap(tensor, fname)
    _check_axis(axis, fname, ("keys", "samples", "properties"))

    def edit(labels: Labels) -> Labels:
        column = _column_values(values, len(labels), name, fname, static=axis != "samples")
        n_names = len(labels.names)
        position = n_names if index is None else _dimension_index(index, n_names, fname, True)
        try:
            return labels.insert(position, name, column)
        except ValueError as error:
            raise ValueError(f"'{fname}' along {axis}: {error}") from None

    if axis == "keys":
        return _rebuild(tensor, edit(tensor.keys))
    if axis == "samples":
        return _rebuild(tensor, tensor.keys, edit_samples=edit)
    return _rebuild(tensor, tensor.keys, edit_properties=edit)


def append_dimension(tensor: TensorMap, axis: str, name: str, values: Any) -> TensorMap:
    """Append a dimension ``name`` to the labels along ``axis``.

    See :func:`insert_dimension`.
    """
    return _insert_dimension(tensor, axis, None, name, values, "append_dimension")


def permute_dimensions(tensor: TensorMap, axis: str, dimensions_indexes: list[int]) -> TensorMap:
    """Reorder the dimensions of the labels along ``axis``.

    New dimension ``i`` is old dimension ``dimensions_indexes[i]``. Gradient samples are
    unchanged.
    """
    fname = "permute_dimensions"
    _check_tensormap(tensor, fname)
    _check_axis(axis, fname, ("keys", "samples", "properties"))

    def edit(labels: Labels) -> Labels:
        n_names = len(labels.names)
        order = [_dimension_index(i, n_names, fname, False) for i in dimensions_indexes]
        if sorted(order) != list(range(n_names)):
            raise ValueError(
                f"`dimensions_indexes` in '{fname}' must be a permutation of "
                f"0..{n_names - 1} for the {axis} {labels.names}, got {list(dimensions_indexes)}"
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
    names = set(tensor.component_names)
    for block in tensor.blocks()[:1]:
        for _, gradient in block.gradients():
            names.update(c.names[0] for c in gradient.components)
    if len(tensor) and old not in names:
        raise ValueError(
            f"'{old}' in '{fname}' is not a component dimension of the values or gradients, "
            f"they are {sorted(names)}"
        )
    return _rebuild(tensor, tensor.keys, edit_components=edit_components)
