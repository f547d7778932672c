"""Math operations: cross-checked against metatensor-operations, jax.jacfwd, jit, grad, vmap."""

from __future__ import annotations

import functools
import warnings

import jax
import jax.numpy as jnp
import metatensor
import metatensor.operations as mto
import numpy as np
import pytest
from conftest import data_path
from helpers import SLOW_WITH_X64, assert_close, assert_tensor_equal, from_metatensor

import eqx_tensor as eqt
from eqx_tensor import Labels, TensorBlock, TensorMap

FILES = [
    "radial-spectrum.mts",
    "spherical-expansion.mts",
    "core-data.mts",
    "qm7-power-spectrum.mts",
    "qm7-spherical-expansion.mts",
]


# the fast tests use a few blocks (spread over the keys) of the large files: compiling one
# program over all 45 blocks of qm7-spherical-expansion takes seconds; the slow test uses all
SUBSET = {"core-data.mts": 5, "qm7-power-spectrum.mts": 4, "qm7-spherical-expansion.mts": 6}


@functools.cache
def load(name: str, full: bool = False) -> tuple[metatensor.TensorMap, TensorMap]:
    tensor = metatensor.load(str(data_path(name)))
    if not full and name in SUBSET:
        index = np.unique(np.linspace(0, len(tensor) - 1, SUBSET[name]).astype(int))
        keys = metatensor.Labels(tensor.keys.names, np.asarray(tensor.keys.values)[index])
        tensor = metatensor.TensorMap(keys, [tensor.block(int(i)).copy() for i in index])
    return tensor, from_metatensor(tensor)


# --------------------------------------------------------------------------- random tensors
def random_mts(
    seed: int, dtype=np.float64, n_blocks: int = 3, values_seed: int | None = None
) -> metatensor.TensorMap:
    """A metatensor TensorMap with components, sparse 'positions' gradients (extra xyz
    component) and dense 'strain' gradients (two extra components). The metadata depend on
    ``seed`` only, the values on ``values_seed`` (default ``seed``)."""
    rng = np.random.default_rng(seed)
    values_rng = np.random.default_rng(seed if values_seed is None else values_seed)
    blocks = []
    for b in range(n_blocks):
        n_samples = int(rng.integers(1, 6))
        samples = metatensor.Labels(
            ["system", "atom"], np.stack([np.zeros(n_samples, int), np.arange(n_samples)], 1)
        )
        components = [metatensor.Labels.range("o3_mu", 2 * b + 1)]
        properties = metatensor.Labels(["n"], np.arange(int(rng.integers(1, 5)))[:, None] + b)
        shape = (n_samples, 2 * b + 1, len(properties))
        block = metatensor.TensorBlock(
            values_rng.normal(size=shape).astype(dtype), samples, components, properties
        )
        # a random sparse subset of (sample, atom) pairs
        pairs = [(s, a) for s in range(n_samples) for a in range(n_samples) if rng.random() < 0.6]
        pairs = pairs or [(0, 0)]
        g_samples = metatensor.Labels(
            ["sample", "system", "atom"], np.array([[s, 0, a] for s, a in pairs])
        )
        xyz = metatensor.Labels.range("xyz", 3)
        block.add_gradient(
            "positions",
            metatensor.TensorBlock(
                values_rng.normal(size=(len(pairs), 3, *shape[1:])).astype(dtype),
                g_samples,
                [xyz, *components],
                properties,
            ),
        )
        block.add_gradient(
            "strain",
            metatensor.TensorBlock(
                values_rng.normal(size=(n_samples, 3, 3, *shape[1:])).astype(dtype),
                metatensor.Labels(["sample"], np.arange(n_samples)[:, None]),
                [
                    metatensor.Labels.range("xyz_1", 3),
                    metatensor.Labels.range("xyz_2", 3),
                    *components,
                ],
                properties,
            ),
        )
        blocks.append(block)
    keys = metatensor.Labels(["key"], np.arange(n_blocks)[:, None] * 2)
    return metatensor.TensorMap(keys, blocks)


