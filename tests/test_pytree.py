"""TensorMap / TensorBlock / Labels as JAX pytrees: jit, grad, vmap, tree_map, optax."""

import jax
import jax.numpy as jnp
import metatensor
import numpy as np
import optax
import pytest
from conftest import data_path
from helpers import FLOAT, from_metatensor, tol

from eqx_tensor import Labels, TensorBlock, TensorMap

# float64 arrays exist only with x64 on (else JAX makes them float32)
DTYPES = [pytest.param(jnp.float64, marks=pytest.mark.x64_only), jnp.float32]


@pytest.fixture(scope="module")
def expansion():
    return from_metatensor(metatensor.load(data_path("spherical-expansion.mts")))


def _as(tensor, dtype):
    return jax.tree_util.tree_map(lambda x: jnp.asarray(x, dtype=dtype), tensor)


def _energy(tensor):
    total = 0.0
    for block in tensor:
        total = total + jnp.sum(block.values**2)
        for _, gradient in block.gradients():
            total = total + 0.5 * jnp.sum(gradient.values**3)
    return total


def test_leaves_and_treedef(expansion):
    leaves, treedef = jax.tree_util.tree_flatten(expansion)
    n_arrays = sum(1 + len(b.gradients_list()) for b in expansion)
    assert len(leaves) == n_arrays == 24
    rebuilt = jax.tree_util.tree_unflatten(treedef, leaves)
    assert isinstance(rebuilt, TensorMap)
    assert rebuilt.keys == expansion.keys
    for a, b in zip(rebuilt, expansion):
        assert a.values is b.values
        assert a.samples == b.samples and a.properties == b.properties
        assert a.gradient("positions").samples == b.gradient("positions").samples
    # the metadata is hashable and equal for an equal TensorMap built separately
    other = from_metatensor(metatensor.load(data_path("spherical-expansion.mts")))
    assert jax.tree_util.tree_structure(other) == treedef
    assert hash(jax.tree_util.tree_structure(other)) == hash(treedef)


@pytest.mark.parametrize("dtype", DTYPES)
def test_jit_traces_once_per_metadata(expansion, dtype):
    traces = []

    @jax.jit
    def scale(tensor):
        traces.append(1)
        return jax.tree_util.tree_map(lambda x: 2 * x, tensor)

    tensor = _as(expansion, dtype)
    first = scale(tensor)
    second = scale(
        _as(from_metatensor(metatensor.load(data_path("spherical-expansion.mts"))), dtype)
    )
    third = scale(first)
    assert len(traces) == 1
    assert isinstance(third, TensorMap) and third.keys == tensor.keys
    np.testing.assert_allclose(third.block(3).values, 4 * np.asarray(tensor.block(3).values))
    np.testing.assert_allclose(
        second.block(0).gradient("positions").values,
        2 * np.asarray(tensor.block(0).gradient("positions").values),
    )
    assert third.block(0).values.dtype == dtype
    # other metadata: one more trace
    smaller = TensorMap(tensor.keys[:1], [tensor.block(0)])
    scale(smaller)
    assert len(traces) == 2


@pytest.mark.parametrize("dtype", DTYPES)
def test_grad_is_a_tensormap_with_same_metadata(expansion, dtype):
    tensor = _as(expansion, dtype)
    # jit: one compilation instead of one eager kernel per leaf shape and operation
    grads = jax.jit(jax.grad(_energy))(tensor)
    assert isinstance(grads, TensorMap)
    assert jax.tree_util.tree_structure(grads) == jax.tree_util.tree_structure(tensor)
    for g, t in zip(grads, tensor):
        values, gradient = np.asarray(t.values), np.asarray(t.gradient("positions").values)
        np.testing.assert_allclose(g.values, 2 * values, rtol=1e-6)
        np.testing.assert_allclose(g.gradient("positions").values, 1.5 * gradient**2, rtol=1e-6)
        assert g.values.dtype == dtype


def test_grad_matches_finite_differences(expansion):
    tensor = _as(expansion, FLOAT)
    direction = jax.tree_util.tree_map(
        lambda x: np.cos(np.arange(x.size).reshape(x.shape)).astype(x.dtype), tensor
    )
    # float32: a larger step, where rounding and the O(eps^2) error are both ~1e-5 relative
    eps = tol(1e-6, 3e-3)

    # one compilation instead of one eager kernel per leaf shape and operation
    @jax.jit
    def analytic_and_numeric(tensor, direction):
        grads = jax.grad(_energy)(tensor)
        analytic = sum(
            jnp.vdot(g, d)
            for g, d in zip(jax.tree_util.tree_leaves(grads), jax.tree_util.tree_leaves(direction))
        )
        plus = jax.tree_util.tree_map(lambda x, d: x + eps * d, tensor, direction)
        minus = jax.tree_util.tree_map(lambda x, d: x - eps * d, tensor, direction)
        return analytic, (_energy(plus) - _energy(minus)) / (2 * eps)

    analytic, numeric = analytic_and_numeric(tensor, direction)
    np.testing.assert_allclose(numeric, analytic, rtol=tol(1e-7, 1e-4))


