"""A padded batch of atomic systems as a JAX pytree, and its host-side constructors."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ..labels import Labels

__all__ = ["Systems", "join_systems"]


@dataclasses.dataclass(frozen=True)
class Systems:
    """A batch of ``n_systems`` atomic systems, concatenated along atoms and padded.

    Atoms of one system are contiguous and systems come in order. Padding atoms sit at the
    end, with ``system == n_systems`` (out of range, so segment sums over systems drop them)
    and ``atom_mask == False``. All arrays are pytree leaves; ``n_systems`` is static, so one
    compiled function serves every batch with the same ``n_atoms`` and ``n_systems``.

    The constructors (:meth:`from_arrays`, :meth:`from_ase`, :func:`join_systems`) check
    shapes; the plain dataclass constructor does not (it runs on every pytree unflatten).

    Attributes:
        positions: ``(n_atoms, 3)`` float, Cartesian positions.
        types: ``(n_atoms,)`` int32, atom types (atomic numbers for :meth:`from_ase`).
        system: ``(n_atoms,)`` int32, index of each atom's system in ``[0, n_systems)``,
            ``n_systems`` for padding atoms.
        cells: ``(n_systems, 3, 3)`` float, rows are the cell vectors ``a, b, c`` (zeros
            when not periodic).
        pbc: ``(n_systems, 3)`` bool, periodicity along ``a, b, c``.
        atom_mask: ``(n_atoms,)`` bool, ``False`` for padding atoms.
        n_systems: static number of systems.
    """

    positions: jax.Array
    types: jax.Array
    system: jax.Array
    cells: jax.Array
    pbc: jax.Array
    atom_mask: jax.Array
    n_systems: int

    @property
    def n_atoms(self) -> int:
        """Number of atom slots, padding included (static)."""
        return int(self.positions.shape[0])

    def atom_index_in_system(self) -> jax.Array:
        """Index of each atom within its system, shape ``(n_atoms,)`` int32.

        Padding atoms get their running index among the padding atoms (0, 1, ...), so that
        ``(system, atom)`` rows stay unique. Computed with ``jnp`` (works under ``jit``/``vmap``);
        relies on atoms of a system being contiguous and systems being in order.
        """
        return _atom_index_in_system(self.system, self.n_systems)

    def system_starts(self) -> jax.Array:
        """Batch-global index of the first atom of each system, shape ``(n_systems + 1,)`` int32.

        The last entry is the index of the first padding atom (``n_atoms`` without padding).
        """
        return _system_starts(self.system, self.n_systems)

    def samples(self) -> Labels:
        """Dynamic ``Labels(["system", "atom"])``, one row per atom slot, shape ``(n_atoms, 2)``.

        ``atom`` is the index within the system (metatensor's convention); padding rows are
        ``(n_systems, k)`` with ``k`` the running index among padding atoms.
        """
        return Labels(["system", "atom"], _samples(self.system, self.n_systems))

    # ----------------------------------------------------------------- constructors
    @classmethod
    def from_arrays(
        cls,
        positions: Any,
        types: Any = None,
        cell: Any = None,
        pbc: bool | Sequence[bool] | None = None,
    ) -> Systems:
        """One system from arrays (eager, host side).

        Args:
            positions: ``(n_atoms, 3)``. Floating dtypes are kept (JAX's rule applies: float64
                becomes float32 when x64 is off); integers become the default float type.
            types: ``(n_atoms,)`` integers, default zeros.
            cell: ``(3, 3)``, rows are the cell vectors; default zeros (not periodic). It is
                converted to the dtype of ``positions``, so that pair vectors have that dtype.
            pbc: a bool or 3 bools. Default: periodic along every non-zero cell vector (all
                three for an ordinary cell, none without a cell).

        Returns:
            a :class:`Systems` with ``n_systems = 1``.
        """
        positions = _as_positions(positions)
        n = positions.shape[0]
        if types is None:
            types = jnp.zeros((n,), dtype=jnp.int32)
        else:
            types = _as_int_array(types, "types", (n,))
        if cell is None:
            cell = np.zeros((3, 3))
        cell_np = np.asarray(cell)
        if cell_np.shape != (3, 3):
            raise ValueError(f"cell must have shape (3, 3), got {cell_np.shape}")
        if not np.issubdtype(cell_np.dtype, np.number) or np.issubdtype(cell_np.dtype, np.bool_):
            raise ValueError(f"cell must be a numeric array, got dtype {cell_np.dtype}")
        if pbc is None:
            pbc_np = np.any(cell_np != 0, axis=1)
        else:
            pbc_np = np.asarray(pbc)
            if pbc_np.dtype != np.bool_:
                raise ValueError(f"pbc must be a bool or 3 bools, got {pbc!r}")
            pbc_np = np.broadcast_to(pbc_np, (3,)) if pbc_np.ndim == 0 else pbc_np
            if pbc_np.shape != (3,):
                raise ValueError(f"pbc must be a bool or 3 bools, got shape {pbc_np.shape}")
        _check_periodic_cell(cell_np, pbc_np, "cell")
        systems = cls(
            positions=positions,
            types=types,
            system=jnp.zeros((n,), dtype=jnp.int32),
            cells=jnp.asarray(cell_np, dtype=positions.dtype)[None],
            pbc=jnp.asarray(pbc_np, dtype=bool)[None],
            atom_mask=jnp.ones((n,), dtype=bool),
            n_systems=1,
        )
        return systems

    @classmethod
    def from_ase(cls, atoms: Any) -> Systems:
        """Systems from an ``ase.Atoms`` or a list of them (types are the atomic numbers)."""
        import ase  # optional dependency

        frames = [atoms] if isinstance(atoms, ase.Atoms) else list(atoms)
        for i, frame in enumerate(frames):
            if not isinstance(frame, ase.Atoms):
                raise TypeError(f"atoms[{i}] must be an ase.Atoms, got {type(frame).__name__}")
        systems = [
            cls.from_arrays(
                frame.get_positions(),
                frame.get_atomic_numbers(),
                np.asarray(frame.cell[:]),
                [bool(p) for p in frame.pbc],
            )
            for frame in frames
        ]
        return systems[0] if len(systems) == 1 else join_systems(systems)

    def validate(self) -> Systems:
        """Check the shapes and dtypes of the fields; returns ``self``. Works under ``jit``."""
        _check_shapes(self)
        return self


# jitted so that eager calls compile once per shape instead of once per operation
@partial(jax.jit, static_argnums=1)
def _system_starts(system: jax.Array, n_systems: int) -> jax.Array:
    # one extra segment collects the padding atoms (system == n_systems)
    counts = jax.ops.segment_sum(jnp.ones_like(system, dtype=jnp.int32), system, n_systems + 1)
    return (jnp.cumsum(counts) - counts).astype(jnp.int32)


@partial(jax.jit, static_argnums=1)
def _atom_index_in_system(system: jax.Array, n_systems: int) -> jax.Array:
    starts = _system_starts(system, n_systems)
    index = jnp.clip(system, 0, n_systems)
    return (jnp.arange(system.shape[0], dtype=jnp.int32) - starts[index]).astype(jnp.int32)


@partial(jax.jit, static_argnums=1)
def _samples(system: jax.Array, n_systems: int) -> jax.Array:
    atom = _atom_index_in_system(system, n_systems)
    return jnp.stack([system.astype(jnp.int32), atom], axis=1)


def _as_positions(positions: Any) -> jax.Array:
    positions = jnp.asarray(positions)
    if positions.ndim != 2 or positions.shape[1] != 3:
        raise ValueError(f"positions must have shape (n_atoms, 3), got {positions.shape}")
    if not jnp.issubdtype(positions.dtype, jnp.floating):
        positions = positions.astype(jnp.result_type(float))
    return positions


def _as_int_array(values: Any, name: str, shape: tuple[int, ...]) -> jax.Array:
    array = np.asarray(values)
    if array.shape != shape:
        raise ValueError(f"{name} must have shape {shape}, got {array.shape}")
    if array.size and not np.issubdtype(array.dtype, np.integer):
        raise ValueError(f"{name} must be integers, got dtype {array.dtype}")
    return jnp.asarray(array, dtype=jnp.int32)


def _check_periodic_cell(cell: np.ndarray, pbc: np.ndarray, name: str) -> None:
    for axis in range(3):
        if pbc[axis] and not np.any(cell[axis] != 0):
            raise ValueError(
                f"{name} vector {'abc'[axis]} is zero but the system is periodic along it: "
                "give a non-zero cell vector or pbc=False on that axis"
            )


def _check_shapes(systems: Systems) -> None:
    """Shape and dtype checks on (possibly traced) fields: shapes are static."""
    if not isinstance(systems, Systems):
        raise TypeError(f"expected Systems, got {type(systems).__name__}")
    n, s = systems.n_atoms, systems.n_systems
    expected = {
        "positions": (n, 3),
        "types": (n,),
        "system": (n,),
        "cells": (s, 3, 3),
        "pbc": (s, 3),
        "atom_mask": (n,),
    }
    for name, shape in expected.items():
        got = tuple(jnp.shape(getattr(systems, name)))
        if got != shape:
            raise ValueError(
                f"Systems.{name} must have shape {shape} (n_atoms={n}, n_systems={s}), got {got}"
            )
    if not jnp.issubdtype(systems.positions.dtype, jnp.floating):
        raise ValueError(f"Systems.positions must be floats, got {systems.positions.dtype}")
    if not jnp.issubdtype(systems.cells.dtype, jnp.floating):
        raise ValueError(f"Systems.cells must be floats, got {systems.cells.dtype}")
    for name in ("types", "system"):
        dtype = getattr(systems, name).dtype
        if not jnp.issubdtype(dtype, jnp.integer):
            raise ValueError(f"Systems.{name} must be integers, got {dtype}")


def join_systems(systems: Sequence[Systems], atom_capacity: int | None = None) -> Systems:
    """Concatenate batches of systems along atoms, optionally padded (eager, host side).

    Padding atoms of the inputs are dropped; the systems are renumbered in order.

    Args:
        systems: the batches to join.
        atom_capacity: pad the result to this many atom slots (positions 0, types 0,
            ``system = n_systems``, ``atom_mask = False``). ``None``: no padding.

    Returns:
        a :class:`Systems` with ``n_systems = sum(s.n_systems)`` and ``atom_capacity`` (or the
        total number of real atoms) atom slots. Mixed float dtypes promote (float32
        with float64 gives float64, then JAX's rule applies when x64 is off).
    """
    systems = list(systems)
    if not systems:
        raise ValueError("join_systems needs at least one Systems")
    positions, types, index, cells, pbc = [], [], [], [], []
    offset = 0
    for i, item in enumerate(systems):
        if not isinstance(item, Systems):
            raise TypeError(f"systems[{i}] must be Systems, got {type(item).__name__}")
        _check_shapes(item)
        keep = np.asarray(item.atom_mask)
        # NumPy, not jnp: boolean indexing would compile a kernel per shape
        positions.append(np.asarray(item.positions)[keep])
        types.append(np.asarray(item.types, dtype=np.int32)[keep])
        index.append(np.asarray(item.system, dtype=np.int32)[keep] + offset)
        cells.append(np.asarray(item.cells))
        pbc.append(np.asarray(item.pbc, dtype=bool))
        offset += item.n_systems
    positions = np.concatenate(positions)
    cells = np.concatenate(cells)
    types, index = np.concatenate(types), np.concatenate(index)
    n_real, n_systems = int(positions.shape[0]), offset
    capacity = n_real if atom_capacity is None else int(atom_capacity)
    if capacity < n_real:
        raise ValueError(
            f"atom_capacity={capacity} is too small: the {n_systems} systems have {n_real} atoms"
        )
    pad = capacity - n_real
    return Systems(
        positions=jnp.asarray(np.concatenate([positions, np.zeros((pad, 3), positions.dtype)])),
        types=jnp.asarray(np.concatenate([types, np.zeros(pad, np.int32)])),
        system=jnp.asarray(np.concatenate([index, np.full(pad, n_systems, np.int32)])),
        cells=jnp.asarray(cells),
        pbc=jnp.asarray(np.concatenate(pbc)),
        atom_mask=jnp.asarray(np.arange(capacity) < n_real),
        n_systems=n_systems,
    )


jax.tree_util.register_dataclass(
    Systems,
    data_fields=["positions", "types", "system", "cells", "pbc", "atom_mask"],
    meta_fields=["n_systems"],
)
