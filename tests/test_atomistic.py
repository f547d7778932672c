"""eqx_tensor.atomistic: systems, neighbour lists against ASE and NumPy, edge features, messages."""

import itertools

import ase
import ase.neighborlist
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import FLOAT, assert_close, tol

import eqx_tensor as eqt
from eqx_tensor import o3
from eqx_tensor.atomistic import (
    NeighborList,
    Systems,
    _neighbors,
    edge_spherical_harmonics,
    edge_vectors,
    gather,
    join_systems,
    neighbor_list,
    scatter,
    sum_over_atoms,
)

# ------------------------------------------------------------------------------- references


def reference_pairs(positions, cell, pbc, cutoff, n_range=4):
    """Brute-force O(N^2) pairs {(i, j, S): vector}, shifts in a generous range."""
    positions = np.asarray(positions, dtype=np.float64)
    ranges = [range(-n_range, n_range + 1) if p else range(1) for p in pbc]
    shifts = np.array(list(itertools.product(*ranges)), dtype=np.int64)
    offsets = shifts @ np.asarray(cell, dtype=np.float64)
    # vectors[k, i, j] = positions[j] - positions[i] + shift_k @ cell
    vectors = positions[None, None, :] - positions[None, :, None] + offsets[:, None, None]
    out = {}
    for k, i, j in zip(*np.nonzero(np.linalg.norm(vectors, axis=-1) < cutoff)):
        shift = tuple(int(x) for x in shifts[k])
        if i != j or any(shift):
            out[(int(i), int(j), shift)] = vectors[k, i, j]
    return out


def ase_pairs(atoms, cutoff):
    i, j, S, D = ase.neighborlist.neighbor_list("ijSD", atoms, cutoff)
    return {(int(a), int(b), tuple(int(x) for x in s)): d for a, b, s, d in zip(i, j, S, D)}


def as_dict(pairs: NeighborList, system=None, offset=0):
    """{(i, j, S): vector} of the real pairs (of one system, indices relative to ``offset``)."""
    mask = np.array(pairs.mask)
    if system is not None:
        mask &= np.asarray(pairs.system) == system
    first = np.asarray(pairs.first_atom)[mask] - offset
    second = np.asarray(pairs.second_atom)[mask] - offset
    shifts = np.asarray(pairs.cell_shifts)[mask]
    vectors = np.asarray(pairs.vectors)[mask]
    out = {}
    for i, j, s, v in zip(first, second, shifts, vectors):
        key = (int(i), int(j), tuple(int(x) for x in s))
        assert key not in out, f"pair {key} appears twice"
        out[key] = v
    return out


def assert_same_pairs(ours, reference, atol=1e-12):
    missing, extra = sorted(set(reference) - set(ours)), sorted(set(ours) - set(reference))
    assert not missing and not extra, f"missing {missing[:5]}, extra {extra[:5]}"
    for key, vector in reference.items():
        assert_close(ours[key], vector, rtol=0, atol=atol)


def random_atoms(rng, n, cell, pbc, outside=0.0):
    """``n`` random atoms in the cell (a box of side 4 without a cell), some outside it."""
    cell = np.asarray(cell, dtype=np.float64)
    box = cell if np.any(cell) else 4.0 * np.eye(3)
    fractional = rng.uniform(-outside, 1 + outside, (n, 3))
    return ase.Atoms(numbers=rng.integers(1, 9, n), positions=fractional @ box, cell=cell, pbc=pbc)


TRICLINIC = np.array([[4.0, 0.0, 0.0], [1.3, 3.6, 0.0], [-0.7, 0.9, 3.9]])
CASES = {
    "non-periodic": (np.zeros((3, 3)), [False, False, False], 12, 2.5, 0.0),
    "periodic": (4.2 * np.eye(3), [True, True, True], 10, 2.8, 0.0),
    "mixed-pbc": (TRICLINIC, [True, False, True], 9, 3.0, 0.0),
    "triclinic": (TRICLINIC, [True, True, True], 8, 3.3, 0.0),
    "small-cell": (0.35 * TRICLINIC, [True, True, True], 3, 3.1, 0.0),
    "unwrapped": (TRICLINIC, [True, True, True], 6, 2.9, 0.6),
}
# one shape for most lists below, so that the compiled neighbour list is reused
SLOTS, CAPACITY, SHIFTS = 12, 1024, (4, 4, 4)


