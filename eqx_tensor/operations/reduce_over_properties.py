"""Reductions over property dimensions: sum, mean, variance and standard deviation.

Counterparts of metatensor-operations' ``sum_over_properties``, ``mean_over_properties``,
``var_over_properties`` and ``std_over_properties`` (and their ``_block`` forms). The
property dimensions named in ``property_names`` are reduced: properties sharing the values
of the remaining dimensions are combined, and the new properties are these values, sorted
(``Labels(["_"], [[0]])`` when no dimension remains). Explicit gradients are propagated.

The property groups are computed with NumPy from the static properties, and the last axis
is reduced with :func:`jax.ops.segment_sum` over these static segment ids. Samples are only
passed through, so blocks with dynamic sample labels are accepted.

.. note:: Departures from metatensor-operations 0.5, which is wrong on blocks with
   components: ``mean``/``var``/``std`` divide by the group sizes broadcast along the
   first component axis instead of the property axis (an error, or silently wrong values
   when the sizes of both axes match), and the ``var``/``std`` gradients fail with a
   broadcasting error. Here the reductions are right for any number of components (tests
   check them against a direct NumPy computation and ``jax.jacfwd``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from .._backend import exact_divide, safe_sqrt, to_jax
from ..block import TensorBlock
from ..labels import Labels
from ..tensormap import TensorMap
from ._utils import _check_block, _check_tensormap, _refuse_gradients_of_gradients
from .reduce_over_samples import _insert_axes, _names_list, _safe_divide, _unique_rows

__all__ = [
    "mean_over_properties",
    "mean_over_properties_block",
    "std_over_properties",
    "std_over_properties_block",
    "sum_over_properties",
    "sum_over_properties_block",
    "var_over_properties",
    "var_over_properties_block",
]


def _segment_sum_last(data: Any, ids: np.ndarray, num_segments: int) -> jax.Array:
    """Sum the entries of the last axis of ``data`` that share a (static) id."""
    sorted_ids = bool(len(ids) < 2 or np.all(ids[1:] >= ids[:-1]))
    moved = jnp.moveaxis(data, -1, 0)
    total = jax.ops.segment_sum(
        moved, ids, num_segments=num_segments, indices_are_sorted=sorted_ids
    )
    return jnp.moveaxis(total, 0, -1)


def _reduce_over_properties_block(
    block: TensorBlock, property_names: str | Sequence[str], reduction: str, fname: str
) -> TensorBlock:
    names = _names_list(property_names, fname, "property_names")
    properties = block.properties
    for name in names:
        if name not in properties.names:
            raise ValueError(
                f"'{name}' in '{fname}' is not a property dimension, the properties are "
                f"{properties.names}"
            )
    remaining = [name for name in properties.names if name not in names]
    columns = [properties.names.index(name) for name in remaining]
    values = to_jax(block.values)

    if len(properties) == 0:
        # metatensor keeps an empty block (and its gradients) as it is
        empty = Labels(remaining, np.zeros((0, len(remaining)), dtype=np.int32))
        result = TensorBlock(values, block.samples, block.components, empty)
        for parameter, gradient in block.gradients():
            result.add_gradient(
                parameter,
                TensorBlock(to_jax(gradient.values), gradient.samples, gradient.components, empty),
            )
        return result

    if remaining:
        unique, ids = _unique_rows(np.asarray(properties.values)[:, columns])
        new_properties = Labels._unchecked(tuple(remaining), unique)
    else:
        new_properties = Labels.single()
        ids = np.zeros(len(properties), dtype=np.int64)
    m = len(new_properties)
    counts = jnp.asarray(np.bincount(ids, minlength=m), dtype=values.dtype)

    total = _segment_sum_last(values, ids, m)
    mean = result = total
    if reduction != "sum":
        # exact_divide: the counts are broadcast, which XLA would turn into a reciprocal
        mean = exact_divide(total, counts)
        result = mean
        if reduction in ("var", "std"):
            variance = exact_divide(
                _segment_sum_last((values - mean[..., ids]) ** 2, ids, m), counts
            )
            result = safe_sqrt(variance) if reduction == "std" else variance
    new_block = TensorBlock(result, block.samples, block.components, new_properties)

    for parameter, gradient in block.gradients():
        g = to_jax(gradient.values)
        g_total = _segment_sum_last(g, ids, m)
        if reduction == "sum":
            new_gradient = g_total
        elif reduction == "mean":
            new_gradient = exact_divide(g_total, counts)
        else:
            # values of the sample each gradient row refers to, broadcast over the extra
            # gradient components
            n_extra = len(gradient.components) - len(block.components)
            rows = gradient.samples.column("sample")
            x_rows = _insert_axes(values[rows], n_extra)
            x_dx = exact_divide(_segment_sum_last(x_rows * g, ids, m), counts)
            centered = x_dx - exact_divide(g_total, counts) * _insert_axes(mean[rows], n_extra)
            if reduction == "var":
                new_gradient = 2.0 * centered
            else:
                new_gradient = _safe_divide(centered, _insert_axes(result[rows], n_extra))
        new_block.add_gradient(
            parameter,
            TensorBlock(new_gradient, gradient.samples, gradient.components, new_properties),
        )
    return new_block


def _reduce_over_properties(
    tensor: TensorMap, property_names: str | Sequence[str], reduction: str, fname: str
) -> TensorMap:
    _check_tensormap(tensor, fname)
    _refuse_gradients_of_gradients(tensor, fname)
    names = _names_list(property_names, fname, "property_names")
    for name in names:
        if name not in tensor.property_names:
            raise ValueError(
                f"one of the requested property names in '{fname}' ('{name}') is not part "
                f"of this TensorMap, the properties are {tensor.property_names}"
            )
    blocks = [_reduce_over_properties_block(block, names, reduction, fname) for block in tensor]
    return TensorMap(tensor.keys, blocks)


def sum_over_properties_block(
    block: TensorBlock, property_names: str | Sequence[str]
) -> TensorBlock:
    """Sum a block over the property dimensions ``property_names``.

    Args:
        block: block with values of shape ``(n_samples, *components, n_properties)``.
        property_names: one name or a list of names of property dimensions to sum over.

    Returns:
        A block with values of shape ``(n_samples, *components, n_groups)``, where the
        groups are the sorted unique values of the remaining property dimensions.
    """
    _check_block(block, "sum_over_properties_block")
    _refuse_gradients_of_gradients(block, "sum_over_properties_block")
    return _reduce_over_properties_block(block, property_names, "sum", "sum_over_properties_block")


def sum_over_properties(tensor: TensorMap, property_names: str | Sequence[str]) -> TensorMap:
    """Sum every block of ``tensor`` over the property dimensions ``property_names``.

    See :func:`sum_over_properties_block`.
    """
    return _reduce_over_properties(tensor, property_names, "sum", "sum_over_properties")


def mean_over_properties_block(
    block: TensorBlock, property_names: str | Sequence[str]
) -> TensorBlock:
    """Average a block over the property dimensions ``property_names``."""
    _check_block(block, "mean_over_properties_block")
    _refuse_gradients_of_gradients(block, "mean_over_properties_block")
    return _reduce_over_properties_block(
        block, property_names, "mean", "mean_over_properties_block"
    )


def mean_over_properties(tensor: TensorMap, property_names: str | Sequence[str]) -> TensorMap:
    """Average every block of ``tensor`` over the property dimensions ``property_names``.

    Right for blocks with components too (see the module docstring for metatensor's bug).
    """
    return _reduce_over_properties(tensor, property_names, "mean", "mean_over_properties")


def var_over_properties_block(
    block: TensorBlock, property_names: str | Sequence[str]
) -> TensorBlock:
    """Variance of a block over the property dimensions ``property_names``."""
    _check_block(block, "var_over_properties_block")
    _refuse_gradients_of_gradients(block, "var_over_properties_block")
    return _reduce_over_properties_block(block, property_names, "var", "var_over_properties_block")


def var_over_properties(tensor: TensorMap, property_names: str | Sequence[str]) -> TensorMap:
    r"""Variance (biased) of every block of ``tensor`` over ``property_names``.

    Gradients: :math:`\nabla \mathrm{Var}(X) = 2 (E[X \nabla X] - E[X] E[\nabla X])`, the
    expectations over the properties of each group.
    """
    return _reduce_over_properties(tensor, property_names, "var", "var_over_properties")


def std_over_properties_block(
    block: TensorBlock, property_names: str | Sequence[str]
) -> TensorBlock:
    """Standard deviation of a block over the property dimensions ``property_names``."""
    _check_block(block, "std_over_properties_block")
    _refuse_gradients_of_gradients(block, "std_over_properties_block")
    return _reduce_over_properties_block(block, property_names, "std", "std_over_properties_block")


def std_over_properties(tensor: TensorMap, property_names: str | Sequence[str]) -> TensorMap:
    r"""Standard deviation (biased) of every block of ``tensor`` over ``property_names``.

    Gradients: :math:`(E[X \nabla X] - E[X] E[\nabla X]) / \mathrm{Std}(X)`, 0 where the
    standard deviation is 0 (as metatensor does).
    """
    return _reduce_over_properties(tensor, property_names, "std", "std_over_properties")
