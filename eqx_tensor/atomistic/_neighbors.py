"""A jit-able brute-force neighbour list with periodic images, static capacity and masks."""

from __future__ import annotations

import dataclasses
import itertools
import math
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ..labels import Labels
from ._systems import Systems, _check_shapes

__all__ = ["NeighborList", "neighbor_list"]

# what converting a traced value to a concrete one raises
_TRACER_ERRORS = (jax.errors.ConcretizationTypeError, jax.errors.TracerArrayConversionError)

# candidate entries (pairs of atoms x cell shifts) evaluated at once; larger batches are
# processed in chunks of rows so that memory stays bounded
_CHUNK_ENTRIES = 2**23

SAMPLE_NAMES = (
    "system",
    "first_atom",
    "second_atom",
    "cell_shift_a",
    "cell_shift_b",
    "cell_shift_c",
)


@dataclasses.dataclass(frozen=True)
class NeighborList:
    """Pairs of atoms closer than ``cutoff``, in ``capacity`` slots, found pairs first.

    A pair ``(i, j, S)`` has the vector ``positions[j] - positions[i] + S @ cells[system]``
    from the first to the second atom (metatensor's / featomic's convention). Padding slots
    have ``first_atom = second_atom = 0``, zero shifts and vectors, ``system = n_systems``
    (out of range) and ``mask = False``.

    Attributes:
        first_atom: ``(capacity,)`` int32, batch-global index (row of ``Systems.positions``).
        second_atom: ``(capacity,)`` int32, batch-global index.
        cell_shifts: ``(capacity, 3)`` int32, integer shifts along ``a, b, c``.
        vectors: ``(capacity, 3)`` float, differentiable w.r.t. positions and cells.
        system: ``(capacity,)`` int32, system of the pair.
        mask: ``(capacity,)`` bool, ``False`` for padding slots.
        n_pairs: ``()`` int32, number of pairs found; larger than ``capacity`` on overflow
            (the pairs that did not fit are dropped).
        atom_offset: ``(capacity,)`` int32, batch-global index of the first atom of the pair's
            system (0 for padding): ``first_atom - atom_offset`` is the index within the system.
        cutoff: static cutoff radius.
        full_list: static, whether both ``(i, j, S)`` and ``(j, i, -S)`` are listed.
    """

    first_atom: jax.Array
    second_atom: jax.Array
    cell_shifts: jax.Array
    vectors: jax.Array
    system: jax.Array
    mask: jax.Array
    n_pairs: jax.Array
    atom_offset: jax.Array
    cutoff: float
    full_list: bool

    @property
    def capacity(self) -> int:
        """Number of pair slots (static)."""
        return int(self.first_atom.shape[0])

    @property
    def overflow(self) -> jax.Array:
        """``()`` bool: more pairs were found than fit in ``capacity``."""
        return self.n_pairs > self.capacity

    def lengths(self) -> jax.Array:
        """``|vectors|``, shape ``(capacity,)``, 0 with a zero (finite) gradient at zero vectors."""
        return _safe_norm(self.vectors)

    def samples(self) -> Labels:
        """Dynamic ``Labels`` with :data:`SAMPLE_NAMES`, shape ``(capacity, 6)``.

        ``first_atom`` / ``second_atom`` are indices within the system (metatensor's
        convention). Padding rows are ``(n_systems, k, 0, 0, 0, 0)``, ``k`` the running index
        among padding slots, so that rows stay unique.
        """
        values = _pair_samples(
            self.first_atom,
            self.second_atom,
            self.cell_shifts,
            self.system,
            self.mask,
            self.atom_offset,
        )
        return Labels(list(SAMPLE_NAMES), values)

    def raise_if_overflow(self) -> NeighborList:
        """Raise ``RuntimeError`` if the pairs did not fit (eager only); returns ``self``."""
        try:
            n_pairs = int(self.n_pairs)
        except _TRACER_ERRORS:
            raise ValueError(
                "raise_if_overflow needs concrete values and cannot run inside a jax "
                "transformation: check `pairs.overflow` (a bool array) instead"
            ) from None
        if n_pairs > self.capacity:
            raise RuntimeError(
                f"the neighbour list found {n_pairs} pairs within the cutoff {self.cutoff} but "
                f"its capacity is {self.capacity}: pass a larger capacity= (at least {n_pairs}) "
                "to neighbor_list"
            )
        return self