def build(systems, cutoff, **kwargs):
    """Neighbour list of ``systems`` padded to SLOTS atoms, with CAPACITY and SHIFTS."""
    padded = join_systems([systems], atom_capacity=SLOTS)
    return padded, neighbor_list(padded, cutoff, capacity=CAPACITY, max_shifts=SHIFTS, **kwargs)


def sorted_rows(pairs):
    rows = np.concatenate(
        [
            np.stack([pairs.system, pairs.first_atom, pairs.second_atom], axis=1),
            np.asarray(pairs.cell_shifts),
        ],
        axis=1,
    )
    return rows, np.lexsort(rows.T[::-1])


@pytest.mark.parametrize("case", list(CASES))
def test_neighbor_list_matches_ase_and_numpy(case):
    cell, pbc, n, cutoff, outside = CASES[case]
    rng = np.random.default_rng(sum(map(ord, case)))
    atoms = random_atoms(rng, n, cell, pbc, outside)
    systems = Systems.from_ase(atoms)
    assert systems.positions.dtype == FLOAT

    _, pairs = build(systems, cutoff)
    n_pairs = int(pairs.n_pairs)
    assert not bool(pairs.overflow) and 0 < n_pairs < CAPACITY
    assert pairs.vectors.dtype == FLOAT
    ours = as_dict(pairs)
    reference = ase_pairs(atoms, cutoff)
    assert_same_pairs(ours, reference)
    assert_same_pairs(ours, reference_pairs(atoms.positions, cell, pbc, cutoff, n_range=8))

    # the default shift range covers every pair found (and fits the fixed one used here)
    default = _neighbors._default_max_shifts(systems, cutoff)
    needed = np.abs(np.array([s for _, _, s in reference])).max(axis=0)
    assert (needed <= default).all() and (np.array(default) <= SHIFTS).all(), (needed, default)
    assert all(d == 0 for d, p in zip(default, pbc) if not p)
    if case == "small-cell":
        # several images of the same neighbour, and images of an atom itself
        images = {}
        for i, j, _ in ours:
            images[(i, j)] = images.get((i, j), 0) + 1
        assert max(images.values()) > 2
        assert any(i == j for i, j, _ in ours)

    # deterministic order: sorted by (system, first, second, shift), found pairs first
    rows, order = sorted_rows(pairs)
    np.testing.assert_array_equal(order[:n_pairs], np.arange(n_pairs))
    np.testing.assert_array_equal(pairs.mask, np.arange(CAPACITY) < n_pairs)
    samples = pairs.samples()
    assert samples.is_dynamic and samples.names == list(_neighbors.SAMPLE_NAMES)
    np.testing.assert_array_equal(np.asarray(samples.values)[:n_pairs], rows[:n_pairs])

    # half list: each unordered pair once, with featomic's rule
    _, half_pairs = build(systems, cutoff, full_list=False)
    assert not half_pairs.full_list
    half = as_dict(half_pairs)
    assert len(half) * 2 == len(ours)
    for i, j, s in half:
        assert i < j or (i == j and s > (0, 0, 0)), (i, j, s)
        np.testing.assert_array_equal(half[(i, j, s)], ours[(i, j, s)])
    doubled = set(half) | {(j, i, tuple(-x for x in s)) for i, j, s in half}
    assert doubled == set(ours)