def positive(tensor: metatensor.TensorMap) -> metatensor.TensorMap:
    """``|t| + 0.5``: strictly positive values, for pow with fractional exponents and divide."""
    return mto.add(mto.abs(tensor), 0.5)


def reversed_keys(tensor: TensorMap) -> TensorMap:
    """The same TensorMap with keys (and blocks) in reverse order."""
    order = np.arange(len(tensor))[::-1]
    keys = Labels(tensor.keys.names, tensor.keys.values[order])
    return TensorMap(keys, [tensor.block_by_id(int(i)).copy() for i in order])


# --------------------------------------------------------------------------- cross checks
UNARY = {
    "add_scalar": (lambda t: eqt.add(t, 3.5), lambda t: mto.add(t, 3.5)),
    "subtract_scalar": (lambda t: eqt.subtract(t, 2), lambda t: mto.subtract(t, 2)),
    "multiply_scalar": (lambda t: eqt.multiply(t, -1.5), lambda t: mto.multiply(t, -1.5)),
    "divide_scalar": (lambda t: eqt.divide(t, 3.0), lambda t: mto.divide(t, 3.0)),
    "pow_2": (lambda t: eqt.pow(t, 2), lambda t: mto.pow(t, 2)),
    "pow_3": (lambda t: eqt.pow(t, 3), lambda t: mto.pow(t, 3)),
    "pow_-1": (lambda t: eqt.pow(t, -1.0), lambda t: mto.pow(t, -1.0)),
    "pow_0.5": (lambda t: eqt.pow(t, 0.5), lambda t: mto.pow(t, 0.5)),
    "pow_2.7": (lambda t: eqt.pow(t, 2.7), lambda t: mto.pow(t, 2.7)),
    "abs": (eqt.abs, mto.abs),
}
BINARY = {
    "add": (eqt.add, mto.add),
    "subtract": (eqt.subtract, mto.subtract),
    "multiply": (eqt.multiply, mto.multiply),
    "divide": (eqt.divide, mto.divide),
}


def _on_files(operations: list[str], per_operation: int) -> list:
    """(operation, file) pairs: each operation on ``per_operation`` files in the default run,
    taken in turn so that every file is used, the other pairs in the slow step."""
    cases = []
    for i, operation in enumerate(operations):
        fast = {FILES[(i + j) % len(FILES)] for j in range(per_operation)}
        for name in FILES:
            marks = () if name in fast else pytest.mark.slow
            cases.append(pytest.param(operation, name, marks=marks, id=f"{operation}-{name}"))
    return cases


@pytest.mark.parametrize(("operation", "name"), _on_files(list(UNARY), 2))
def test_unary_matches_metatensor_on_files(name, operation):
    mts_tensor, _ = load(name)
    # fractional and negative exponents need positive values (else both give NaN)
    mts_input = positive(mts_tensor) if operation.startswith("pow") else mts_tensor
    ours, theirs = UNARY[operation]
    assert_tensor_equal(ours(from_metatensor(mts_input)), theirs(mts_input), atol=1e-12)


@pytest.mark.parametrize(("operation", "name"), _on_files(list(BINARY), 2))
def test_binary_matches_metatensor_on_files(name, operation):
    mts_a, _ = load(name)
    mts_b = positive(mto.multiply(mts_a, 0.7))
    ours, theirs = BINARY[operation]
    expected = theirs(mts_a, mts_b)
    assert_tensor_equal(ours(from_metatensor(mts_a), from_metatensor(mts_b)), expected, 1e-12)
    # the second operand's keys may come in any order, the result has the first's
    shuffled = reversed_keys(from_metatensor(mts_b))
    assert_tensor_equal(ours(from_metatensor(mts_a), shuffled), expected, 1e-12)


