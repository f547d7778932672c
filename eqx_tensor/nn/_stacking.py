"""Grouped matrix products: many small ``x_i @ W[k_i]`` computed in few batched contractions.

A layer over a TensorMap multiplies every block (and every gradient block) by the weight of
its key. Each block array is first flattened to a 2-D *segment* of shape ``(rows,
in_features)`` (samples, gradient components and components all become rows, since the weight
only acts on the properties). Segments with the same feature sizes can then be computed
together in *buckets*: a bucket is zero-padded to its largest row count, stacked, and
multiplied in one batched ``einsum`` against the gathered weights.

Blocks rarely share a sample count, so the question is how much padding is worth one kernel
less. :func:`plan_buckets` answers it with a small dynamic programme over the sorted row counts
(padded multiply-adds plus a fixed cost per bucket). Padding needs one pad and one slice per
segment, operations of about the size of the small matrix product they replace, and the padded
rows add memory traffic. Hence the default (``"auto"``) stacks only segments with *equal* row
counts, which needs no padding at all (blocks of the same ``o3_lambda`` and species pair,
values and gradients with the same row counts). ``"pad"`` (one padded product per group of
equal feature sizes) may suit accelerators, where a kernel launch costs more; ``"blocks"``
computes every segment on its own, as metatensor-learn does. ``benchmarks/equivariant_mlp.py``
times the three modes.

The plan depends only on static shapes, so it is computed once per trace with NumPy.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import jax.numpy as jnp
import numpy as np

__all__ = ["STACKING_MODES", "grouped_matmul", "plan_buckets", "take_weights"]

#: Accepted values of the ``stacking`` argument of the linear layers.
#:
#: * ``"auto"`` (default): stack segments with equal shapes, no padding;
#: * ``"blocks"``: one matrix product per segment, as metatensor-learn does;
#: * ``"pad"``: one zero-padded batched product per group of equal feature sizes.
STACKING_MODES = ("auto", "blocks", "pad")

# Cost of one more bucket, in multiply-adds, for plan_buckets; None: no stacking at all.
# "auto" uses 0, which merges equal row counts only (see the module docstring).
_BUCKET_OVERHEAD = {"auto": 0, "blocks": None, "pad": float("inf")}


def plan_buckets(rows: Sequence[int], unit_cost: int, overhead: float) -> list[list[int]]:
    """Partition segments into buckets minimising padded work plus a cost per bucket.

    Args:
        rows: row count of each segment.
        unit_cost: multiply-adds per (padded) row, ``in_features * out_features``.
        overhead: cost of one bucket in multiply-adds; ``0`` keeps segments apart unless
            they have the same row count, ``inf`` puts everything in one bucket.

    Returns:
        Buckets as lists of segment indices, each sorted by decreasing row count.
    """
    order = sorted(range(len(rows)), key=lambda i: (-rows[i], i))
    sizes = [rows[i] for i in order]
    n = len(sizes)
    if n == 0:
        return []
    if overhead == float("inf"):
        return [order]
    # best[j]: cheapest partition of the first j sorted segments; a bucket [i, j) costs
    # (j - i) * sizes[i] padded rows, since sizes[i] is its largest row count.
    best = [0.0] + [float("inf")] * n
    cut = [0] * (n + 1)
    for j in range(1, n + 1):
        for i in range(j):
            cost = best[i] + (j - i) * sizes[i] * unit_cost + overhead
            # ties prefer fewer buckets (smaller i), which also merges equal sizes at zero cost
            if cost < best[j]:
                best[j] = cost
                cut[j] = i
    buckets = []
    j = n
    while j > 0:
        i = cut[j]
        buckets.append(order[i:j])
        j = i
    return buckets[::-1]


@functools.lru_cache(maxsize=256)
def _plan(
    shapes: tuple[tuple[int, int, int, int], ...], stacking: str
) -> tuple[tuple[int, int, tuple[int, ...]], ...]:
    """Buckets as ``(in_features, out_features, segment indices)`` for static segment shapes.

    ``shapes[i] = (rows, in_features, out_features, weight_index)``.
    """
    overhead = _BUCKET_OVERHEAD[stacking]
    groups: dict[tuple[int, int], list[int]] = {}
    for i, (rows, fin, fout, _) in enumerate(shapes):
        if rows > 0:
            groups.setdefault((fin, fout), []).append(i)
    plan = []
    for (fin, fout), members in groups.items():
        rows = [shapes[i][0] for i in members]
        if overhead is None:
            plan.extend((fin, fout, (i,)) for i in members)
            continue
        for bucket in plan_buckets(rows, fin * fout, overhead):
            plan.append((fin, fout, tuple(members[b] for b in bucket)))
    return tuple(plan)


def take_weights(weight: Any, indices: np.ndarray, fin: int, fout: int) -> Any:
    """``weight[indices, :fin, :fout]`` with a static slice instead of a gather when possible."""
    if weight.shape[1] != fin or weight.shape[2] != fout:
        weight = weight[:, :fin, :fout]
    if len(indices) == weight.shape[0] and np.array_equal(indices, np.arange(len(indices))):
        return weight
    start = int(indices[0])
    if np.array_equal(indices, np.arange(start, start + len(indices))):
        return weight[start : start + len(indices)]
    return jnp.take(weight, jnp.asarray(indices), axis=0)


def grouped_matmul(
    segments: Sequence[Any],
    weight_index: Sequence[int],
    weight: Any,
    out_features: Sequence[int],
    *,
    stacking: str = "auto",
) -> list[Any]:
    """``[segments[i] @ weight[weight_index[i], :fin_i, :out_features[i]] for i ...]``, batched.

    Args:
        segments: 2-D arrays of shape ``(rows_i, fin_i)``.
        weight_index: for each segment, the row of ``weight`` to use.
        weight: stacked weights of shape ``(n_weights, max_in, max_out)``; entries beyond a
            key's own feature sizes are padding and never read.
        out_features: output features of each segment.
        stacking: one of :data:`STACKING_MODES`.

    Returns:
        One array of shape ``(rows_i, out_features[i])`` per segment.
    """
    if stacking not in STACKING_MODES:
        raise ValueError(f"stacking must be one of {STACKING_MODES}, got {stacking!r}")
    shapes = tuple(
        (int(x.shape[0]), int(x.shape[1]), int(f), int(k))
        for x, f, k in zip(segments, out_features, weight_index)
    )
    dtype = jnp.result_type(weight, *segments) if segments else weight.dtype
    outputs: list[Any] = [
        jnp.zeros((rows, fout), dtype) if rows == 0 else None for rows, _, fout, _ in shapes
    ]
    for fin, fout, members in _plan(shapes, stacking):
        indices = np.array([shapes[i][3] for i in members])
        weights = take_weights(weight, indices, fin, fout)
        if len(members) == 1:
            outputs[members[0]] = segments[members[0]] @ weights[0]
            continue
        largest = shapes[members[0]][0]
        stacked = jnp.stack(
            [_pad_rows(segments[i], largest) for i in members]
        )  # (bucket, largest, fin)
        result = jnp.einsum("gri,gio->gro", stacked, weights)
        # split, not one slice per segment: the transpose of a slice is a pad to the full
        # stacked shape, and summing one such pad per segment made the backward pass
        # quadratic in the bucket size; the transpose of a split is one concatenation
        pieces = jnp.split(result, len(members), axis=0)
        for piece, i in zip(pieces, members):
            outputs[i] = piece[0, : shapes[i][0]]
    return outputs


def _pad_rows(x: Any, rows: int) -> Any:
    if x.shape[0] == rows:
        return x
    return jnp.pad(x, ((0, rows - x.shape[0]), (0, 0)))