def test_batch_of_systems_with_padding_and_default_arguments():
    rng = np.random.default_rng(2)
    frames = [
        random_atoms(rng, 5, np.zeros((3, 3)), False),
        random_atoms(rng, 8, TRICLINIC, True, outside=0.3),
        random_atoms(rng, 1, 0.5 * TRICLINIC, [True, False, True]),
        random_atoms(rng, 6, 4.0 * np.eye(3), [False, True, True]),
    ]
    sizes = [len(f) for f in frames]
    starts = np.cumsum([0, *sizes])
    systems = join_systems([Systems.from_ase(f) for f in frames], atom_capacity=24)
    assert systems.n_atoms == 24 and systems.n_systems == 4
    np.testing.assert_array_equal(
        systems.system, np.repeat(np.arange(5), [*sizes, 24 - sum(sizes)])
    )
    np.testing.assert_array_equal(systems.atom_mask, np.arange(24) < sum(sizes))
    np.testing.assert_array_equal(
        systems.samples().values[:, 1],
        np.concatenate([np.arange(n) for n in [*sizes, 24 - sum(sizes)]]),
    )

    # eager defaults: shifts derived from the cells, capacity exactly the number of pairs
    cutoff = 2.7
    exact = neighbor_list(systems, cutoff)
    n = exact.capacity
    assert int(exact.n_pairs) == n and np.asarray(exact.mask).all()
    for s, frame in enumerate(frames):
        assert_same_pairs(as_dict(exact, system=s, offset=starts[s]), ase_pairs(frame, cutoff))
    _, order = sorted_rows(exact)
    np.testing.assert_array_equal(order, np.arange(n))
    # samples: indices within the system
    samples = np.asarray(exact.samples().values)
    np.testing.assert_array_equal(samples[:, 1], exact.first_atom - starts[exact.system])
    np.testing.assert_array_equal(samples[:, 2], exact.second_atom - starts[exact.system])


def test_chunked_candidates_match(monkeypatch):
    rng = np.random.default_rng(3)
    systems = Systems.from_ase(random_atoms(rng, 11, TRICLINIC, [True, False, True]))
    _, whole = build(systems, 3.0)
    monkeypatch.setattr(_neighbors, "_CHUNK_ENTRIES", 2000)  # a few rows per chunk
    _, chunked = build(systems, 3.0)
    for field in ("first_atom", "second_atom", "cell_shifts", "vectors", "system", "n_pairs"):
        np.testing.assert_array_equal(getattr(chunked, field), getattr(whole, field))


def test_overflow_eager_and_jit():
    rng = np.random.default_rng(4)
    systems = join_systems(
        [Systems.from_ase(random_atoms(rng, 10, 4.0 * np.eye(3), True))], atom_capacity=SLOTS
    )
    n = int(build(systems, 2.5)[1].n_pairs)
    with pytest.raises(RuntimeError, match=rf"found {n} pairs .* capacity is 5.*capacity="):
        neighbor_list(systems, 2.5, capacity=5, max_shifts=SHIFTS)

    pairs = jax.jit(lambda s: neighbor_list(s, 2.5, capacity=5, max_shifts=SHIFTS))(systems)
    assert bool(pairs.overflow) and int(pairs.n_pairs) == n and pairs.capacity == 5
    assert np.asarray(pairs.mask).all()
    with pytest.raises(RuntimeError, match=f"found {n} pairs"):
        pairs.raise_if_overflow()
    with pytest.raises(ValueError, match="needs a static capacity="):
        jax.jit(lambda s: neighbor_list(s, 2.5).vectors)(systems)


def test_float32():
    rng = np.random.default_rng(5)
    atoms = random_atoms(rng, 9, TRICLINIC, [True, True, False])
    # float32 positions give float32 vectors, the same pairs up to float32 rounding
    systems32 = Systems.from_arrays(
        np.asarray(atoms.positions, np.float32), atoms.numbers, atoms.cell[:], atoms.pbc
    )
    assert systems32.positions.dtype == jnp.float32 and systems32.cells.dtype == jnp.float32
    _, pairs32 = build(systems32, 3.0)
    assert pairs32.vectors.dtype == jnp.float32 and pairs32.lengths().dtype == jnp.float32
    assert_same_pairs(as_dict(pairs32), ase_pairs(atoms, 3.0), atol=1e-5)
    for block in edge_spherical_harmonics(pairs32, 2):
        assert block.values.dtype == jnp.float32


def frames_of(rng, n_frames, n_atoms):
    """``n_frames`` frames of the same ``n_atoms`` particles (2 padding slots), NumPy leaves."""
    base = rng.uniform(0, 3.0, (n_atoms, 3))
    systems = join_systems([Systems.from_arrays(base, np.arange(n_atoms) % 3)], n_atoms + 2)
    frames = jax.tree.map(lambda x: np.broadcast_to(x, (n_frames, *x.shape)), systems)
    positions = np.zeros((n_frames, n_atoms + 2, 3))
    positions[:, :n_atoms] = base + 0.3 * rng.normal(size=(n_frames, n_atoms, 3))
    return dataclass_replace(frames, positions=positions)


def dataclass_replace(obj, **changes):
    import dataclasses

    return dataclasses.replace(obj, **changes)