@pytest.mark.slow
@pytest.mark.parametrize("name", [name for name in FILES if name in SUBSET])
def test_all_operations_match_metatensor_on_full_files(name):
    mts_a, a = load(name, full=True)
    mts_b = positive(mto.multiply(mts_a, 0.7))
    b = from_metatensor(mts_b)
    for ours, theirs in BINARY.values():
        assert_tensor_equal(ours(a, b), theirs(mts_a, mts_b), 1e-12)
    for operation, (ours, theirs) in UNARY.items():
        if operation.startswith("pow"):
            assert_tensor_equal(ours(b), theirs(mts_b), 1e-12)
        else:
            assert_tensor_equal(ours(a), theirs(mts_a), 1e-12)
    mts_w = _matrix_tensor(mts_a, 3, seed=1)
    assert_tensor_equal(eqt.dot(a, from_metatensor(mts_w)), mto.dot(mts_a, mts_w), 1e-12)


@pytest.mark.parametrize(
    ("seed", "dtype"),
    # float64 data stay float64 only with x64 on (else JAX makes them float32)
    # (test_float32_stays_float32 checks float32 with x64 on by default)
    [
        pytest.param(0, np.float64, marks=pytest.mark.x64_only),
        pytest.param(1, np.float32, marks=SLOW_WITH_X64),
    ],
)
def test_random_tensors_match_metatensor(seed, dtype):
    mts_a = random_mts(seed, dtype)
    mts_b = positive(random_mts(seed, dtype, values_seed=seed + 100))
    a, b = from_metatensor(mts_a), from_metatensor(mts_b)
    atol = 1e-12 if dtype == np.float64 else 1e-5

    # all operations in one program: one compilation instead of one per operation
    @jax.jit
    def everything(a, b):
        binary = {name: ours(a, b) for name, (ours, _) in BINARY.items()}
        unary = {
            name: ours(b if name.startswith("pow") else a) for name, (ours, _) in UNARY.items()
        }
        return binary, unary

    binary, unary = everything(a, b)
    for operation, (_, theirs) in BINARY.items():
        assert binary[operation].dtype == dtype, operation
        assert_tensor_equal(binary[operation], theirs(mts_a, mts_b), atol)
    for operation, (_, theirs) in UNARY.items():
        mts_input = mts_b if operation.startswith("pow") else mts_a
        assert unary[operation].dtype == dtype, operation
        assert_tensor_equal(unary[operation], theirs(mts_input), atol)


def _matrix_tensor(reference: metatensor.TensorMap, n_out: int, seed: int) -> metatensor.TensorMap:
    """For each key, a (n_out, n_properties) block with the reference's properties."""
    rng = np.random.default_rng(seed)
    blocks = [
        metatensor.TensorBlock(
            rng.normal(size=(n_out, len(block.properties))),
            metatensor.Labels(["out"], np.arange(n_out)[:, None] + 10),
            [],
            block.properties,
        )
        for block in reference.blocks()
    ]
    return metatensor.TensorMap(reference.keys, blocks)


@pytest.mark.parametrize("name", FILES)
def test_dot_matches_metatensor(name):
    mts_a, _ = load(name)
    mts_b = _matrix_tensor(mts_a, 4, seed=3)
    expected = mto.dot(mts_a, mts_b)
    result = eqt.dot(from_metatensor(mts_a), from_metatensor(mts_b))
    assert_tensor_equal(result, expected, 1e-12)
    assert_tensor_equal(
        eqt.dot(from_metatensor(mts_a), reversed_keys(from_metatensor(mts_b))), expected, 1e-12
    )


