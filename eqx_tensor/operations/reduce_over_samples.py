"""Reductions over sample dimensions: sum, mean, variance and standard deviation.

Counterparts of metatensor-operations' ``sum_over_samples``, ``mean_over_samples``,
``var_over_samples`` and ``std_over_samples`` (and their ``_block`` forms). The sample
dimensions named in ``sample_names`` are reduced; rows of the block that share the values
of the remaining dimensions are combined. Explicit gradients are propagated.

With static sample labels, the group of every row is computed with NumPy at trace time
and the arrays are reduced with :func:`jax.ops.segment_sum` over these static segment
ids, so the functions compile to a few scatter-adds under :func:`jax.jit`.

**Dynamic sample labels** (padded batches, see :mod:`eqx_tensor.labels`): give the output samples
with ``groups``, either static :class:`Labels` over the remaining dimensions or an ``int``
``n`` for one remaining dimension holding group indices ``0..n-1``. The group of each row
is then looked up at run time from the (traced) label values, and rows that match no group
(e.g. padding rows marked with ``-1``) are dropped. One compiled function then serves every
batch of the same padded size::

    @jax.jit
    def energy(per_atom):  # samples ("system", "atom"), dynamic, padding system = -1
        return eqt.sum_over_samples(per_atom, "atom", groups=n_systems_per_batch)

``groups`` also works with static labels: the output samples are exactly ``groups``, and
groups without rows are zero. There every row must fall in a group: static rows outside of
``groups`` are refused (naming their sample values), since dropping them would change the
result silently; select the rows to keep first (e.g. with :func:`~eqx_tensor.slice`), or list
them in ``groups``. Only dynamic labels drop such rows, as padding.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from .._backend import safe_sqrt
from ..block import TensorBlock
from ..labels import Labels
from ..tensormap import TensorMap
from ._utils import _check_block, _check_tensormap

__all__ = [
    "mean_over_samples",
    "mean_over_samples_block",
    "std_over_samples",
    "std_over_samples_block",
    "sum_over_samples",
    "sum_over_samples_block",
    "var_over_samples",
    "var_over_samples_block",
]

Groups = Labels | int | None


# --------------------------------------------------------------------------- helpers
def _names_list(names: str | Sequence[str], fname: str, argument: str) -> list[str]:
    if isinstance(names, str):
        return [names]
    if not isinstance(names, (list, tuple)):
        raise TypeError(
            f"`{argument}` in '{fname}' must be str or a list of str, got {type(names).__name__}"
        )
    names = list(names)
    for name in names:
        if not isinstance(name, str):
            raise TypeError(f"`{argument}` in '{fname}' must be str or a list of str, got {name!r}")
    return names


def _segment_sum(data: Any, ids: Any, num_segments: int, sorted_ids: bool = False) -> jax.Array:
    """Sum the rows of ``data`` with the same id; ids outside ``[0, num_segments)`` are dropped."""
    return jax.ops.segment_sum(data, ids, num_segments=num_segments, indices_are_sorted=sorted_ids)


def _is_sorted(ids: np.ndarray) -> bool:
    return bool(len(ids) < 2 or np.all(ids[1:] >= ids[:-1]))


def _unique_rows(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sorted unique rows and the index of each row in them (like ``np.unique(axis=0)``)."""
    if values.shape[0] == 0:
        return values.reshape(0, values.shape[1]), np.zeros(0, dtype=np.int64)
    unique, inverse = np.unique(values, axis=0, return_inverse=True)
    return unique.astype(np.int32), inverse.reshape(-1)


def _positions_in(reference: Labels, rows: np.ndarray) -> np.ndarray:
    """Index in ``reference`` of each row of ``rows`` (repeats allowed), -1 where missing."""
    if rows.shape[0] == 0:
        return np.zeros(0, dtype=np.int64)
    # positions() is vectorised and accepts repeated query rows: no need to deduplicate first
    found = reference.positions(Labels(reference.names, rows, assume_unique=True))
    return np.asarray(found, dtype=np.int64)