def test_vmap_over_frames_matches_loop():
    rng = np.random.default_rng(6)
    frames = frames_of(rng, 4, 8)
    features = rng.normal(size=(4, 10, 3, 2))  # 8 atoms + 2 padding slots

    def step(systems, x):
        pairs = neighbor_list(systems, 2.0, capacity=64)
        nodes = node_tensor(x, systems)
        edges = gather(nodes, pairs)
        out = scatter(edges, pairs, systems, normalization=2.0)
        return pairs, out.block(1).values, sum_over_atoms(out, systems).block(1).values

    # jit + vmap against eager calls, frame by frame
    batched = jax.tree.map(np.asarray, jax.jit(jax.vmap(step))(frames, features))
    for f in range(4):
        frame = jax.tree.map(lambda x, f=f: x[f], frames)
        single = step(frame, features[f])
        pairs = jax.tree.map(lambda x, f=f: x[f], batched[0])
        np.testing.assert_array_equal(pairs.first_atom, single[0].first_atom)
        np.testing.assert_array_equal(pairs.n_pairs, single[0].n_pairs)
        np.testing.assert_allclose(pairs.vectors, single[0].vectors, rtol=0, atol=1e-14)
        np.testing.assert_allclose(batched[1][f], single[1], rtol=1e-13, atol=1e-14)
        np.testing.assert_allclose(batched[2][f], single[2], rtol=1e-13, atol=1e-14)
    # the frames really differ, and all fit
    assert len({int(n) for n in batched[0].n_pairs}) > 1 and (batched[0].n_pairs <= 64).all()


# ------------------------------------------------------------------------------- gradients


def smooth_energy(systems, cutoff=3.0, max_shifts=None):
    pairs = neighbor_list(systems, cutoff, capacity=400, max_shifts=max_shifts)
    r = pairs.lengths()
    envelope = jnp.where(pairs.mask, jnp.cos(0.5 * jnp.pi * r / cutoff) ** 2, 0)
    sh = edge_spherical_harmonics(pairs, 2)
    angular = jnp.sum(sh.block(o3_lambda=2).values[:, :, 0] ** 2, axis=1) + jnp.sum(
        pairs.vectors * jnp.array([0.3, -0.2, 0.5], pairs.vectors.dtype), axis=1
    )
    return jnp.sum(envelope * (jnp.exp(-r) + angular))


def test_gradients_against_finite_differences():
    rng = np.random.default_rng(7)
    atoms = random_atoms(rng, 6, TRICLINIC, [True, False, True])
    systems = Systems.from_ase(atoms)
    shifts = _neighbors._default_max_shifts(systems, 3.0)

    def moved_energy(positions, cells):
        moved = dataclass_replace(systems, positions=positions, cells=cells)
        return smooth_energy(moved, max_shifts=shifts)

    # one compilation serves the gradient and the finite differences
    value_and_grad = jax.jit(jax.value_and_grad(moved_energy, argnums=(0, 1)))
    _, (grad_positions, grad_cells) = value_and_grad(systems.positions, systems.cells)

    def energy(positions, cells):
        return value_and_grad(positions, cells)[0]

    # float32: the rounding of the energy (~40 x 6e-8) over the step sets the error (~1e-3)
    eps, rtol, atol = tol(1e-6, 1e-2), tol(1e-6, 1e-3), tol(1e-8, 1e-3)
    for index in [(0, 0), (2, 1), (5, 2)]:
        step = jnp.zeros_like(systems.positions).at[index].set(eps)
        fd = (
            energy(systems.positions + step, systems.cells)
            - energy(systems.positions - step, systems.cells)
        ) / (2 * eps)
        np.testing.assert_allclose(grad_positions[index], fd, rtol=rtol, atol=atol)
    for index in [(0, 0, 0), (0, 2, 1), (0, 1, 1)]:
        step = jnp.zeros_like(systems.cells).at[index].set(eps)
        fd = (
            energy(systems.positions, systems.cells + step)
            - energy(systems.positions, systems.cells - step)
        ) / (2 * eps)
        np.testing.assert_allclose(grad_cells[index], fd, rtol=rtol, atol=atol)


