"""Gated tensor-product point convolutions: equal to e3nn's gate_points_2101, equivariant, safe.

The reference is e3nn's torch ``gate_points_2101.Network`` with its weights copied by
``nn.gate_points_from_e3nn``; outputs are compared in our basis (``o3.change_of_basis``).
"""

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from e3nn.nn.models.gate_points_2101 import Network
from helpers import SLOW_WITH_X64, tol

from eqx_tensor import atomistic, nn, o3

SMALL = dict(
    irreps_in=None,
    irreps_hidden="4x0e+3x0o+4x1e+3x1o+2x2e",
    irreps_out="1x1o+1x0e",
    irreps_node_attr=None,
    irreps_edge_attr="0e+1o+2e",
    layers=2,
    max_radius=2.5,
    number_of_basis=6,
    radial_layers=1,
    radial_neurons=16,
    num_neighbors=5.0,
    num_nodes=8.0,
    reduce_output=False,
)
WITH_INPUTS = dict(
    SMALL,
    irreps_in="2x0e+1x1o",
    irreps_node_attr="2x0e",
    layers=1,
    irreps_out="2x0e+1x1e",
    reduce_output=True,
)
GATE_POINTS = dict(
    irreps_in=None,
    irreps_hidden="8x0e+8x0o+16x1e+16x1o+8x2e+8x2o",
    irreps_out="1x1o",
    irreps_node_attr=None,
    irreps_edge_attr="0e+1o+2e+3o",
    layers=3,
    max_radius=3.5,
    number_of_basis=10,
    radial_layers=1,
    radial_neurons=128,
    num_neighbors=11,
    num_nodes=12,
    reduce_output=False,
)


def _e3nn_network(kwargs, seed=0):
    torch.manual_seed(seed)
    previous = torch.get_default_dtype()  # other test modules rely on their own default
    torch.set_default_dtype(torch.float64)
    try:
        network = Network(**kwargs)
    finally:
        torch.set_default_dtype(previous)
    return network


def _segments(irreps: str):
    import e3nn_jax as e3nn

    return [(o3.irrep_to_key(str(ir)), mul, ir.dim) for mul, ir in e3nn.Irreps(irreps)]


def _to_ours(array: np.ndarray, irreps: str) -> dict:
    """e3nn layout (n, dim), e3nn basis -> {key: (n, 2l+1, mul)} in our basis."""
    blocks, start = {}, 0
    for key, mul, dim in _segments(irreps):
        chunk = array[:, start : start + mul * dim].reshape(len(array), mul, dim)
        blocks[key] = np.einsum("ij,nuj->niu", o3.change_of_basis(key[0]), chunk)
        start += mul * dim
    return blocks


def _tensor(blocks: dict, samples) -> "object":
    from eqx_tensor import Labels, TensorBlock, TensorMap

    keys = Labels(["o3_lambda", "o3_sigma"], np.array(list(blocks), dtype=np.int32))
    out = []
    for (l, _), v in blocks.items():
        mu = Labels(["o3_mu"], np.arange(-l, l + 1, dtype=np.int32).reshape(-1, 1))
        out.append(TensorBlock(jnp.asarray(v), samples, [mu], Labels.range("_", v.shape[-1])))
    return TensorMap(keys, out)


def _systems(n_frames: int, n_atoms: int, seed: int, dtype=np.float64, scale=1.2):
    rng = np.random.default_rng(seed)
    frames = [
        atomistic.Systems.from_arrays(rng.normal(size=(n_atoms, 3)).astype(dtype) * scale)
        for _ in range(n_frames)
    ]
    return atomistic.join_systems(frames)


def _ours_vs_e3nn(kwargs, dtype, n_frames=2, n_atoms=7):
    network = _e3nn_network(kwargs)
    model, params = nn.gate_points_from_e3nn(network, dtype=dtype)
    systems = _systems(n_frames, n_atoms, 1, dtype=np.dtype(dtype))
    rng = np.random.default_rng(2)
    n = systems.n_atoms
    data = {
        "pos": torch.tensor(np.asarray(systems.positions, np.float64), requires_grad=True),
        "batch": torch.tensor(np.asarray(systems.system), dtype=torch.long),
    }
    inputs = {}
    if kwargs["irreps_in"] is not None:
        x = rng.normal(size=(n, sum(d * m for _, m, d in _segments(kwargs["irreps_in"]))))
        data["x"] = torch.tensor(x)
        inputs["node_features"] = _tensor(
            {k: v.astype(dtype) for k, v in _to_ours(x, kwargs["irreps_in"]).items()},
            systems.samples(),
        )
    if kwargs["irreps_node_attr"] is not None:
        z = rng.normal(size=(n, sum(d * m for _, m, d in _segments(kwargs["irreps_node_attr"]))))
        data["z"] = torch.tensor(z)
        inputs["node_attrs"] = _tensor(
            {k: v.astype(dtype) for k, v in _to_ours(z, kwargs["irreps_node_attr"]).items()},
            systems.samples(),
        )
    reference = network(data)
    probe = rng.normal(size=tuple(reference.shape))
    (torch_grad,) = torch.autograd.grad((reference * torch.tensor(probe)).sum(), data["pos"])
    expected = _to_ours(reference.detach().numpy(), kwargs["irreps_out"])
    probe_ours = _to_ours(probe, kwargs["irreps_out"])

    def predict(positions):
        moved = dataclasses.replace(systems, positions=positions)
        pairs = atomistic.neighbor_list(moved, kwargs["max_radius"], capacity=n * (n_atoms - 1))
        return model.apply(params, moved, pairs, **inputs)

    out = jax.jit(predict)(systems.positions)
    grad = jax.jit(
        jax.grad(
            lambda p: sum(
                jnp.sum(predict(p).block(o3_lambda=k[0], o3_sigma=k[1]).values * probe_ours[k])
                for k in probe_ours
            )
        )
    )(systems.positions)
    return out, expected, np.asarray(grad), torch_grad.numpy()