jax.tree_util.register_dataclass(
    NeighborList,
    data_fields=[
        "first_atom",
        "second_atom",
        "cell_shifts",
        "vectors",
        "system",
        "mask",
        "n_pairs",
        "atom_offset",
    ],
    meta_fields=["cutoff", "full_list"],
)


@jax.jit
def _pair_samples(
    first_atom: jax.Array,
    second_atom: jax.Array,
    cell_shifts: jax.Array,
    system: jax.Array,
    mask: jax.Array,
    atom_offset: jax.Array,
) -> jax.Array:
    padding_index = jnp.cumsum(~mask, dtype=jnp.int32) - 1
    first = jnp.where(mask, first_atom - atom_offset, padding_index)
    second = jnp.where(mask, second_atom - atom_offset, 0)
    columns = jnp.stack([system, first, second], axis=1).astype(jnp.int32)
    return jnp.concatenate([columns, cell_shifts.astype(jnp.int32)], axis=1)


@jax.jit
def _safe_norm(vectors: jax.Array) -> jax.Array:
    # sqrt has an infinite derivative at 0: evaluate it away from 0 and select (double where)
    squared = jnp.sum(vectors * vectors, axis=-1)
    positive = squared > 0
    return jnp.where(positive, jnp.sqrt(jnp.where(positive, squared, 1)), 0)


def _concrete(array: Any) -> np.ndarray | None:
    """NumPy copy of ``array``, or ``None`` if it is traced."""
    try:
        return np.asarray(array)
    except _TRACER_ERRORS:
        return None


def _default_max_shifts(systems: Systems, cutoff: float) -> tuple[int, int, int]:
    """Largest ``|S|`` per axis that can give a pair within ``cutoff``, from concrete arrays.

    For a periodic axis ``i`` let ``n_i`` be the unit normal to the other periodic cell vectors
    closest to ``a_i`` and ``h_i = a_i . n_i`` the distance between the lattice planes they span
    (the usual plane spacing ``V / |a_j x a_k|`` when all axes are periodic). Since
    ``|v| >= |v . n_i| >= |S_i| h_i - |(r_j - r_i) . n_i|``, a pair needs
    ``|S_i| < (cutoff + spread_i) / h_i`` with ``spread_i`` the extent of the system's atoms along
    ``n_i`` (less than ``h_i`` for wrapped positions: at most ``ceil(cutoff / h_i)`` images).
    Positions outside the cell are thus handled without wrapping them.
    """
    positions = np.asarray(systems.positions, dtype=np.float64)
    cells = np.asarray(systems.cells, dtype=np.float64)
    pbc = np.asarray(systems.pbc, dtype=bool)
    index = np.asarray(systems.system)
    atom_mask = np.asarray(systems.atom_mask, dtype=bool)
    result = [0, 0, 0]
    for s in range(systems.n_systems):
        if not pbc[s].any():
            continue
        atoms = positions[(index == s) & atom_mask]
        if len(atoms) == 0:
            continue
        periodic = [axis for axis in range(3) if pbc[s, axis]]
        for axis in periodic:
            others = [cells[s, k] for k in periodic if k != axis]
            normal = _plane_normal(cells[s, axis], others)
            spacing = float(cells[s, axis] @ normal)
            if not spacing > 1e-12 * max(1.0, float(np.linalg.norm(cells[s, axis]))):
                raise ValueError(
                    f"the cell of system {s} is degenerate: its periodic cell vectors are "
                    f"linearly dependent (cell {cells[s].tolist()}, pbc {pbc[s].tolist()})"
                )
            projected = atoms @ normal
            bound = (cutoff + float(projected.max() - projected.min())) / spacing
            # floor (not ceil - 1) with a little slack: an extra image is cheap, a missing one
            # would lose pairs at the boundary through rounding
            result[axis] = max(result[axis], math.floor(bound * (1 + 1e-9) + 1e-9))
    return (result[0], result[1], result[2])


def _plane_normal(vector: np.ndarray, others: list[np.ndarray]) -> np.ndarray:
    """Unit vector orthogonal to ``others`` (0, 1 or 2 vectors) with the largest ``vector . n``."""
    if len(others) == 2:
        normal = np.cross(others[0], others[1])
    elif len(others) == 1:
        other = others[0]
        normal = vector - (vector @ other) / max(other @ other, 1e-300) * other
    else:
        normal = vector
    norm = np.linalg.norm(normal)
    if norm == 0:
        return np.zeros(3)
    normal = normal / norm
    return normal if vector @ normal >= 0 else -normal