def test_gradients_finite_with_coincident_isolated_and_padding():
    positions = np.array([[0.0, 0.0, 0.0], [0.0, 0.0, 0.0], [1.0, 0.5, 0.0], [20.0, 0, 0]])
    one = Systems.from_arrays(positions, [1, 1, 2, 3])
    systems = join_systems([one, Systems.from_arrays(positions[:1])], atom_capacity=8)

    def loss(positions):
        moved = dataclass_replace(systems, positions=positions)
        pairs = neighbor_list(moved, 2.0, capacity=16)
        nodes = node_tensor(jnp.tanh(positions)[:, :, None], moved)
        messages = gather(nodes, pairs)
        sh = edge_spherical_harmonics(pairs, 3, cutoff_envelope=lambda r: jnp.cos(r))
        out = scatter(messages, pairs, moved)
        total = sum_over_atoms(out, moved).block(1).values.sum()
        return total + pairs.lengths().sum() + sum(b.values.sum() for b in sh)

    value, grad = jax.jit(jax.value_and_grad(loss))(systems.positions)
    assert np.isfinite(value) and np.isfinite(np.asarray(grad)).all()
    assert not np.asarray(grad)[5:].any()  # padding atoms: exactly zero gradient
    # the zero-length pair has a zero, finite length gradient
    zero = jnp.zeros((1, 3))
    g = jax.grad(lambda v: neighbor_list_from_vectors(v).lengths().sum())(zero)
    np.testing.assert_array_equal(g, 0)


def neighbor_list_from_vectors(vectors):
    n = vectors.shape[0]
    zeros = jnp.zeros((n,), jnp.int32)
    fields = dict(first_atom=zeros, second_atom=zeros, system=zeros, atom_offset=zeros)
    return NeighborList(
        **fields,
        cell_shifts=jnp.zeros((n, 3), jnp.int32),
        vectors=vectors,
        mask=jnp.ones((n,), bool),
        n_pairs=jnp.int32(n),
        cutoff=1.0,
        full_list=True,
    )


# ------------------------------------------------------------------------------- graph ops


def node_tensor(values, systems, n_blocks=2):
    """A node TensorMap with ``n_blocks`` blocks of shape (n_atoms, *values.shape[1:])."""
    values = jnp.asarray(values)
    blocks = []
    for k in range(n_blocks):
        components = [
            eqt.Labels([f"c{a}"], np.arange(n, dtype=np.int32)[:, None])
            for a, n in enumerate(values.shape[1:-1])
        ]
        properties = eqt.Labels.range("p", values.shape[-1])
        blocks.append(
            eqt.TensorBlock((k + 1.0) * values, systems.samples(), components, properties)
        )
    return eqt.TensorMap(eqt.Labels.range("key", n_blocks), blocks)


def test_gather_scatter_against_numpy_loops():
    rng = np.random.default_rng(8)
    frames = [random_atoms(rng, n, TRICLINIC, True) for n in (5, 3)]
    systems = join_systems([Systems.from_ase(f) for f in frames], atom_capacity=10)
    pairs = neighbor_list(systems, 3.2, capacity=300)
    # in the run's precision: gathered values must come back bit for bit
    x = rng.normal(size=(10, 3, 4)).astype(FLOAT)
    nodes = node_tensor(x, systems)

    mask = np.asarray(pairs.mask)
    for atom, field in (("second", pairs.second_atom), ("first", pairs.first_atom)):
        field = np.asarray(field)
        edges = gather(nodes, pairs, atom=atom)
        assert edges.keys == nodes.keys
        expected = np.zeros((pairs.capacity, 3, 4))
        for p in range(pairs.capacity):
            if mask[p]:
                expected[p] = x[int(field[p])]
        np.testing.assert_array_equal(edges.block(0).values, expected)
        np.testing.assert_array_equal(edges.block(1).values, 2 * expected)
        np.testing.assert_array_equal(edges.block(0).samples.values, pairs.samples().values)

    messages = rng.normal(size=(pairs.capacity, 3, 4)).astype(FLOAT)
    edges = eqt.TensorMap(
        eqt.Labels.single(),
        [
            eqt.TensorBlock(
                messages, pairs.samples(), nodes.block(0).components, nodes.block(0).properties
            )
        ],
    )
    for atom, field in (("first", pairs.first_atom), ("second", pairs.second_atom)):
        field = np.asarray(field)
        out = scatter(edges, pairs, systems, atom=atom, normalization=np.sqrt(3.0))
        expected = np.zeros((10, 3, 4))
        for p in range(pairs.capacity):
            if mask[p]:
                expected[int(field[p])] += messages[p]
        assert_close(out.block().values, expected / np.sqrt(3.0), rtol=1e-13)
        np.testing.assert_array_equal(out.block().samples.values, systems.samples().values)
        assert not np.asarray(out.block().values)[8:].any()

    totals = sum_over_atoms(nodes, systems)
    assert_close(totals.block(0).values[0], x[:5].sum(0), rtol=1e-13)
    assert_close(totals.block(0).values[1], x[5:8].sum(0), rtol=1e-13)
    np.testing.assert_array_equal(totals.block(0).samples.values, [[0], [1]])