# float64 only: these fits are ill-conditioned (gradient rows, nearly dependent columns), and
# with float32 rounding (~1e-7) the solutions kept by rcond=1e-10 are noise; float32 lstsq is
# checked on a well-conditioned fit by test_lstsq_recovers_weights_and_warns_without_rcond
@pytest.mark.x64_only
@pytest.mark.parametrize(
    ("name", "rcond"),
    [
        ("spherical-expansion.mts", 1e-10),
        ("core-data.mts", 1e-10),
        # power spectra have (nearly) linearly dependent columns: cut them off
        ("qm7-power-spectrum.mts", 1e-6),
        pytest.param("radial-spectrum.mts", 1e-10, marks=pytest.mark.slow),
        pytest.param("qm7-spherical-expansion.mts", 1e-10, marks=pytest.mark.slow),
    ],
)
def test_lstsq_matches_metatensor(name, rcond):
    mts_x, _ = load(name)
    mts_w = _matrix_tensor(mts_x, 2, seed=5)
    # Y = X W^T + offset: the fit includes the gradient rows, which dot propagates
    mts_y = mto.add(mto.dot(mts_x, mts_w), 1e-3)
    expected = mto.lstsq(mts_x, mts_y, rcond=rcond)
    result = eqt.lstsq(from_metatensor(mts_x), from_metatensor(mts_y), rcond=rcond)
    # different LAPACK routines (numpy's gelsd, JAX's SVD): agreement to the conditioning
    assert_tensor_equal(result, expected, atol=1e-9)


def test_lstsq_recovers_weights_and_warns_without_rcond():
    mts_x = random_mts(7)
    mts_w = _matrix_tensor(mts_x, 3, seed=8)
    x, w = from_metatensor(mts_x), from_metatensor(mts_w)
    y = eqt.dot(x, w)
    # array scalars are accepted like floats (a compile-time constant of the solver)
    for rcond in (np.array(1e-12), jnp.float64(1e-12)):
        assert eqt.allclose(eqt.lstsq(x, y, rcond=rcond), eqt.lstsq(x, y, rcond=1e-12))
    with pytest.raises(TypeError, match="`rcond` in 'lstsq' must be a number"):
        eqt.lstsq(x, y, rcond="small")
    with pytest.warns(UserWarning, match="rcond is set to None"):
        weights = eqt.lstsq(x, y, rcond=None, driver="gelsd")
    for block, expected in zip(weights, w):
        assert_close(block.values, expected.values, atol=1e-10)
        assert block.samples == expected.samples and block.properties == expected.properties
        assert block.components == [] and block.gradients_list() == []


def _square_mts(seed: int) -> tuple[metatensor.TensorMap, metatensor.TensorMap]:
    rng = np.random.default_rng(seed)
    xs, ys = [], []
    for n in (2, 3, 5):
        samples = metatensor.Labels.range("s", n)
        properties = metatensor.Labels.range("p", n)
        xs.append(
            metatensor.TensorBlock(rng.normal(size=(n, n)) + 3 * np.eye(n), samples, [], properties)
        )
        ys.append(
            metatensor.TensorBlock(
                rng.normal(size=(n, 2)), samples, [], metatensor.Labels.range("y", 2)
            )
        )
    keys = metatensor.Labels.range("key", 3)
    return metatensor.TensorMap(keys, xs), metatensor.TensorMap(keys, ys)


def test_solve_matches_metatensor():
    mts_x, mts_y = _square_mts(0)
    result = eqt.solve(from_metatensor(mts_x), from_metatensor(mts_y))
    assert_tensor_equal(result, mto.solve(mts_x, mts_y), atol=1e-12)


# --------------------------------------------------------------------------- jacfwd
N_ATOMS = 4
# which atoms each sample (row) of the values depends on: sparse gradients
NEIGHBOURS = [(0, 1), (1, 2, 3), (3,)]


@functools.partial(jax.jit, static_argnums=(1, 2))
def _values(x: jax.Array, phase: float, shift: float) -> jax.Array:
    """Values of shape (3 samples, 2 components, 2 properties), row i a smooth function of
    the positions of the atoms in NEIGHBOURS[i] only; positive for ``shift=0``."""
    rows = []
    for atoms in NEIGHBOURS:
        r = x[jnp.array(atoms)]  # (n, 3)
        n = len(atoms) + 0.5
        c = jnp.stack(
            [n + jnp.sum(jnp.sin(r[:, 0] + phase)), n + jnp.sum(jnp.cos(r[:, 1] * r[:, 2]))]
        )
        p = jnp.stack([1.5 + jnp.sum(r**2) * 0.1, 3 * n + jnp.sum(jnp.tanh(r + phase))])
        rows.append(c[:, None] * p[None, :] - shift)
    return jnp.stack(rows)