def _shift_grid(max_shifts: tuple[int, int, int]) -> np.ndarray:
    """All integer shifts in ``[-m, m]`` per axis, lexicographic order, shape ``(K, 3)``."""
    ranges = [range(-m, m + 1) for m in max_shifts]
    return np.array(list(itertools.product(*ranges)), dtype=np.int32).reshape(-1, 3)


def _lexicographically_positive(shifts: np.ndarray) -> np.ndarray:
    """Whether the first non-zero entry of each shift is positive, shape ``(K,)``."""
    out = np.zeros(len(shifts), dtype=bool)
    undecided = np.ones(len(shifts), dtype=bool)
    for axis in range(3):
        out |= undecided & (shifts[:, axis] > 0)
        undecided &= shifts[:, axis] == 0
    return out


def neighbor_list(
    systems: Systems,
    cutoff: float,
    *,
    capacity: int | None = None,
    full_list: bool = True,
    max_shifts: tuple[int, int, int] | None = None,
) -> NeighborList:
    """All pairs of atoms of the same system closer than ``cutoff``, periodic images included.

    A pair is ``(i, j, S)`` with ``i, j`` atoms of one system, ``S`` an integer cell shift
    (zero along non-periodic axes) and ``|positions[j] - positions[i] + S @ cell| < cutoff``
    (strict). ``i == j`` with ``S = 0`` is excluded; periodic images of an atom itself
    (``i == j``, ``S != 0``) are included, and so are several images of one neighbour when
    the cell is smaller than twice the cutoff.

    Pairs are sorted by ``(system, first_atom, second_atom, shift)`` (shifts in
    lexicographic order) and come first; padding slots follow (see :class:`NeighborList`).

    Algorithm: brute force over all ``n_atoms^2 * n_shifts`` candidates of the batch, masked to
    atoms of the same system, real atoms and allowed shifts, then compacted into ``capacity``
    slots with a cumulative sum and a scatter. Time is ``O(n_atoms^2 * n_shifts)``; memory is
    ``O(min(n_atoms^2 * n_shifts, 2**23) + capacity)``: candidates are processed in chunks of
    rows when there are many. ``n_shifts = prod(2 * max_shifts + 1)``. Good for batches of up to
    a few thousand atoms; the candidate mask is computed without gradients, and only the kept
    vectors are recomputed differentiably.

    Args:
        systems: the batch; may be traced (``jit``, ``vmap``).
        cutoff: the cutoff radius, a positive Python float (static).
        capacity: number of pair slots (static). Required under ``jit``. Eagerly, ``None``
            means exactly the number of pairs found.
        full_list: ``True``: both ``(i, j, S)`` and ``(j, i, -S)``. ``False`` (half list, as
            featomic): each pair once, the one with ``i < j``, and for ``i == j`` the one
            whose shift ``S`` is lexicographically positive (first non-zero entry > 0).
        max_shifts: the largest ``|S|`` along ``a, b, c`` to consider (static). Eagerly it
            defaults to what the cells, positions and cutoff need (non-periodic axes 0).
            Under ``jit`` it cannot be derived: give it for periodic systems, ``None`` then
            means ``(0, 0, 0)`` (no periodic images, right for non-periodic systems).

    Returns:
        a :class:`NeighborList`. Eagerly, overflow of a given ``capacity`` raises
        ``RuntimeError``; under ``jit`` check ``pairs.overflow`` (``pairs.n_pairs`` is the
        number found).

    >>> import numpy as np
    >>> from eqx_tensor import atomistic
    >>> systems = atomistic.Systems.from_arrays(np.array([[0.0, 0, 0], [1.0, 0, 0], [5.0, 0, 0]]))
    >>> pairs = atomistic.neighbor_list(systems, cutoff=2.0)
    >>> pairs.first_atom.tolist(), pairs.second_atom.tolist(), pairs.vectors[:, 0].tolist()
    ([0, 1], [1, 0], [1.0, -1.0])
    >>> pairs.samples().names
    ['system', 'first_atom', 'second_atom', 'cell_shift_a', 'cell_shift_b', 'cell_shift_c']
    """
    _check_shapes(systems)
    try:
        cutoff = float(cutoff)
    except _TRACER_ERRORS:
        raise ValueError("cutoff must be a Python float (static), not a traced value") from None
    if not cutoff > 0 or not math.isfinite(cutoff):
        raise ValueError(f"cutoff must be positive and finite, got {cutoff}")
    if capacity is not None:
        capacity = int(capacity)
        if capacity < 0:
            raise ValueError(f"capacity must be non-negative, got {capacity}")

    # concrete (eager) inputs let us derive max_shifts and capacity; tracers (jit, vmap) do not
    concrete = not any(
        isinstance(getattr(systems, name), jax.core.Tracer)
        for name in ("positions", "cells", "pbc", "system", "atom_mask")
    )
    if max_shifts is None:
        max_shifts = _default_max_shifts(systems, cutoff) if concrete else (0, 0, 0)
    else:
        max_shifts = tuple(int(m) for m in max_shifts)
        if len(max_shifts) != 3 or min(max_shifts) < 0:
            raise ValueError(f"max_shifts must be 3 non-negative integers, got {max_shifts}")
    n_atoms = systems.n_atoms
    n_shifts = int(np.prod([2 * m + 1 for m in max_shifts]))
    rows = max(1, min(n_atoms, _CHUNK_ENTRIES // max(1, n_atoms * n_shifts)))
    # cutoff and full_list enter the kernels as values: one compilation serves all cutoffs
    dynamic = (systems, cutoff, jnp.asarray(bool(full_list)))

    if capacity is None:
        n_found = _concrete(_count_pairs(*dynamic, max_shifts, rows)) if concrete else None
        if n_found is None:
            raise ValueError(
                "neighbor_list needs a static capacity= inside jit/vmap (the number of pairs is "
                "only known at run time); check `pairs.overflow` on the result"
            )
        capacity = int(n_found)

    arrays = _find_pairs(*dynamic, max_shifts, rows, capacity)
    pairs = NeighborList(*arrays, cutoff=cutoff, full_list=bool(full_list))
    if concrete and _concrete(pairs.n_pairs) is not None:
        pairs.raise_if_overflow()
    return pairs


def _candidates(
    systems: Systems,
    cutoff: jax.Array,
    full_list: jax.Array,
    max_shifts: tuple[int, int, int],
    start: jax.Array,
    rows: int,
) -> jax.Array:
    """Mask of the pairs among candidates ``(i, j, k)`` for ``rows`` rows ``i`` from ``start``.

    Returns a bool array of shape ``(rows, n_atoms, n_shifts)``; rows past ``n_atoms`` are False.
    """
    shifts = _shift_grid(max_shifts)
    n_atoms, n_systems = systems.n_atoms, systems.n_systems
    # the mask has no gradient; stopping it here keeps autodiff away from the big candidate array
    positions = jax.lax.stop_gradient(systems.positions)
    cells = jax.lax.stop_gradient(systems.cells)
    dtype = jnp.result_type(positions.dtype, cells.dtype)

    first = start + jnp.arange(rows, dtype=jnp.int32)
    in_range = first < n_atoms
    first_c = jnp.minimum(first, n_atoms - 1)
    system = systems.system.astype(jnp.int32)
    sys_i = system[first_c]
    valid_i = in_range & systems.atom_mask[first_c] & (sys_i >= 0) & (sys_i < n_systems)
    sys_i_c = jnp.clip(sys_i, 0, max(n_systems - 1, 0))

    # (n_systems, K, 3) Cartesian shifts, and whether each shift is allowed by the pbc
    shift_vectors = jnp.einsum("ka,sab->skb", jnp.asarray(shifts, dtype), cells.astype(dtype))
    nonzero = jnp.asarray(shifts != 0)
    allowed = jnp.all(systems.pbc[:, None, :] | ~nonzero[None, :, :], axis=-1)

    delta = positions[None, :, :].astype(dtype) - positions[first_c][:, None, :].astype(dtype)
    vectors = delta[:, :, None, :] + shift_vectors[sys_i_c][:, None, :, :]
    cutoff = jnp.asarray(cutoff, dtype)
    close = jnp.sum(vectors * vectors, axis=-1) < cutoff * cutoff

    same = (sys_i[:, None] == system[None, :]) & valid_i[:, None] & systems.atom_mask[None, :]
    second = jnp.arange(n_atoms, dtype=jnp.int32)
    zero_shift = jnp.asarray(np.all(shifts == 0, axis=1))
    positive = jnp.asarray(_lexicographically_positive(shifts))
    diagonal = (first[:, None] == second[None, :])[:, :, None]
    # half list: i < j, or i == j with a lexicographically positive shift
    half = (first[:, None] < second[None, :])[:, :, None] | (diagonal & positive[None, None, :])
    return (
        close
        & same[:, :, None]
        & allowed[sys_i_c][:, None, :]
        & ~(diagonal & zero_shift[None, None, :])
        & (full_list | half)
    )


@partial(jax.jit, static_argnums=(3, 4))
def _count_pairs(
    systems: Systems,
    cutoff: jax.Array,
    full_list: jax.Array,
    max_shifts: tuple[int, int, int],
    rows: int,
) -> jax.Array:
    n_chunks = -(-systems.n_atoms // rows) if systems.n_atoms and systems.n_systems else 0

    def count(start: jax.Array) -> jax.Array:
        mask = _candidates(systems, cutoff, full_list, max_shifts, start, rows)
        return jnp.sum(mask, dtype=jnp.int32)

    if n_chunks <= 1:
        return count(jnp.int32(0)) if n_chunks else jnp.int32(0)
    starts = jnp.arange(n_chunks, dtype=jnp.int32) * rows
    return jnp.sum(jax.lax.map(count, starts))


@partial(jax.jit, static_argnums=(3, 4, 5))
def _find_pairs(
    systems: Systems,
    cutoff: jax.Array,
    full_list: jax.Array,
    max_shifts: tuple[int, int, int],
    rows: int,
    capacity: int,
) -> tuple[jax.Array, ...]:
    """The data fields of :class:`NeighborList`, in order."""
    shifts = jnp.asarray(_shift_grid(max_shifts))
    n_atoms, n_systems = systems.n_atoms, systems.n_systems
    n_shifts = int(shifts.shape[0])
    n_chunks = -(-n_atoms // rows) if n_atoms else 0
    dtype = jnp.result_type(systems.positions.dtype, systems.cells.dtype)
    if n_atoms == 0 or n_systems == 0:
        # nothing to index into: every slot is padding
        zeros = jnp.zeros((capacity,), dtype=jnp.int32)
        return (
            zeros,
            zeros,
            jnp.zeros((capacity, 3), dtype=jnp.int32),
            jnp.zeros((capacity, 3), dtype=dtype),
            jnp.full((capacity,), n_systems, dtype=jnp.int32),
            jnp.zeros((capacity,), dtype=bool),
            jnp.int32(0),
            zeros,
        )

    def compact(
        carry: tuple[jax.Array, ...], start: jax.Array
    ) -> tuple[tuple[jax.Array, ...], None]:
        # found candidates go to consecutive slots after those of the previous chunks; those
        # past the capacity get the out-of-range slot `capacity` and are dropped by the scatter.
        # Only (row, second * n_shifts + shift) are stored: two scatters instead of three.
        first, rest, count = carry
        mask = _candidates(systems, cutoff, full_list, max_shifts, start, rows).reshape(-1)
        slot = count + jnp.cumsum(mask, dtype=jnp.int32) - 1
        slot = jnp.where(mask & (slot < capacity), slot, capacity)
        entry = jnp.arange(mask.shape[0], dtype=jnp.int32)
        first = first.at[slot].set(start + entry // (n_atoms * n_shifts), mode="drop")
        rest = rest.at[slot].set(entry % (n_atoms * n_shifts), mode="drop")
        return (first, rest, count + jnp.sum(mask, dtype=jnp.int32)), None

    zeros = jnp.zeros((capacity,), dtype=jnp.int32)
    carry = (zeros, zeros, jnp.int32(0))
    if n_chunks == 1:
        carry, _ = compact(carry, jnp.int32(0))
    elif n_chunks > 1:
        carry, _ = jax.lax.scan(compact, carry, jnp.arange(n_chunks, dtype=jnp.int32) * rows)
    first, rest, n_pairs = carry

    mask = jnp.arange(capacity) < n_pairs
    first = jnp.where(mask, first, 0)
    second = jnp.where(mask, rest // n_shifts, 0)
    cell_shifts = jnp.where(mask[:, None], shifts[rest % n_shifts], 0)
    system = jnp.where(mask, systems.system.astype(jnp.int32)[first], n_systems)
    starts = systems.system_starts()
    atom_offset = jnp.where(mask, starts[jnp.minimum(system, n_systems)], 0)

    positions, cells = systems.positions, systems.cells
    cell = cells[jnp.clip(system, 0, max(n_systems - 1, 0))].astype(dtype)
    vectors = (
        positions[second].astype(dtype)
        - positions[first].astype(dtype)
        + jnp.einsum("pa,pab->pb", cell_shifts.astype(dtype), cell)
    )
    vectors = jnp.where(mask[:, None], vectors, 0)
    return (
        first,
        second,
        cell_shifts,
        vectors,
        system,
        mask,
        n_pairs,
        atom_offset.astype(jnp.int32),
    )
