"""Edge features of a neighbour list, and message passing between node and edge TensorMaps.

Node TensorMaps have one sample row per atom slot of the batch (padding included, in
batch-global order), with samples :meth:`Systems.samples`; edge TensorMaps have one row per
pair slot, with samples :meth:`NeighborList.samples`. Padding rows of every output are exactly 0.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from .. import o3
from ..block import TensorBlock
from ..labels import Labels
from ..tensormap import TensorMap
from ._neighbors import NeighborList
from ._systems import Systems

__all__ = ["edge_spherical_harmonics", "edge_vectors", "gather", "scatter", "sum_over_atoms"]


def _xyz() -> Labels:
    return Labels([o3.XYZ], np.arange(3, dtype=np.int32).reshape(-1, 1))


def _o3_mu(l: int) -> Labels:
    return Labels([o3.O3_MU], np.arange(-l, l + 1, dtype=np.int32).reshape(-1, 1))


def edge_vectors(pairs: NeighborList) -> TensorMap:
    """The pair vectors as a TensorMap, in metatensor's neighbour-list layout.

    Returns:
        keys ``Labels.single()``, one block of values ``(capacity, 3, 1)`` with samples
        ``pairs.samples()``, components ``[xyz]`` and properties ``Labels(["distance"], [[0]])``.
    """
    block = TensorBlock(
        pairs.vectors[:, :, None],
        pairs.samples(),
        [_xyz()],
        Labels(["distance"], np.zeros((1, 1), dtype=np.int32)),
    )
    return TensorMap(Labels.single(), [block])


def edge_spherical_harmonics(
    pairs: NeighborList,
    lmax: int,
    *,
    normalize: bool = True,
    normalization: str = "component",
    cutoff_envelope: Callable[[jax.Array], jax.Array] | None = None,
) -> TensorMap:
    """Real spherical harmonics of the pair vectors (metatensor basis), one block per order.

    Args:
        pairs: the neighbour list.
        lmax: the largest order ``l``.
        normalize, normalization: as in :func:`eqx_tensor.o3.spherical_harmonics_array`
            (the zero vector of coincident atoms gives finite values and gradients).
        cutoff_envelope: if given, a function of the lengths ``(capacity,)`` returning
            ``(capacity,)`` factors that multiply every block (e.g. a smooth cutoff).

    Returns:
        keys ``(o3_lambda, o3_sigma) = (l, 1)`` for ``l = 0..lmax``; blocks ``(capacity, 2l+1, 1)``
        with samples ``pairs.samples()``, components ``o3_mu`` and one property
        (``Labels.single()``). Padding rows are exactly 0.
    """
    lmax = int(lmax)
    if lmax < 0:
        raise ValueError(f"lmax must be non-negative, got {lmax}")
    harmonics = o3.spherical_harmonics_array(
        lmax, pairs.vectors, normalize=normalize, normalization=normalization
    )
    envelope = None
    if cutoff_envelope is not None:
        envelope = jnp.asarray(cutoff_envelope(pairs.lengths()))
        if envelope.shape != (pairs.capacity,):
            raise ValueError(
                f"cutoff_envelope must return shape ({pairs.capacity},) for the lengths, got "
                f"{envelope.shape}"
            )
    values = _masked_harmonics(tuple(harmonics[l] for l in range(lmax + 1)), pairs.mask, envelope)
    samples = pairs.samples()
    blocks = [TensorBlock(v, samples, [_o3_mu(l)], Labels.single()) for l, v in enumerate(values)]
    keys = Labels(
        [o3.O3_LAMBDA, o3.O3_SIGMA], np.array([[l, 1] for l in range(lmax + 1)], dtype=np.int32)
    )
    return TensorMap(keys, blocks)


@jax.jit
def _masked_harmonics(
    harmonics: tuple[jax.Array, ...], mask: jax.Array, envelope: jax.Array | None
) -> tuple[jax.Array, ...]:
    """``(capacity, 2l+1, 1)`` blocks: harmonics times the envelope, padding rows exactly 0."""
    out = []
    for y in harmonics:
        if envelope is not None:
            y = y * envelope.astype(y.dtype)[:, None]
        # where, not a product with the mask: a NaN/inf envelope on a padding row stays out
        out.append(jnp.where(mask[:, None], y, 0)[:, :, None])
    return tuple(out)


def _check_no_gradients(tensor: TensorMap, function: str) -> None:
    for key, block in tensor.items():
        if block.gradients_list():
            raise ValueError(
                f"{function} does not handle explicit gradients, but block {key} has gradients "
                f"{block.gradients_list()}: remove them first (eqx_tensor.remove_gradients) and "
                "differentiate with jax.grad instead"
            )


def _check_rows(tensor: TensorMap, expected: int | None, what: str, function: str) -> int | None:
    """Check every block has the same number of samples (``expected`` if given)."""
    for key, block in tensor.items():
        n = block.values.shape[0]
        if expected is None:
            expected = n
        elif n != expected:
            raise ValueError(f"{function}: block {key} has {n} samples but {what} {expected} rows")
    return expected


def _atom_index(pairs: NeighborList, atom: str) -> jax.Array:
    if atom == "first":
        return pairs.first_atom
    if atom == "second":
        return pairs.second_atom
    raise ValueError(f"atom must be 'first' or 'second', got {atom!r}")


def gather(nodes: TensorMap, pairs: NeighborList, atom: str = "second") -> TensorMap:
    """Per-pair copies of per-atom features: row ``p`` is the row of atom ``second_atom[p]``.

    Args:
        nodes: node TensorMap; every block has one sample row per atom slot of the batch
            (``n_atoms`` rows, padding included, in batch-global order, as
            :meth:`Systems.samples`). No explicit gradients.
        pairs: the neighbour list.
        atom: ``"second"`` (the neighbour, default) or ``"first"`` (the centre).

    Returns:
        same keys, components and properties; blocks ``(capacity, ...)`` with samples
        ``pairs.samples()``; padding rows exactly 0.
    """
    index = _atom_index(pairs, atom)
    _check_no_gradients(nodes, "gather")
    _check_rows(nodes, None, "the other blocks (one row per atom slot) have", "gather")
    values = _gather_values(tuple(jnp.asarray(b.values) for b in nodes), index, pairs.mask)
    samples = pairs.samples()
    blocks = [b.with_arrays(v, samples=samples) for b, v in zip(nodes, values)]
    return _like(nodes, blocks)


def scatter(
    edges: TensorMap,
    pairs: NeighborList,
    systems: Systems,
    atom: str = "first",
    normalization: float | jax.Array | None = None,
) -> TensorMap:
    """Sum of per-pair features onto atoms: atom ``i`` gets the rows of the pairs with
    ``first_atom == i`` (``segment_sum``), padding pairs contributing exactly nothing.

    Args:
        edges: edge TensorMap; every block has ``pairs.capacity`` sample rows. No explicit
            gradients.
        pairs: the neighbour list.
        systems: the batch (gives the number of atom slots and the output samples).
        atom: ``"first"`` (the centre, default) or ``"second"``.
        normalization: if given, the sums are divided by it (e.g. ``sqrt(num_neighbors)``).

    Returns:
        same keys, components and properties; blocks ``(n_atoms, ...)`` with samples
        ``systems.samples()``; atoms without pairs (padding atoms among them) are exactly 0.
    """
    index = _atom_index(pairs, atom)
    _check_no_gradients(edges, "scatter")
    _check_rows(edges, pairs.capacity, "the neighbour list has", "scatter")
    # padding pairs go to the out-of-range segment n_atoms, which segment_sum drops
    values = _segment_sums(
        tuple(jnp.asarray(b.values) for b in edges), index, pairs.mask, systems.n_atoms
    )
    if normalization is not None:
        values = _divide(values, normalization)
    samples = systems.samples()
    blocks = [b.with_arrays(v, samples=samples) for b, v in zip(edges, values)]
    return _like(edges, blocks)


def sum_over_atoms(nodes: TensorMap, systems: Systems) -> TensorMap:
    """Per-system sums of node features, padding atoms excluded.

    Args:
        nodes: node TensorMap, every block with ``systems.n_atoms`` rows. No explicit gradients.
        systems: the batch.

    Returns:
        same keys, components and properties; blocks ``(n_systems, ...)`` with dynamic samples
        ``Labels(["system"], [[0], ..., [n_systems - 1]])``.
    """
    _check_no_gradients(nodes, "sum_over_atoms")
    _check_rows(nodes, systems.n_atoms, "the systems have", "sum_over_atoms")
    n_systems = systems.n_systems
    values = _segment_sums(
        tuple(jnp.asarray(b.values) for b in nodes), systems.system, systems.atom_mask, n_systems
    )
    samples = Labels(["system"], jnp.arange(n_systems, dtype=jnp.int32)[:, None])
    blocks = [b.with_arrays(v, samples=samples) for b, v in zip(nodes, values)]
    return _like(nodes, blocks)


# jitted so that eager calls compile once per set of block shapes instead of once per operation
@jax.jit
def _gather_values(
    values: tuple[jax.Array, ...], index: jax.Array, mask: jax.Array
) -> tuple[jax.Array, ...]:
    out = []
    for v in values:
        row_mask = mask.reshape((-1,) + (1,) * (v.ndim - 1))
        out.append(jnp.where(row_mask, v[index], 0))
    return tuple(out)


@partial(jax.jit, static_argnums=3)
def _segment_sums(
    values: tuple[jax.Array, ...], index: jax.Array, mask: jax.Array, n_segments: int
) -> tuple[jax.Array, ...]:
    """Sums of the rows with ``mask`` into ``n_segments`` segments; masked rows contribute
    nothing (their segment is out of range and dropped, and their values are zeroed so that
    NaN or inf there stays out, gradients included)."""
    index = jnp.where(mask, index, n_segments)
    out = []
    for v in values:
        row_mask = mask.reshape((-1,) + (1,) * (v.ndim - 1))
        out.append(jax.ops.segment_sum(jnp.where(row_mask, v, 0), index, n_segments))
    return tuple(out)


@jax.jit
def _divide(values: tuple[jax.Array, ...], by: jax.Array) -> tuple[jax.Array, ...]:
    return tuple(v / jnp.asarray(by, v.dtype) for v in values)


def _like(tensor: TensorMap, blocks: list[TensorBlock]) -> TensorMap:
    result = TensorMap(tensor.keys, blocks)
    for key, value in tensor.info().items():
        result.set_info(key, value)
    return result