def _groups_labels(groups: Labels | int, remaining: list[str], fname: str) -> Labels:
    """Validate ``groups`` (static Labels over the remaining names, or a number of groups)."""
    if isinstance(groups, bool):
        raise TypeError(f"`groups` in '{fname}' must be Labels or an int, got a bool")
    if isinstance(groups, (int, np.integer)):
        if len(remaining) != 1:
            raise ValueError(
                f"`groups={int(groups)}` in '{fname}' needs exactly one remaining sample "
                f"dimension holding the group index, but the remaining dimensions are "
                f"{remaining}; pass groups as Labels instead"
            )
        if groups < 0:
            raise ValueError(f"`groups` in '{fname}' must be a non-negative number of groups")
        return Labels.range(remaining[0], int(groups))
    if not isinstance(groups, Labels):
        raise TypeError(f"`groups` in '{fname}' must be Labels or an int, got {type(groups)}")
    if groups.is_dynamic:
        raise ValueError(
            f"`groups` in '{fname}' gives the output samples and must be static Labels"
        )
    if groups.names != remaining:
        raise ValueError(
            f"`groups` in '{fname}' must have the names of the remaining sample dimensions "
            f"{remaining} (in this order), got {groups.names}"
        )
    return groups


def _dynamic_group_ids(columns: jax.Array, groups: Labels) -> jax.Array:
    """Group index of each row of traced label ``columns``, ``len(groups)`` where none matches.

    ``columns`` has shape ``(n, len(groups.names))``. Runs in O(n log m): each dimension is
    ranked among the group values of that dimension (``searchsorted``), the ranks are
    combined into one integer code, and the code is looked up among the sorted group codes.
    """
    m = len(groups)
    values = np.asarray(groups.values, dtype=np.int64)
    if m == 0:
        return jnp.zeros(columns.shape[0], dtype=jnp.int32)
    if values.shape[1] == 1 and np.array_equal(values[:, 0], np.arange(m)):
        # the common case: the column already holds the group index
        column = columns[:, 0]
        return jnp.where((column >= 0) & (column < m), column, m).astype(jnp.int32)

    uniques = [np.unique(values[:, d]) for d in range(values.shape[1])]
    strides = np.cumprod([1] + [len(u) for u in uniques[::-1]])[::-1]
    if strides[0] >= np.iinfo(np.int32).max:
        # codes would overflow int32: compare every row with every group instead
        equal = jnp.all(columns[:, None, :] == jnp.asarray(values, dtype=columns.dtype), axis=-1)
        return jnp.where(jnp.any(equal, axis=1), jnp.argmax(equal, axis=1), m).astype(jnp.int32)
    strides = strides[1:]
    group_codes = sum(
        np.searchsorted(u, values[:, d]) * s for d, (u, s) in enumerate(zip(uniques, strides))
    )
    order = np.argsort(group_codes)
    sorted_codes = jnp.asarray(group_codes[order], dtype=jnp.int32)

    found = jnp.ones(columns.shape[0], dtype=bool)
    code = jnp.zeros(columns.shape[0], dtype=jnp.int32)
    for d, (u, s) in enumerate(zip(uniques, strides)):
        u = jnp.asarray(u, dtype=columns.dtype)
        rank = jnp.clip(jnp.searchsorted(u, columns[:, d]), 0, len(u) - 1)
        found = found & (u[rank] == columns[:, d])
        code = code + rank.astype(jnp.int32) * int(s)
    position = jnp.clip(jnp.searchsorted(sorted_codes, code), 0, m - 1)
    found = found & (sorted_codes[position] == code)
    return jnp.where(found, jnp.asarray(order, dtype=jnp.int32)[position], m).astype(jnp.int32)


def _refuse_rows_outside_groups(
    ids: np.ndarray,
    sample_values: np.ndarray,
    names: Sequence[str],
    remaining: list[str],
    columns: list[int],
    fname: str,
) -> None:
    """Static rows matching no group would be dropped without a word: refuse them."""
    outside = np.nonzero(ids < 0)[0]
    if not len(outside):
        return
    values, first = np.unique(sample_values[outside][:, columns], axis=0, return_index=True)
    shown = "; ".join(
        ", ".join(f"{n}={int(v)}" for n, v in zip(remaining, row)) for row in values[:5]
    )
    more = f" and {len(values) - 5} more" if len(values) > 5 else ""
    raise ValueError(
        f"`groups` in '{fname}' has no entry for {len(outside)} of the {len(ids)} samples "
        f"(rows with {shown}{more}; e.g. sample row {int(outside[first[0]])}, "
        f"{dict(zip(names, (int(v) for v in sample_values[outside[first[0]]])))}), which would "
        "be dropped: add their values to `groups`, or remove these rows first (e.g. with "
        "eqx_tensor.slice on the samples). Only dynamic sample labels drop rows outside of "
        "`groups` (as padding)"
    )


def _broadcast_rows(array: Any, ndim: int) -> Any:
    """Reshape a per-row array ``(n,)`` to ``(n, 1, ..., 1)`` with ``ndim`` dimensions."""
    return array.reshape((-1,) + (1,) * (ndim - 1))