def test_padding_contributes_exactly_zero():
    rng = np.random.default_rng(9)
    atoms = random_atoms(rng, 7, 4.0 * np.eye(3), True)
    tight = Systems.from_ase(atoms)
    pairs = neighbor_list(tight, 2.6)
    n = pairs.capacity
    padded, padded_pairs = build(tight, 2.6)  # 5 padding atoms, CAPACITY - n padding pairs

    x = rng.normal(size=(7, 2, 3))
    # garbage in padding atoms and padding pairs must not leak anywhere
    xp = np.concatenate([x, np.full((SLOTS - 7, 2, 3), 1e30)])
    edges = gather(node_tensor(x, tight), pairs)
    edges_p = gather(node_tensor(xp, padded), padded_pairs)
    # padding pairs: the documented fill values, after the same pairs in the same order
    pad = slice(n, None)
    assert not np.asarray(padded_pairs.mask)[pad].any() and np.asarray(padded_pairs.mask)[:n].all()
    assert (np.asarray(padded_pairs.system)[pad] == 1).all()
    for field in ("first_atom", "second_atom", "cell_shifts", "vectors"):
        assert not np.asarray(getattr(padded_pairs, field))[pad].any()
        np.testing.assert_array_equal(getattr(padded_pairs, field)[:n], getattr(pairs, field))
    samples = np.asarray(padded_pairs.samples().values)
    np.testing.assert_array_equal(samples[:n], pairs.samples().values)
    eqt.Labels(padded_pairs.samples().names, samples)  # static labels check row uniqueness

    np.testing.assert_array_equal(edges_p.block(1).values[:n], edges.block(1).values)
    assert not np.asarray(edges_p.block(1).values)[n:].any()

    messages = rng.normal(size=(n, 2, 3))
    messages_p = np.concatenate([messages, np.full((CAPACITY - n, 2, 3), np.nan)])
    block = edges.block(0)
    out = scatter(edge_tensor(messages, pairs, block), pairs, tight)
    out_p = scatter(edge_tensor(messages_p, padded_pairs, block), padded_pairs, padded)
    np.testing.assert_array_equal(out_p.block().values[:7], out.block().values)
    assert not np.asarray(out_p.block().values)[7:].any()
    total = sum_over_atoms(out, tight).block().values
    garbage = np.concatenate([np.asarray(out_p.block().values)[:7], np.full((5, 2, 3), np.inf)])
    total_p = sum_over_atoms(node_tensor(garbage, padded, 1), padded)
    np.testing.assert_array_equal(total_p.block().values, total)


def edge_tensor(values, pairs, like):
    block = eqt.TensorBlock(jnp.asarray(values), pairs.samples(), like.components, like.properties)
    return eqt.TensorMap(eqt.Labels.single(), [block])


def test_atom_permutation_permutes_outputs():
    rng = np.random.default_rng(10)
    positions = rng.uniform(0, 3, (9, 3))
    x = rng.normal(size=(SLOTS, 3, 2))
    perm = np.concatenate([rng.permutation(9), np.arange(9, SLOTS)])

    def run(positions, x):
        systems, pairs = build(Systems.from_arrays(positions), 2.2)
        edges = gather(node_tensor(x, systems), pairs)
        sh = edge_spherical_harmonics(pairs, 1).block(o3_lambda=1).values
        weighted = edge_tensor(edges.block(1).values * sh[:, :1], pairs, edges.block(1))
        return scatter(weighted, pairs, systems).block().values

    out = run(positions, x)
    out_perm = run(positions[perm[:9]], x[perm])
    assert_close(out_perm, out[perm], rtol=1e-12, atol=1e-13)