_jacobian = jax.jit(jax.jacfwd(_values), static_argnums=(1, 2))


def _tensor(x: jax.Array, phase: float, shift: float, with_gradients: bool = True) -> TensorMap:
    """One block: values _values(x) and explicit 'positions' gradients from jax.jacfwd."""
    values = _values(x, phase, shift)
    block = TensorBlock(
        values,
        Labels(["system", "atom"], np.array([[0, i] for i in range(3)])),
        [Labels.range("c", 2)],
        Labels.range("p", 2),
    )
    if with_gradients:
        jacobian = _jacobian(x, phase, shift)  # (3, 2, 2, N_ATOMS, 3)
        rows = [(i, a) for i, atoms in enumerate(NEIGHBOURS) for a in atoms]
        gradient = jnp.stack([jnp.moveaxis(jacobian[i, :, :, a, :], -1, 0) for i, a in rows])
        block.add_gradient(
            "positions",
            TensorBlock(
                gradient,
                Labels(["sample", "system", "atom"], np.array([[i, 0, a] for i, a in rows])),
                [Labels.range("xyz", 3), Labels.range("c", 2)],
                Labels.range("p", 2),
            ),
        )
    return TensorMap(Labels.range("key", 1), [block])


def _matrix(phase: float) -> TensorMap:
    values = jnp.array([[1.0, -2.0], [0.5, phase], [3.0, 0.25]])
    block = TensorBlock(values, Labels.range("out", 3), [], Labels.range("p", 2))
    return TensorMap(Labels.range("key", 1), [block])


JACFWD_CASES = {
    "add": lambda a, b: eqt.add(a, b),
    "subtract": lambda a, b: eqt.subtract(a, b),
    "multiply": lambda a, b: eqt.multiply(a, b),
    "divide": lambda a, b: eqt.divide(a, b),
    "multiply_scalar": lambda a, b: eqt.multiply(a, 2.5),
    "pow_2": lambda a, b: eqt.pow(a, 2),
    "pow_3": lambda a, b: eqt.pow(a, 3),
    "pow_1.7": lambda a, b: eqt.pow(b, 1.7),
    "pow_-0.5": lambda a, b: eqt.pow(b, -0.5),
    "abs": lambda a, b: eqt.abs(a),
    "dot": lambda a, b: eqt.dot(a, _matrix(0.3)),
}


@functools.cache
def _explicit_gradients_and_jacobians():
    """For every operation of JACFWD_CASES: its explicit positions gradient block and
    ``jax.jacfwd`` of its values, (3, *components, properties, N_ATOMS, 3); and the values of
    the two operands. One compiled program for all the operations: compiling them one by one
    (and the explicit gradients eagerly) takes several times longer."""
    x = jnp.asarray(np.random.default_rng(0).normal(size=(N_ATOMS, 3)))

    @jax.jit
    def everything(x):
        a, b = _tensor(x, 0.2, 10.0), _tensor(x, 1.0, 0.0)
        explicit = {
            case: operation(a, b).block().gradient("positions")
            for case, operation in JACFWD_CASES.items()
        }

        def values(x):
            a, b = _tensor(x, 0.2, 10.0, False), _tensor(x, 1.0, 0.0, False)
            return {case: op(a, b).block().values for case, op in JACFWD_CASES.items()}

        return a.block().values, b.block().values, explicit, jax.jacfwd(values)(x)

    return jax.tree.map(np.asarray, everything(x))