def _insert_axes(array: Any, n_axes: int) -> Any:
    """Insert ``n_axes`` size-1 axes after the first: values rows -> gradient rows shape."""
    return array.reshape(array.shape[:1] + (1,) * n_axes + array.shape[1:])


def _safe_divide(numerator: Any, denominator: Any) -> Any:
    """``numerator / denominator`` with 0 where the denominator is 0 (also for jax.grad)."""
    zero = denominator == 0
    return jnp.where(zero, 0.0, numerator / jnp.where(zero, 1.0, denominator))


# --------------------------------------------------------------------------- core
def _reduce_values(
    values: Any,
    ids: Any,
    num_segments: int,
    counts: Any,
    reduction: str,
    sorted_ids: bool,
) -> tuple[Any, Any, Any]:
    """Reduced values, and the group means and results needed by the gradients."""
    total = _segment_sum(values, ids, num_segments, sorted_ids)
    if reduction == "sum":
        return total, None, total
    # empty groups (only possible with `groups`) give 0, not NaN
    safe_counts = _broadcast_rows(jnp.maximum(counts, 1).astype(total.dtype), total.ndim)
    mean = total / safe_counts
    if reduction == "mean":
        return mean, mean, mean
    row_mean = mean[jnp.clip(ids, 0, max(num_segments - 1, 0))]
    variance = _segment_sum((values - row_mean) ** 2, ids, num_segments, sorted_ids)
    variance = variance / safe_counts
    result = safe_sqrt(variance) if reduction == "std" else variance
    return result, mean, result


def _reduce_gradient(
    gradient: TensorBlock,
    values: Any,
    ids: np.ndarray,
    counts: np.ndarray,
    mean: Any,
    result: Any,
    reduction: str,
    fname: str,
) -> TensorBlock:
    """Explicit gradient of the reduction, for static sample labels.

    With ``g`` the gradient rows of sample ``i`` in group ``G`` (size ``N``):
    ``d sum = sum_i g``, ``d mean = d sum / N``,
    ``d var = 2 / N * (sum_i x_i g - mean sum_i g)``, ``d std = d var / (2 std)`` (0 where
    ``std`` is 0). ``N`` is the number of samples of the group, not the number of gradient
    rows merged into one output gradient row (see :func:`mean_over_samples`).
    """
    samples = gradient.samples.require_static(f"{fname} (gradient samples)")
    rows = np.asarray(samples.values)
    row_groups = ids[rows[:, 0]] if rows.shape[0] else np.zeros(0, dtype=np.int64)
    keep = row_groups >= 0
    remapped = np.array(rows[keep], dtype=np.int32)
    remapped[:, 0] = row_groups[keep]
    new_rows, gradient_ids = _unique_rows(remapped)
    n_new = new_rows.shape[0]

    g = jnp.asarray(gradient.values)
    if not np.all(keep):
        g = g[np.nonzero(keep)[0]]
    sorted_ids = _is_sorted(gradient_ids)
    total = _segment_sum(g, gradient_ids, n_new, sorted_ids)
    out_group = new_rows[:, 0]
    if reduction == "sum":
        new_values = total
    else:
        n = counts[out_group].astype(np.float64)
        n = _broadcast_rows(jnp.asarray(n, dtype=total.dtype), total.ndim)
        if reduction == "mean":
            new_values = total / n
        else:
            n_extra = len(gradient.components) - (values.ndim - 2)
            x_rows = _insert_axes(jnp.asarray(values)[rows[keep, 0]], n_extra)
            x_dx = _segment_sum(x_rows * g, gradient_ids, n_new, sorted_ids)
            group_mean = _insert_axes(mean[out_group], n_extra)
            centered = (x_dx - total * group_mean) / n
            if reduction == "var":
                new_values = 2.0 * centered
            else:
                new_values = _safe_divide(centered, _insert_axes(result[out_group], n_extra))
    return TensorBlock(
        new_values,
        Labels._unchecked(tuple(samples.names), new_rows),
        gradient.components,
        gradient.properties,
    )