@pytest.mark.parametrize(
    ("kwargs", "dtype"),
    # by default the one-layer network with inputs, in the run's precision (float64 arrays
    # exist only with x64 on); the two-layer one in the slow step
    [
        pytest.param(WITH_INPUTS, np.float64, marks=pytest.mark.x64_only),
        pytest.param(WITH_INPUTS, np.float32, marks=SLOW_WITH_X64),
        pytest.param(SMALL, np.float64, marks=[pytest.mark.slow, pytest.mark.x64_only]),
        pytest.param(SMALL, np.float32, marks=pytest.mark.slow),
    ],
    ids=["with_inputs-f64", "with_inputs-f32", "default_inputs-f64", "default_inputs-f32"],
)
def test_converted_network_equals_e3nn(kwargs, dtype):
    out, expected, grad, torch_grad = _ours_vs_e3nn(kwargs, dtype)
    rtol = 1e-10 if dtype == np.float64 else 1e-5
    scale = max(np.abs(v).max() for v in expected.values())
    for key, values in expected.items():
        block = out.block(o3_lambda=key[0], o3_sigma=key[1])
        assert block.values.dtype == dtype
        np.testing.assert_allclose(block.values, values, atol=rtol * scale, rtol=0)
    np.testing.assert_allclose(grad, torch_grad, atol=rtol * np.abs(torch_grad).max(), rtol=0)


@pytest.mark.slow
def test_converted_gate_points_equals_e3nn():
    out, expected, grad, torch_grad = _ours_vs_e3nn(GATE_POINTS, np.float64, n_frames=2, n_atoms=12)
    np.testing.assert_allclose(out.block(0).values, expected[(1, 1)], atol=1e-10, rtol=0)
    np.testing.assert_allclose(grad, torch_grad, atol=1e-10 * np.abs(torch_grad).max(), rtol=0)


def test_converter_from_state_dict():
    network = _e3nn_network(SMALL, seed=3)
    model, params = nn.gate_points_from_e3nn(network)
    model2, params2 = nn.gate_points_from_e3nn(
        {k: v.clone() for k, v in network.state_dict().items()}, **SMALL
    )
    assert model == model2
    jax.tree.map(np.testing.assert_array_equal, params, params2)


@functools.cache
def _small_model(dtype):
    model = nn.GatePointsNetwork(
        irreps_hidden="4x0e+3x0o+4x1e+3x1o+2x2e+2x2o",
        irreps_out="1x1o+1x1e+1x0e+1x0o+1x2e",
        lmax=2,
        layers=2,
        max_radius=2.5,
        number_of_basis=6,
        radial_neurons=16,
        num_neighbors=5.0,
        reduce_output=False,
    )
    systems = _systems(1, 7, 4, dtype=dtype)
    pairs = atomistic.neighbor_list(systems, 2.5, capacity=42)
    params = jax.jit(model.init)(jax.random.key(0), systems, pairs)
    return model, params, systems


@pytest.mark.parametrize(
    "dtype",
    [
        pytest.param(np.float64, marks=pytest.mark.x64_only),
        pytest.param(np.float32, marks=SLOW_WITH_X64),
    ],
)
def test_network_equivariance_rotation_inversion_translation(dtype):
    model, params, systems = _small_model(dtype)

    @jax.jit
    def predict(positions):
        moved = dataclasses.replace(systems, positions=positions)
        return model.apply(params, moved, atomistic.neighbor_list(moved, 2.5, capacity=42))

    reference = predict(systems.positions)
    rotation = np.asarray(o3.random_rotation(jax.random.key(1)), np.float64)
    shift = np.array([0.3, -1.2, 0.7])
    scale = max(float(jnp.abs(b.values).max()) for b in reference)
    tolerance = 1e-12 if dtype == np.float64 else 1e-5
    for R in (rotation, -rotation, -np.eye(3)):
        moved = predict(jnp.asarray(np.asarray(systems.positions) @ R.T + shift, dtype))
        expected = o3.rotate(reference, R)
        for a, b in zip(moved, expected):
            assert float(jnp.abs(a.values - b.values).max()) < tolerance * max(scale, 1)
    # permuting the atoms permutes the outputs
    perm = np.random.default_rng(5).permutation(systems.n_atoms)
    permuted = predict(systems.positions[perm])
    for a, b in zip(permuted, reference):
        np.testing.assert_allclose(a.values, np.asarray(b.values)[perm], atol=tolerance * scale)