def test_edge_features_and_rotation():
    rng = np.random.default_rng(11)
    systems, pairs = build(Systems.from_arrays(rng.uniform(0, 3, (8, 3))), 2.4)
    n = int(pairs.n_pairs)

    block = edge_vectors(pairs).block()
    assert block.values.shape == (CAPACITY, 3, 1)
    assert block.components[0] == eqt.Labels(["xyz"], [[0], [1], [2]])
    assert block.properties == eqt.Labels(["distance"], [[0]])
    np.testing.assert_array_equal(block.values[:, :, 0], pairs.vectors)
    np.testing.assert_array_equal(block.samples.values, pairs.samples().values)

    envelope = lambda r: jnp.exp(-r)  # noqa: E731
    sh = edge_spherical_harmonics(pairs, 3, cutoff_envelope=envelope)
    reference = o3.spherical_harmonics_array(3, pairs.vectors, normalization="component")
    lengths = np.linalg.norm(np.asarray(pairs.vectors), axis=1)
    assert sh.keys.values.tolist() == [[l, 1] for l in range(4)]
    for l in range(4):
        values = sh.block(o3_lambda=l).values
        assert values.shape == (CAPACITY, 2 * l + 1, 1)
        np.testing.assert_array_equal(
            sh.block(o3_lambda=l).components[0].values[:, 0], np.arange(-l, l + 1)
        )
        expected = np.asarray(reference[l])[:n] * np.exp(-lengths[:n])[:, None]
        assert_close(values[:n, :, 0], expected, rtol=1e-13, atol=1e-14)
        assert not np.asarray(values)[n:].any()  # Y_0 of padding's zero vector is masked
    plain = edge_spherical_harmonics(pairs, 1, normalization="integral", normalize=False)
    assert_close(
        plain.block(o3_lambda=1).values[:, :, 0],
        o3.spherical_harmonics_array(1, pairs.vectors, normalize=False)[1],
        rtol=1e-13,
    )

    # rotating the positions rotates the edge blocks: Y_l(R r) = D_l(R) Y_l(r)
    R = np.asarray(o3.random_rotation(jax.random.key(0), dtype=FLOAT))
    rotated_systems = dataclass_replace(systems, positions=np.asarray(systems.positions) @ R.T)
    rotated_pairs = neighbor_list(rotated_systems, 2.4, capacity=CAPACITY, max_shifts=SHIFTS)
    np.testing.assert_array_equal(rotated_pairs.first_atom, pairs.first_atom)
    np.testing.assert_array_equal(rotated_pairs.second_atom, pairs.second_atom)
    rotated = edge_spherical_harmonics(rotated_pairs, 3, cutoff_envelope=envelope)
    for l, D in enumerate(o3.wigner_D_all(3, R)):
        expected = np.einsum("mn,pnq->pmq", D, sh.block(o3_lambda=l).values)
        assert_close(rotated.block(o3_lambda=l).values, expected, rtol=1e-10, atol=1e-12)
    assert_close(
        edge_vectors(rotated_pairs).block().values[:, :, 0], pairs.vectors @ R.T, atol=1e-12
    )


def test_graph_errors():
    systems, pairs = build(Systems.from_arrays(np.eye(3)), 2.0)
    good = node_tensor(np.ones((SLOTS, 2)), systems, 1)
    four = eqt.Labels(["system", "atom"], np.stack([np.zeros(4), np.arange(4)], axis=1).astype(int))
    bad = eqt.TensorMap(
        eqt.Labels.range("key", 2),
        [good.block(), eqt.TensorBlock(np.ones((4, 2)), four, [], good.block().properties)],
    )
    with pytest.raises(ValueError, match=r"block LabelsEntry\(key=1\) has 4 samples"):
        gather(bad, pairs)
    with pytest.raises(ValueError, match="atom must be 'first' or 'second'"):
        gather(good, pairs, atom="third")
    with pytest.raises(ValueError, match=f"samples but the neighbour list has {CAPACITY} rows"):
        scatter(good, pairs, systems)
    with pytest.raises(ValueError, match=f"has 4 samples but the systems have {SLOTS}"):
        sum_over_atoms(bad, systems)
    block = eqt.TensorBlock(np.ones((SLOTS, 2)), systems.samples(), [], eqt.Labels.range("p", 2))
    block.add_gradient(
        "positions",
        eqt.TensorBlock(np.ones((1, 2)), eqt.Labels.range("sample", 1), [], block.properties),
    )
    with_gradients = eqt.TensorMap(eqt.Labels.single(), [block])
    with pytest.raises(ValueError, match=r"explicit gradients.*remove them"):
        gather(with_gradients, pairs)