@pytest.mark.parametrize("case", list(JACFWD_CASES))
def test_explicit_gradients_agree_with_jacfwd(case):
    a_values, b_values, explicit, jacobians = _explicit_gradients_and_jacobians()
    # a has values of both signs (for abs), b strictly positive ones (divide, pow)
    assert np.any(a_values < 0) and np.any(a_values > 0)
    assert np.all(b_values > 0)
    gradient, jacobian = explicit[case], jacobians[case]
    rows = gradient.samples.values
    expected = np.stack([np.moveaxis(jacobian[i, ..., a, :], -1, 0) for i, _, a in rows])
    assert_close(gradient.values, expected, rtol=1e-12, atol=1e-12)
    # every non-zero derivative is in a stored gradient row (no missing sparsity)
    stored = np.zeros((3, N_ATOMS), dtype=bool)
    stored[rows[:, 0], rows[:, 2]] = True
    missing = np.abs(jacobian).reshape(3, -1, N_ATOMS, 3).max(axis=(1, 3))
    assert np.all(missing[~stored] == 0)


# --------------------------------------------------------------------------- jax transforms
JIT_CASES = {
    "add": lambda a, b: eqt.add(a, b),
    "add_scalar": lambda a, b: eqt.add(a, 1.0),
    "subtract": lambda a, b: eqt.subtract(a, b),
    "multiply": lambda a, b: eqt.multiply(a, b),
    "divide": lambda a, b: eqt.divide(a, b),
    "pow": lambda a, b: eqt.pow(b, 1.5),
    "abs": lambda a, b: eqt.abs(a),
    "dot": lambda a, b: eqt.dot(a, _matrix_like(b)),
}


def _matrix_like(tensor: TensorMap) -> TensorMap:
    """A gradient-free (2, n_properties) TensorMap per key, a function of ``tensor``'s values."""
    blocks = []
    for block in tensor:
        # numpy for concrete inputs (no eager JAX kernels to compile), jnp under traces
        xp = np if isinstance(block.values, np.ndarray) else jnp
        rows = xp.reshape(block.values, (-1, block.values.shape[-1]))
        rows = xp.stack([rows[0], 2 * rows[-1]])
        blocks.append(TensorBlock(rows, Labels.range("out", 2), [], block.properties))
    return TensorMap(tensor.keys, blocks)


@pytest.mark.parametrize("case", list(JIT_CASES))
def test_jit_matches_eager(case):
    operation = JIT_CASES[case]
    mts_a, _ = load("radial-spectrum.mts")
    a = from_metatensor(mts_a)
    b = from_metatensor(positive(mts_a))
    eager = operation(a, b)
    jitted = jax.jit(operation)(a, b)
    assert eqt.equal_metadata(eager, jitted)
    assert eqt.allclose(eager, jitted, rtol=1e-14, atol=1e-14)


def test_jit_lstsq_and_solve():
    mts_x, mts_y = _square_mts(1)
    x, y = from_metatensor(mts_x), from_metatensor(mts_y)
    assert eqt.allclose(jax.jit(eqt.solve)(x, y), eqt.solve(x, y), atol=1e-12)
    lstsq = jax.jit(functools.partial(eqt.lstsq, rcond=1e-12))
    assert eqt.allclose(lstsq(x, y), eqt.lstsq(x, y, rcond=1e-12), atol=1e-12)


def _total(tensor: TensorMap) -> jax.Array:
    return sum(jnp.sum(block.values) for block in tensor)


def _jit_grad(function):
    # jitted so that the test does not compile one eager kernel per primitive and shape
    return jax.jit(jax.grad(function))