@pytest.mark.parametrize("dtype", DTYPES)
def test_vmap_over_stacked_frames(expansion, dtype):
    # NumPy leaves: no eager JAX kernel per leaf shape
    first = jax.tree_util.tree_map(lambda x: np.asarray(x, dtype), expansion)
    frames = [first, jax.tree_util.tree_map(lambda x: 3 * x, first)]
    stacked = jax.tree_util.tree_map(lambda *xs: np.stack(xs), *frames)
    assert stacked.block(0).values.shape[0] == 2  # leading batch axis on every leaf

    def per_frame(tensor):
        # operate on logical shapes: metadata is the unbatched one
        block = tensor.block(o3_lambda=1, center_type=8, neighbor_type=8)
        assert block.values.shape == (len(block.samples), 3, len(block.properties))
        return _energy(tensor)

    # jit: one compilation instead of one eager kernel per leaf shape and operation
    energies = jax.jit(jax.vmap(per_frame))(stacked)
    expected = jnp.stack([jax.jit(_energy)(f) for f in frames])
    np.testing.assert_allclose(energies, expected, rtol=1e-6)


@pytest.mark.parametrize("dtype", DTYPES)
def test_optax_adam_on_tensormap_parameters(dtype):
    rng = np.random.default_rng(0)
    blocks = [
        TensorBlock(
            jnp.asarray(rng.normal(size=(4, 2 * l + 1, 3)), dtype),
            Labels.range("in", 4),
            [Labels.range("o3_mu", 2 * l + 1)],
            Labels.range("out", 3),
        )
        for l in range(3)
    ]
    params = TensorMap(Labels.range("o3_lambda", 3), blocks)
    target = jax.tree_util.tree_map(lambda x: jnp.ones_like(x), params)
    optimizer = optax.adam(0.1)
    state = optimizer.init(params)

    def loss(p):
        return sum(
            jnp.sum((a - b) ** 2)
            for a, b in zip(jax.tree_util.tree_leaves(p), jax.tree_util.tree_leaves(target))
        )

    @jax.jit
    def step(p, s):
        value, grads = jax.value_and_grad(loss)(p)
        updates, s = optimizer.update(grads, s, p)
        return optax.apply_updates(p, updates), s, value

    first = None
    for _ in range(200):
        params, state, value = step(params, state)
        first = value if first is None else first
    assert isinstance(params, TensorMap)
    assert params.block(2).values.dtype == dtype
    assert value < 1e-3 * first


def test_dynamic_sample_labels_share_a_compilation():
    traces = []

    def block_with(samples):
        return TensorBlock(
            jnp.ones((len(samples), 2)),
            Labels(["system", "atom"], jnp.asarray(samples, dtype=jnp.int32)),
            [],
            Labels.range("p", 2),
        )

    @jax.jit
    def f(tensor):
        traces.append(1)
        block = tensor.block(0)
        return jnp.sum(block.values * block.samples.values[:, :1])

    a = TensorMap(Labels.single(), [block_with([[0, 0], [0, 1], [1, 0]])])
    b = TensorMap(Labels.single(), [block_with([[4, 0], [5, 1], [6, 0]])])
    assert a.block(0).samples.is_dynamic
    assert len(jax.tree_util.tree_leaves(a)) == 2  # values and sample labels
    assert float(f(a)) == 2.0
    assert float(f(b)) == 30.0
    assert len(traces) == 1
    c = TensorMap(Labels.single(), [block_with([[0, 0]])])
    f(c)
    assert len(traces) == 2  # the count is static


def test_labels_pytree():
    static = Labels.range("a", 3)
    assert jax.tree_util.tree_leaves(static) == []
    dynamic = static.to_dynamic()
    (leaf,) = jax.tree_util.tree_leaves(dynamic)
    doubled = jax.tree_util.tree_map(lambda x: 2 * x, dynamic)
    np.testing.assert_array_equal(doubled.values, 2 * np.asarray(leaf))


def test_block_pytree(expansion):
    block = expansion.block(1)
    leaves, treedef = jax.tree_util.tree_flatten(block)
    assert len(leaves) == 2
    rebuilt = jax.tree_util.tree_unflatten(treedef, [2 * x for x in leaves])
    assert isinstance(rebuilt, TensorBlock)
    assert rebuilt.gradient("positions").samples == block.gradient("positions").samples
    np.testing.assert_allclose(rebuilt.values, 2 * block.values)