def _reduce_over_samples_block(
    block: TensorBlock,
    sample_names: str | Sequence[str],
    reduction: str,
    groups: Groups,
    fname: str,
) -> TensorBlock:
    names = _names_list(sample_names, fname, "sample_names")
    samples = block.samples
    for name in names:
        if name not in samples.names:
            raise ValueError(
                f"'{name}' in '{fname}' is not a sample dimension, the samples are {samples.names}"
            )
    remaining = [name for name in samples.names if name not in names]
    columns = [samples.names.index(name) for name in remaining]
    values = jnp.asarray(block.values)

    if groups is not None:
        if not remaining:
            raise ValueError(
                f"'{fname}' cannot use `groups` when reducing over every sample dimension "
                f"{samples.names}: no dimension is left to hold the groups"
            )
        new_samples = _groups_labels(groups, remaining, fname)
    elif samples.is_dynamic:
        raise ValueError(
            f"'{fname}' with dynamic sample labels {samples.names} needs the output samples: "
            "pass `groups` (static Labels over the remaining sample dimensions, or the number "
            "of groups when one dimension holding the group index remains)"
        )
    else:
        new_samples = None

    if samples.is_dynamic:
        for parameter, _ in block.gradients():
            raise ValueError(
                f"'{fname}' cannot propagate the explicit '{parameter}' gradients of a block "
                "with dynamic sample labels (the gradient samples of the result depend on run "
                "time values): remove them with `remove_gradients`, or use jax.grad"
            )
        m = len(new_samples)
        ids = _dynamic_group_ids(jnp.asarray(samples.values)[:, columns], new_samples)
        counts = _segment_sum(jnp.ones(ids.shape, dtype=jnp.int32), ids, m)
        new_values, _, _ = _reduce_values(values, ids, m, counts, reduction, False)
        return TensorBlock(new_values, new_samples, block.components, block.properties)

    sample_values = np.asarray(samples.values)
    if new_samples is None:
        if len(samples) == 0:
            # metatensor keeps an empty block (and its gradients) as it is
            empty = Labels(remaining, np.zeros((0, len(remaining)), dtype=np.int32))
            result = TensorBlock(values, empty, block.components, block.properties)
            for parameter, gradient in block.gradients():
                result.add_gradient(parameter, gradient.with_arrays(jnp.asarray(gradient.values)))
            return result
        if not remaining:
            new_samples = Labels.single()
            ids = np.zeros(len(samples), dtype=np.int64)
        else:
            unique, ids = _unique_rows(sample_values[:, columns])
            new_samples = Labels._unchecked(tuple(remaining), unique)
    else:
        ids = _positions_in(new_samples, sample_values[:, columns])
        _refuse_rows_outside_groups(ids, sample_values, samples.names, remaining, columns, fname)

    m = len(new_samples)
    counts = np.bincount(ids[ids >= 0], minlength=m)
    segment_ids = np.where(ids >= 0, ids, m)
    new_values, mean, result = _reduce_values(
        values, segment_ids, m, jnp.asarray(counts), reduction, _is_sorted(segment_ids)
    )
    new_block = TensorBlock(new_values, new_samples, block.components, block.properties)
    for parameter, gradient in block.gradients():
        new_block.add_gradient(
            parameter,
            _reduce_gradient(gradient, values, ids, counts, mean, result, reduction, fname),
        )
    return new_block


def _reduce_over_samples(
    tensor: TensorMap,
    sample_names: str | Sequence[str],
    reduction: str,
    groups: Groups,
    fname: str,
) -> TensorMap:
    _check_tensormap(tensor, fname)
    names = _names_list(sample_names, fname, "sample_names")
    for name in names:
        if name not in tensor.sample_names:
            raise ValueError(
                f"one of the requested sample names in '{fname}' ('{name}') is not part of "
                f"this TensorMap, the samples are {tensor.sample_names}"
            )
    blocks = [
        _reduce_over_samples_block(block, names, reduction, groups, fname) for block in tensor
    ]
    return TensorMap(tensor.keys, blocks)


# --------------------------------------------------------------------------- public API
def sum_over_samples_block(
    block: TensorBlock, sample_names: str | Sequence[str], *, groups: Groups = None
) -> TensorBlock:
    """Sum a block over the sample dimensions ``sample_names``.

    Rows sharing the values of the remaining sample dimensions are summed; the new samples
    are these values, sorted (or ``Labels(["_"], [[0]])`` when no dimension remains).

    Args:
        block: block with values of shape ``(n_samples, *components, n_properties)``.
        sample_names: one name or a list of names of sample dimensions to sum over.
        groups: the output samples, for dynamic sample labels (see the module docstring):
            static ``Labels`` over the remaining sample dimensions, or the number of
            groups ``m`` when a single remaining dimension holds the group index. With
            dynamic labels, rows matching no group (padding) are dropped; with static labels
            they raise a ``ValueError``.

    Returns:
        A block with values of shape ``(n_groups, *components, n_properties)``; gradients
        are summed the same way.
    """
    _check_block(block, "sum_over_samples_block")
    return _reduce_over_samples_block(block, sample_names, "sum", groups, "sum_over_samples_block")