# ------------------------------------------------------------------------------- systems


def test_systems_constructors_and_errors():
    positions = np.arange(12.0).reshape(4, 3)
    systems = Systems.from_arrays(positions)
    assert systems.n_atoms == 4 and systems.n_systems == 1
    assert systems.types.dtype == jnp.int32 and not systems.types.any()
    assert not systems.pbc.any() and not systems.cells.any()
    assert systems.positions.dtype == FLOAT
    assert Systems.from_arrays(positions.astype(np.float32)).positions.dtype == jnp.float32
    assert Systems.from_arrays(positions, cell=3 * np.eye(3)).pbc.tolist() == [[True] * 3]
    assert Systems.from_arrays(positions, cell=np.eye(3), pbc=False).pbc.tolist() == [[False] * 3]
    slab = Systems.from_arrays(positions, cell=np.diag([2.0, 2.0, 0.0]))
    assert slab.pbc.tolist() == [[True, True, False]]
    np.testing.assert_array_equal(systems.samples().values, [[0, 0], [0, 1], [0, 2], [0, 3]])

    with pytest.raises(ValueError, match=r"positions must have shape \(n_atoms, 3\)"):
        Systems.from_arrays(np.zeros((4, 2)))
    with pytest.raises(ValueError, match=r"types must have shape \(4,\)"):
        Systems.from_arrays(positions, types=[1, 2])
    with pytest.raises(ValueError, match=r"cell must have shape \(3, 3\)"):
        Systems.from_arrays(positions, cell=np.eye(2))
    with pytest.raises(ValueError, match="pbc must be a bool or 3 bools"):
        Systems.from_arrays(positions, cell=np.eye(3), pbc=[True, False])
    with pytest.raises(ValueError, match="cell vector c is zero"):
        Systems.from_arrays(positions, cell=np.diag([2.0, 2.0, 0.0]), pbc=True)
    with pytest.raises(ValueError, match="atom_capacity=3 is too small: the 2 systems have 5"):
        join_systems([systems, Systems.from_arrays(positions[:1])], atom_capacity=3)
    broken = dataclass_replace(systems, cells=jnp.zeros((2, 3, 3)))
    with pytest.raises(ValueError, match=r"Systems.cells must have shape \(1, 3, 3\)"):
        neighbor_list(broken, 1.0)
    for cutoff in (0.0, -1.0):
        with pytest.raises(ValueError, match="cutoff must be positive"):
            neighbor_list(systems, cutoff)
    degenerate = Systems.from_arrays(positions, cell=[[1.0, 0, 0], [2.0, 0, 0], [0, 0, 1.0]])
    with pytest.raises(ValueError, match="degenerate"):
        neighbor_list(degenerate, 1.0)


def test_from_ase_list_and_samples_under_jit():
    rng = np.random.default_rng(12)
    frames = [random_atoms(rng, n, TRICLINIC, pbc) for n, pbc in ((3, True), (2, False))]
    systems = Systems.from_ase(frames)
    assert systems.n_systems == 2 and systems.n_atoms == 5
    np.testing.assert_array_equal(systems.types, np.concatenate([f.numbers for f in frames]))
    np.testing.assert_array_equal(systems.pbc, [[True] * 3, [False] * 3])
    np.testing.assert_allclose(systems.cells[1], frames[1].cell[:])
    padded = join_systems([systems], atom_capacity=8)
    values = jax.jit(lambda s: s.samples().values)(padded)
    np.testing.assert_array_equal(
        values, [[0, 0], [0, 1], [0, 2], [1, 0], [1, 1], [2, 0], [2, 1], [2, 2]]
    )
    # pytree round trip keeps the static n_systems
    leaves, treedef = jax.tree.flatten(padded)
    assert len(leaves) == 6 and jax.tree.unflatten(treedef, leaves).n_systems == 2
