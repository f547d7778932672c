"""Point clouds: batches of systems, a jit-able neighbour list, edge features, message passing.

Conventions:

- **Batches.** A :class:`Systems` holds ``n_atoms`` atom slots of ``n_systems`` systems,
  concatenated (atoms of a system contiguous, systems in order) and padded at the end.
  Padding atoms have ``system == n_systems`` (out of range: segment sums over systems drop
  them) and ``atom_mask == False``. Build batches with :meth:`Systems.from_arrays`,
  :meth:`Systems.from_ase` and :func:`join_systems` (``atom_capacity=`` pads).
- **Pairs.** :func:`neighbor_list` returns pairs ``(i, j, S)`` with the vector
  ``positions[j] - positions[i] + S @ cell`` from the first to the second atom (metatensor's
  and featomic's convention), ``|vector| < cutoff``, no self pair ``i == j, S = 0`` but periodic
  self-images; full lists hold ``(i, j, S)`` and ``(j, i, -S)``, half lists keep ``i < j`` (and
  lexicographically positive ``S`` for ``i == j``). ``first_atom``/``second_atom`` fields are
  batch-global rows of ``Systems.positions``.
- **Samples.** Node TensorMaps have one row per atom slot, samples :meth:`Systems.samples`
  (dynamic ``["system", "atom"]``, ``atom`` counted within the system); edge TensorMaps have
  one row per pair slot, samples :meth:`NeighborList.samples` (dynamic ``["system",
  "first_atom", "second_atom", "cell_shift_a", "cell_shift_b", "cell_shift_c"]``, atoms counted
  within the system). Labels are dynamic so that one compiled function serves all batches of
  the same capacities.
- **Padding and masks.** Padding pairs have zero vectors, ``system == n_systems`` and
  ``mask == False``; every function here makes padding rows exactly 0 and keeps gradients finite
  at zero vectors (coincident atoms, padding) and isolated atoms.
- **Capacities and overflow.** The number of pair slots ``capacity`` is static. Eagerly
  ``capacity=None`` gives exactly the number of pairs and too small a capacity raises
  (:meth:`NeighborList.raise_if_overflow`); under ``jit``/``vmap`` ``capacity`` is required
  and the caller checks ``pairs.overflow`` (``pairs.n_pairs`` is the number found).
- **Complexity.** The neighbour list is brute force, ``O(n_atoms^2 * n_shifts)`` time with
  bounded memory (chunks of rows), fine for batches up to a few thousand atoms; gather and
  scatter are ``O(capacity)`` gathers and segment sums.
"""

from ._graph import edge_spherical_harmonics, edge_vectors, gather, scatter, sum_over_atoms
from ._neighbors import NeighborList, neighbor_list
from ._systems import Systems, join_systems

__all__ = [
    "NeighborList",
    "Systems",
    "edge_spherical_harmonics",
    "edge_vectors",
    "gather",
    "join_systems",
    "neighbor_list",
    "scatter",
    "sum_over_atoms",
]