def sum_over_samples(
    tensor: TensorMap, sample_names: str | Sequence[str], *, groups: Groups = None
) -> TensorMap:
    """Sum every block of ``tensor`` over the sample dimensions ``sample_names``.

    See :func:`sum_over_samples_block`; ``groups`` is applied to every block.

    >>> import numpy as np, eqx_tensor as eqt
    >>> block = eqt.TensorBlock(
    ...     np.array([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]]),
    ...     eqt.Labels(["system", "atom"], np.array([[0, 0], [0, 1], [1, 0]])),
    ...     [],
    ...     eqt.Labels.range("p", 2),
    ... )
    >>> tensor = eqt.TensorMap(eqt.Labels.single(), [block])
    >>> eqt.sum_over_samples(tensor, "atom").block().values.tolist()
    [[4.0, 6.0], [5.0, 6.0]]
    """
    return _reduce_over_samples(tensor, sample_names, "sum", groups, "sum_over_samples")


def mean_over_samples_block(
    block: TensorBlock, sample_names: str | Sequence[str], *, groups: Groups = None
) -> TensorBlock:
    """Average a block over the sample dimensions ``sample_names``.

    See :func:`mean_over_samples`.
    """
    _check_block(block, "mean_over_samples_block")
    return _reduce_over_samples_block(
        block, sample_names, "mean", groups, "mean_over_samples_block"
    )


def mean_over_samples(
    tensor: TensorMap, sample_names: str | Sequence[str], *, groups: Groups = None
) -> TensorMap:
    """Average every block of ``tensor`` over the sample dimensions ``sample_names``.

    The mean of a group of ``N`` samples is their sum divided by ``N``, and so is its
    gradient: ``d mean = (sum of the gradient rows) / N``.

    .. note:: Departure from metatensor-operations (0.5), which divides each output
       gradient row by the number of gradient rows merged into it. That is only right
       when every sample of the group has a gradient row for that parameter entry; with
       sparse gradient rows (e.g. the ``positions`` gradients of 9 of the 17 blocks of
       ``qm7-power-spectrum.mts``) metatensor's result is not the derivative of the mean.
       Here the result always equals ``sum_over_samples`` divided by ``N``. The same
       applies to :func:`var_over_samples` and :func:`std_over_samples`.

    With ``groups`` (see :func:`sum_over_samples_block`), groups without rows give 0.
    """
    return _reduce_over_samples(tensor, sample_names, "mean", groups, "mean_over_samples")


def var_over_samples_block(
    block: TensorBlock, sample_names: str | Sequence[str], *, groups: Groups = None
) -> TensorBlock:
    """Variance of a block over the sample dimensions ``sample_names``.

    See :func:`var_over_samples`.
    """
    _check_block(block, "var_over_samples_block")
    return _reduce_over_samples_block(block, sample_names, "var", groups, "var_over_samples_block")


def var_over_samples(
    tensor: TensorMap, sample_names: str | Sequence[str], *, groups: Groups = None
) -> TensorMap:
    r"""Variance (biased, divided by ``N``) of every block over ``sample_names``.

    Gradients: :math:`\nabla \mathrm{Var}(X) = 2 (E[X \nabla X] - E[X] E[\nabla X])`, the
    expectations taken over the ``N`` samples of each group (absent gradient rows count
    as zeros; metatensor divides by the number of gradient rows instead, see
    :func:`mean_over_samples`).
    """
    return _reduce_over_samples(tensor, sample_names, "var", groups, "var_over_samples")


def std_over_samples_block(
    block: TensorBlock, sample_names: str | Sequence[str], *, groups: Groups = None
) -> TensorBlock:
    """Standard deviation of a block over the sample dimensions ``sample_names``.

    See :func:`std_over_samples`.
    """
    _check_block(block, "std_over_samples_block")
    return _reduce_over_samples_block(block, sample_names, "std", groups, "std_over_samples_block")


def std_over_samples(
    tensor: TensorMap, sample_names: str | Sequence[str], *, groups: Groups = None
) -> TensorMap:
    r"""Standard deviation (biased) of every block over ``sample_names``.

    Gradients: :math:`\nabla \mathrm{Std}(X) = (E[X \nabla X] - E[X] E[\nabla X]) /
    \mathrm{Std}(X)`, set to 0 where the standard deviation is 0 (as metatensor does), with
    expectations over the ``N`` samples of each group (see :func:`mean_over_samples` for
    the departure from metatensor with sparse gradient rows). ``jax.grad`` through the
    values makes the same choice: a zero, not NaN, gradient where the variance is 0.
    """
    return _reduce_over_samples(tensor, sample_names, "std", groups, "std_over_samples")