# slow: a gradient of the whole network; finite gradients at coincident atoms and zero-length
# edges are checked by default layer by layer (test_atomistic, test_nn_e3nn)
@pytest.mark.slow
def test_network_gradients_finite_with_coincident_isolated_and_padding():
    model, params, _ = _small_model(np.float64)
    positions = np.array(
        [[0.0, 0.0, 0.0], [0.0, 0.0, 0.0], [1.0, 0.2, 0.0], [0.3, 1.1, 0.4], [30.0, 0.0, 0.0]]
    )
    frame = atomistic.Systems.from_arrays(positions)
    systems = atomistic.join_systems([frame], atom_capacity=8)  # 3 padding atoms

    def loss(params, positions):
        moved = dataclasses.replace(systems, positions=positions)
        pairs = atomistic.neighbor_list(moved, 2.5, capacity=40)  # padding pairs too
        return sum(jnp.sum(b.values**2) for b in model.apply(params, moved, pairs))

    grads = jax.jit(jax.grad(loss, argnums=(0, 1)))(params, systems.positions)
    leaves = jax.tree.leaves(grads)
    assert all(bool(jnp.isfinite(leaf).all()) for leaf in leaves)
    # padding atoms get no gradient and no output
    np.testing.assert_array_equal(np.asarray(grads[1])[5:], 0.0)


@pytest.mark.slow  # keeps the default run within budget; CI runs -m slow
def test_padding_is_exact_and_vmap_matches_joined_batch():
    model, params, _ = _small_model(np.float64)
    frames = np.random.default_rng(6).normal(size=(3, 7, 3)) * 1.2
    single = [atomistic.Systems.from_arrays(f) for f in frames]
    joined = atomistic.join_systems(single)
    padded = atomistic.join_systems(single, atom_capacity=25)

    def apply(systems, capacity):
        pairs = atomistic.neighbor_list(systems, 2.5, capacity=capacity)
        return model.apply(params, systems, pairs)

    exact = jax.jit(apply, static_argnums=1)(joined, 3 * 42)
    with_padding = jax.jit(apply, static_argnums=1)(padded, 3 * 42 + 17)
    for a, b in zip(exact, with_padding):
        np.testing.assert_array_equal(np.asarray(b.values)[:21], a.values)
        np.testing.assert_array_equal(np.asarray(b.values)[21:], 0.0)

    stacked = jax.tree.map(lambda *x: jnp.stack(x), *single)
    per_frame = jax.jit(jax.vmap(lambda s: [b.values for b in apply(s, 42)]))(stacked)
    for a, b in zip(per_frame, exact):
        np.testing.assert_allclose(np.asarray(a).reshape(b.values.shape), b.values, atol=1e-13)


@pytest.mark.slow  # keeps the default run within budget; CI runs -m slow
def test_convolution_module_on_tensormaps_and_dicts():
    systems = _systems(1, 6, 7)
    pairs = atomistic.neighbor_list(systems, 2.5)
    rng = np.random.default_rng(8)
    n = systems.n_atoms
    x = {(0, 1): rng.normal(size=(n, 1, 3)), (1, 1): rng.normal(size=(n, 3, 2))}
    z = {(0, 1): np.ones((n, 1, 1))}
    harmonics = o3.spherical_harmonics_array(2, pairs.vectors, normalization="component")
    y = {(l, 1): harmonics[l][..., None] for l in range(3)}
    embedding = nn.soft_one_hot_linspace(pairs.lengths(), start=0.0, end=2.5, number=5)
    conv = nn.Convolution("2x0e+2x1o+1x2e", number_of_basis=5, radial_neurons=8)
    args = (pairs.second_atom, pairs.first_atom, pairs.mask)
    params = conv.init(jax.random.key(0), x, z, y, embedding, *args)
    as_dict = conv.apply(params, x, z, y, embedding, *args)
    samples = systems.samples()
    as_tensor = conv.apply(params, _tensor(x, samples), _tensor(z, samples), y, embedding, *args)
    assert [tuple(k) for k in as_tensor.keys.values.tolist()] == list(as_dict)
    for key, block in zip(as_dict, as_tensor):
        # two programs (dict and TensorMap inputs) that XLA may fuse differently: round-off only
        np.testing.assert_allclose(block.values, as_dict[key], rtol=tol(1e-13, 1e-6), atol=0)
        assert block.samples == samples or block.samples.names == samples.names


def test_clear_errors():
    with pytest.raises(ValueError, match="more than once"):
        nn.GatePointsNetwork(irreps_hidden="8x0e+8x0e").structure()
    model, params, systems = _small_model(np.float64)
    pairs = atomistic.neighbor_list(systems, 2.5)
    with pytest.raises(ValueError, match="takes no node_features"):
        model.apply(params, systems, pairs, node_features=object())