def test_grad_flows_through_values_and_scalars():
    mts_a, _ = load("radial-spectrum.mts")
    a = from_metatensor(mts_a)
    cotangent = _jit_grad(lambda t: _total(eqt.pow(t, 2)))(a)
    for block, original in zip(cotangent, a):
        assert_close(block.values, 2 * original.values, atol=1e-12)
        # the loss does not use the gradients: zero cotangent there
        assert np.all(np.asarray(block.gradient("positions").values) == 0)
    # through the explicit gradients: d/dg sum(3 g) = 3
    cotangent = _jit_grad(lambda t: _total_gradients(eqt.multiply(t, 3.0)))(a)
    for block in cotangent:
        np.testing.assert_allclose(block.gradient("positions").values, 3.0)
    # with respect to a scalar operand, traced
    d_scale = _jit_grad(lambda c: _total(eqt.multiply(a, c)))(2.0)
    assert_close(d_scale, sum(np.sum(b.values) for b in a), rtol=1e-12)
    d_exponent = _jit_grad(lambda e: _total(eqt.pow(eqt.abs(a), e)))(2.0)
    expected = sum(np.sum(b.values**2 * np.log(np.abs(b.values))) for b in mts_a)
    assert_close(d_exponent, expected, rtol=1e-10)


def _total_gradients(tensor: TensorMap) -> jax.Array:
    return sum(jnp.sum(block.gradient("positions").values) for block in tensor)


def test_vmap_over_a_batch_of_tensors():
    mts_a, _ = load("spherical-expansion.mts")
    a = from_metatensor(mts_a)
    batch = jax.tree.map(lambda leaf: np.stack([leaf, 2 * leaf]), a)
    result = jax.jit(jax.vmap(lambda t: eqt.multiply(t, t)))(batch)
    single = eqt.multiply(a, a)
    for block, expected in zip(result, single):
        values = np.asarray(block.values)  # numpy indexing: no eager JAX kernels
        assert_close(values[0], expected.values, atol=1e-12)
        assert_close(values[1], 4 * np.asarray(expected.values), atol=1e-12)
        g, expected_g = block.gradient("positions"), expected.gradient("positions")
        assert_close(np.asarray(g.values)[1], 4 * np.asarray(expected_g.values), atol=1e-12)
    dotted = jax.jit(jax.vmap(lambda t: eqt.dot(t, _matrix_like(a))))(batch)
    expected = eqt.dot(a, _matrix_like(a))
    for block, e in zip(dotted, expected):
        assert_close(np.asarray(block.values)[1], 2 * np.asarray(e.values), rtol=1e-12)


def test_elementwise_math_accepts_dynamic_samples():
    mts_a, _ = load("radial-spectrum.mts")
    a = from_metatensor(mts_a)
    expected = eqt.divide(eqt.multiply(a, a), eqt.add(eqt.abs(a), 1.0))

    @jax.jit
    def function(t):
        return eqt.divide(eqt.multiply(t, t), eqt.add(eqt.abs(t), 1.0))

    result = function(a.to_dynamic_samples())
    for block, e in zip(result, expected):
        assert block.samples.is_dynamic
        np.testing.assert_array_equal(np.asarray(block.samples.values), e.samples.values)
        assert_close(block.values, e.values, atol=1e-12)
        assert_close(block.gradient("positions").values, e.gradient("positions").values, atol=1e-12)


def test_float32_stays_float32():
    mts_a = random_mts(3, np.float32)
    a = from_metatensor(mts_a)
    for result in [
        eqt.add(a, jnp.float64(1.0)),
        eqt.multiply(a, np.float64(2.0)),
        eqt.pow(eqt.abs(a), 0.5),
        eqt.pow(a, 2),
        eqt.divide(a, 3),
    ]:
        assert result.dtype == jnp.float32
        assert all(b.gradient("positions").dtype == jnp.float32 for b in result)


def test_pow_2_equals_multiply_exactly():
    _, a = load("spherical-expansion.mts")
    assert eqt.equal(eqt.pow(a, 2), eqt.multiply(a, a))


# --------------------------------------------------------------------------- bad input
def test_mismatched_keys_raise():
    _, a = load("radial-spectrum.mts")
    _, b = load("spherical-expansion.mts")
    with pytest.raises(eqt.NotEqualError, match="'add' should have the same keys names"):
        eqt.add(a, b)
    fewer = TensorMap(Labels(a.keys.names, a.keys.values[:2]), [x.copy() for x in a.blocks()[:2]])
    with pytest.raises(ValueError, match="'multiply' should have the same number of blocks"):
        eqt.multiply(a, fewer)
    other = TensorMap(Labels(a.keys.names, a.keys.values + 100), [x.copy() for x in a])
    with pytest.raises(ValueError, match="'divide' should have the same keys"):
        eqt.divide(a, other)
    with pytest.raises(ValueError, match="'dot' should have the same keys"):
        eqt.dot(a, other)


def _with_block_metadata(tensor: TensorMap, **changes) -> TensorMap:
    blocks = []
    for block in tensor:
        new = TensorBlock(
            block.values,
            changes.get("samples", lambda b: b.samples)(block),
            block.components,
            changes.get("properties", lambda b: b.properties)(block),
        )
        if not changes.get("drop_gradients"):
            for parameter, gradient in block.gradients():
                new.add_gradient(
                    parameter,
                    TensorBlock(
                        gradient.values, gradient.samples, gradient.components, new.properties
                    ),
                )
        blocks.append(new)
    return TensorMap(tensor.keys, blocks)


def test_mismatched_block_metadata_raise():
    _, a = load("radial-spectrum.mts")
    renamed = _with_block_metadata(a, properties=lambda b: b.properties.rename("n", "m"))
    with pytest.raises(eqt.NotEqualError, match="'add' should have the same properties"):
        eqt.add(a, renamed)
    shifted = _with_block_metadata(
        a, samples=lambda b: Labels(b.samples.names, np.asarray(b.samples.values) + 1)
    )
    with pytest.raises(eqt.NotEqualError, match="'multiply' should have the same samples"):
        eqt.multiply(a, shifted)
    no_gradients = _with_block_metadata(a, drop_gradients=True)
    with pytest.raises(eqt.NotEqualError, match="same gradient parameters"):
        eqt.subtract(a, no_gradients)


def test_bad_operand_types_raise():
    _, a = load("radial-spectrum.mts")
    with pytest.raises(TypeError, match="`B` in 'add' must be a TensorMap or a scalar value"):
        eqt.add(a, "one")
    with pytest.raises(TypeError, match="got an array of shape \\(3,\\)"):
        eqt.multiply(a, np.ones(3))
    with pytest.raises(TypeError, match="`A` in 'divide' must be a TensorMap"):
        eqt.divide(a.block(0), 2.0)
    with pytest.raises(TypeError, match="`B` in 'pow' must be a scalar value"):
        eqt.pow(a, a)
    with pytest.raises(TypeError, match="`A` in 'abs' must be a TensorMap"):
        eqt.abs(np.ones((2, 2)))


def test_dot_bad_input_raises():
    mts_a, a = load("spherical-expansion.mts")
    with pytest.raises(ValueError, match="second TensorMap in `dot` should not have components"):
        eqt.dot(a, a)
    mts_b = _matrix_tensor(mts_a, 2, 0)
    b = from_metatensor(mts_b)
    other_properties = TensorMap(
        b.keys,
        [TensorBlock(x.values, x.samples, [], Labels(["k"], x.properties.values)) for x in b],
    )
    with pytest.raises(ValueError, match="`dot` should have the same properties"):
        eqt.dot(a, other_properties)
    _, r = load("radial-spectrum.mts")
    with pytest.raises(ValueError, match="should not have gradients"):
        eqt.dot(r, r)


def test_solve_and_lstsq_bad_input_raise():
    mts_x, mts_y = _square_mts(2)
    x, y = from_metatensor(mts_x), from_metatensor(mts_y)
    _, r = load("radial-spectrum.mts")
    with pytest.raises(ValueError, match="square 2D array"):
        eqt.solve(r, r)
    shifted = TensorMap(
        y.keys,
        [TensorBlock(b.values, Labels(["t"], b.samples.values), [], b.properties) for b in y],
    )
    with pytest.raises(ValueError, match="same samples in the same order"):
        eqt.solve(x, shifted)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(eqt.NotEqualError, match="'lstsq' should have the same samples"):
            eqt.lstsq(x, shifted, rcond=None)
