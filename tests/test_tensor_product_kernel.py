"""Array-level Clebsch-Gordan tensor products (eqx_tensor.o3._tensor_product).

References are e3nn-jax's ``tensor_product`` and its (haiku-free) legacy functional products,
fed the same inputs converted to e3nn's basis with ``D_e3nn(P)`` built here from e3nn-jax alone,
and Wigner matrices ``D_mts(R) = D_e3nn(P R P^T)`` for the equivariance checks.
"""

import functools
import math

import e3nn_jax as e3nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from e3nn_jax.legacy import FunctionalFullyConnectedTensorProduct, FunctionalTensorProduct
from helpers import FLOAT, assert_close, tol

from eqx_tensor.o3._tensor_product import (
    auto_method,
    irreps_of,
    tensor_product,
    tensor_product_plan,
)

# one compilation per call site instead of hundreds of eagerly dispatched slices
apply = jax.jit(tensor_product, static_argnums=0, static_argnames=("method", "chunk_size"))

P = np.array([[0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [1.0, 0.0, 0.0]])

# small but complete: both sigmas, l up to 2 x 3, unequal multiplicities
IRREPS1 = (((0, 1), 3), ((0, -1), 2), ((1, 1), 2), ((1, -1), 3), ((2, 1), 2))
IRREPS2 = (((0, 1), 1), ((1, 1), 1), ((2, 1), 1), ((3, 1), 1))
IRREPS2_MUL = (((0, 1), 2), ((1, 1), 3), ((2, -1), 2))
IRREPS_OUT = (((0, 1), 4), ((0, -1), 2), ((1, 1), 3), ((1, -1), 2), ((2, 1), 2), ((3, -1), 1))
# for the mechanics (chunks, batch axes, grads): few paths, quick to compile
SMALL1 = (((0, 1), 2), ((0, -1), 1), ((1, 1), 2), ((2, 1), 1))
SMALL2 = (((0, 1), 1), ((1, 1), 1), ((2, 1), 1))
SMALL_OUT = (((0, 1), 2), ((1, 1), 2), ((1, -1), 1), ((2, 1), 1))


def _parity(key):
    l, sigma = key
    return sigma * (-1) ** l


def _irrep(key) -> e3nn.Irrep:
    return e3nn.Irrep(key[0], _parity(key))


# every irrep the tests meet (l up to 5, both parities): one compilation of e3nn's
# D_from_matrix for all of them, instead of many eagerly dispatched operations per call
_IRREPS_D = [(l, p) for l in range(6) for p in (1, -1)]
_d_e3nn = jax.jit(lambda M: {(l, p): e3nn.Irrep(l, p).D_from_matrix(M) for l, p in _IRREPS_D})


@functools.cache
def _change_of_basis(l: int) -> np.ndarray:
    """``x_mts = C @ x_e3nn`` for one irrep: ``C = D_e3nn(P)``."""
    return np.asarray(_d_e3nn(jnp.asarray(P))[l, 1])


def _wigner(key, R: np.ndarray) -> np.ndarray:
    """Action of the orthogonal matrix ``R`` on a block ``key`` in the metatensor basis."""
    return np.asarray(_d_e3nn(jnp.asarray(P @ R @ P.T))[key[0], _parity(key)])


def _random_blocks(irreps, n: int, seed: int, dtype=FLOAT) -> dict:
    rng = np.random.default_rng(seed)
    return {
        key: jnp.asarray(rng.normal(size=(n, 2 * key[0] + 1, mul)), dtype) for key, mul in irreps
    }


# conversions in numpy: eager jax would compile every small einsum of every shape
def _to_e3nn(blocks: dict, irreps) -> e3nn.IrrepsArray:
    """Blocks (n, 2l+1, mul) in our basis -> IrrepsArray (n, dim) in e3nn's basis."""
    chunks = [
        np.einsum("ki,nkm->nmi", _change_of_basis(key[0]), blocks[key]).reshape(
            len(blocks[key]), -1
        )
        for key, _ in irreps
    ]
    e3nn_irreps = e3nn.Irreps([(mul, _irrep(key)) for key, mul in irreps])
    return e3nn.IrrepsArray(e3nn_irreps, jnp.asarray(np.concatenate(chunks, axis=-1)))


def _from_e3nn_chunk(chunk: jax.Array, key) -> np.ndarray:
    """e3nn chunk (n, mul, 2l+1) -> our block (n, 2l+1, mul), our basis."""
    return np.einsum("ki,nmi->nkm", _change_of_basis(key[0]), chunk)


def _assert_blocks_close(ours: dict, reference: dict, rtol=1e-12, atol=1e-12):
    # jit returns dicts with sorted keys, so compare the key sets, not their order
    assert set(ours) == set(reference)
    for key in reference:
        assert_close(ours[key], reference[key], rtol=rtol, atol=atol, err_msg=key)


def _fc_weights_from_e3nn(plan, fctp, e3nn_weights) -> dict:
    """Our per-output weights (K, mul_out) from e3nn's per-instruction (mul1, mul2, mul_out)."""
    index = {key: i for i, (key, _) in enumerate(plan.irreps_in1)}
    index2 = {key: i for i, (key, _) in enumerate(plan.irreps_in2)}
    index_out = {key: i for i, (key, _) in enumerate(plan.irreps_out)}
    by_instruction = {
        (ins.i_in1, ins.i_in2, ins.i_out): w for ins, w in zip(fctp.instructions, e3nn_weights)
    }
    weights = {}
    for out, mul in plan.irreps_out:
        rows = [
            by_instruction[(index[p.in1], index2[p.in2], index_out[out])].reshape(-1, mul)
            for p in plan.paths_to(out)
        ]
        weights[out] = jnp.concatenate(rows, axis=0)
    return weights


def test_full_matches_e3nn_tensor_product():
    plan = _plans()["full"]  # mul2 > 1 and pseudotensors on both sides
    x1, x2, _ = _inputs(plan, 3, 0)
    ours = apply(plan, x1, x2)

    irreps1, irreps2 = plan.irreps_in1, plan.irreps_in2
    expected = jax.jit(e3nn.tensor_product)(_to_e3nn(x1, irreps1), _to_e3nn(x2, irreps2))
    assert [(_irrep(key), mul) for key, mul in plan.irreps_out] == [
        (ir, mul) for mul, ir in expected.irreps
    ]
    reference = {
        key: _from_e3nn_chunk(chunk, key)
        for (key, _), chunk in zip(plan.irreps_out, expected.chunks)
    }
    _assert_blocks_close(ours, reference)


@pytest.mark.parametrize(
    ("irrep_normalization", "path_normalization"), [("component", "element"), ("norm", "path")]
)
def test_fully_connected_matches_e3nn(irrep_normalization, path_normalization):
    x1, x2 = _random_blocks(IRREPS1, 4, 2), _random_blocks(IRREPS2_MUL, 4, 3)
    plan = tensor_product_plan(
        IRREPS1,
        IRREPS2_MUL,
        irreps_out=IRREPS_OUT,
        irrep_normalization=irrep_normalization,
        path_normalization=path_normalization,
    )
    fctp = FunctionalFullyConnectedTensorProduct(
        e3nn.Irreps([(mul, _irrep(key)) for key, mul in IRREPS1]),
        e3nn.Irreps([(mul, _irrep(key)) for key, mul in IRREPS2_MUL]),
        e3nn.Irreps([(mul, _irrep(key)) for key, mul in IRREPS_OUT]),
        irrep_normalization=irrep_normalization,
        path_normalization=path_normalization,
    )
    rng = np.random.default_rng(4)
    e3nn_weights = [jnp.asarray(rng.normal(size=ins.path_shape)) for ins in fctp.instructions]
    expected = jax.jit(jax.vmap(lambda a, b: fctp.left_right(e3nn_weights, a, b)))(
        _to_e3nn(x1, IRREPS1), _to_e3nn(x2, IRREPS2_MUL)
    )
    reference = {
        key: _from_e3nn_chunk(chunk, key) for (key, _), chunk in zip(IRREPS_OUT, expected.chunks)
    }
    weights = _fc_weights_from_e3nn(plan, fctp, e3nn_weights)
    _assert_blocks_close(apply(plan, x1, x2, weights), reference)

    if (irrep_normalization, path_normalization) == ("component", "element"):
        # the flat layout is the per-output weights raveled in output order
        flat = jnp.concatenate([w.ravel() for w in weights.values()])
        assert flat.shape == (plan.n_weights,)
        _assert_blocks_close(apply(plan, x1, x2, flat, method="dense"), reference)


@pytest.mark.parametrize("irreps2", [IRREPS2, (((0, 1), 2), ((1, -1), 2))], ids=["uvu", "uuu"])
def test_channelwise_matches_e3nn(irreps2):
    irreps1 = (((0, 1), 2), ((1, 1), 2), ((1, -1), 2), ((2, 1), 2))
    x1, x2 = _random_blocks(irreps1, 4, 5), _random_blocks(irreps2, 4, 6)
    plan = tensor_product_plan(irreps1, irreps2, "channelwise", filter_out=[0, 1, (2, 1)])
    weights = jnp.asarray(np.random.default_rng(7).normal(size=plan.n_weights))

    # e3nn: one output slot per path, in our path order
    connection = "uvu" if irreps2[0][1] == 1 else "uuu"
    keys1 = [key for key, _ in irreps1]
    keys2 = [key for key, _ in irreps2]
    slots = [(p.mul1, _irrep(p.out)) for p in plan.paths]
    instructions = [
        (keys1.index(p.in1), keys2.index(p.in2), i, connection, True)
        for i, p in enumerate(plan.paths)
    ]
    tp = FunctionalTensorProduct(
        e3nn.Irreps([(mul, _irrep(key)) for key, mul in irreps1]),
        e3nn.Irreps([(mul, _irrep(key)) for key, mul in irreps2]),
        e3nn.Irreps(slots),
        instructions,
    )
    # our per-channel weights are e3nn's (mul1, mul2=1) or (mul1,) path weights, in path order
    e3nn_weights, start = [], 0
    for ins in tp.instructions:
        size = math.prod(ins.path_shape)
        e3nn_weights.append(weights[start : start + size].reshape(ins.path_shape))
        start += size
    expected = jax.jit(jax.vmap(lambda a, b: tp.left_right(e3nn_weights, a, b)))(
        _to_e3nn(x1, irreps1), _to_e3nn(x2, irreps2)
    )
    reference = {}
    for p, chunk in zip(plan.paths, expected.chunks):
        block = _from_e3nn_chunk(chunk, p.out)
        reference[p.out] = (
            block if p.out not in reference else np.concatenate([reference[p.out], block], -1)
        )
    _assert_blocks_close(apply(plan, x1, x2, weights), reference)


def _plans():
    return {
        "full": tensor_product_plan(SMALL1, IRREPS2_MUL, "full"),
        "channelwise": tensor_product_plan(SMALL1, SMALL2, "channelwise"),
        "fully_connected": tensor_product_plan(SMALL1, SMALL2, irreps_out=SMALL_OUT),
    }


def _inputs(plan, n, seed, dtype=FLOAT):
    x1 = _random_blocks(plan.irreps_in1, n, seed, dtype)
    x2 = _random_blocks(plan.irreps_in2, n, seed + 1, dtype)
    weights = None
    if plan.mode != "full":
        weights = jnp.asarray(np.random.default_rng(seed + 2).normal(size=plan.n_weights), dtype)
    return x1, x2, weights


def _rotate(blocks: dict, R: np.ndarray) -> dict:
    return {key: np.einsum("ij,njm->nim", _wigner(key, R), x) for key, x in blocks.items()}


@pytest.mark.parametrize("mode", ["full", "channelwise", "fully_connected"])
def test_equivariance_rotation_and_inversion(mode):
    plan = _plans()[mode]
    x1, x2, weights = _inputs(plan, 3, 10)
    rotation = np.asarray(e3nn.rand_matrix(jax.random.key(0), (), dtype=FLOAT))
    for R in (rotation, -rotation, -np.eye(3)):
        rotated_out = apply(plan, _rotate(x1, R), _rotate(x2, R), weights)
        out_rotated = _rotate(apply(plan, x1, x2, weights), R)
        _assert_blocks_close(rotated_out, out_rotated)


@pytest.mark.parametrize("mode", ["full", "channelwise", "fully_connected"])
@pytest.mark.parametrize("method", ["compact", "unrolled", "dense"])
def test_methods_agree_with_fused(mode, method):
    plan = _plans()[mode]
    x1, x2, weights = _inputs(plan, 3, 10)
    expected = apply(plan, x1, x2, weights, method="fused")
    _assert_blocks_close(apply(plan, x1, x2, weights, method=method), expected)


@pytest.mark.parametrize(
    ("weighting", "method"),
    [
        ("per_sample", "fused"),
        ("per_sample", "compact"),
        *(
            pytest.param(w, m, marks=pytest.mark.slow)
            for w in ("shared", "none")
            for m in ("fused", "compact")
        ),
    ],
)
def test_channelwise_fused_matches_dense_with_derivatives(weighting, method):
    """The channel-wise kernels of method="fused" and "compact" against the per-path dense
    einsums: values, reverse mode w.r.t. every operand, forward mode, forward over reverse;
    x2 blocks of multiplicity 1 and mul1 mixed, batch axes that broadcast (x2 shared by the
    samples)."""
    irreps1 = (((0, 1), 2), ((1, -1), 2), ((1, 1), 2), ((2, 1), 2))
    irreps2 = (((0, 1), 1), ((1, -1), 2), ((1, 1), 1), ((2, 1), 2), ((3, -1), 1))
    plan = tensor_product_plan(irreps1, irreps2, "channelwise")
    rng = np.random.default_rng(50)
    x1 = _random_blocks(irreps1, 3, 51)
    x2 = {key: x[:1] for key, x in _random_blocks(irreps2, 1, 52).items()}  # (1, ...) broadcasts
    x1 = {key: x[:, None] for key, x in x1.items()}  # (3, 1, ...) x (1, ...) -> (3, 1)
    weights = {
        "per_sample": jnp.asarray(rng.normal(size=(3, 1, plan.n_weights)), FLOAT),
        "shared": jnp.asarray(rng.normal(size=plan.n_weights), FLOAT),
        "none": None,
    }[weighting]
    args = (x1, x2) if weights is None else (x1, x2, weights)

    def run(method):
        return lambda *a: tensor_product(plan, *a, method=method)

    def loss(method):
        return lambda *a: sum(jnp.sum(jnp.sin(v)) for v in run(method)(*a).values())

    argnums = tuple(range(len(args)))
    for fused, dense in [
        (jax.jit(run(method))(*args), jax.jit(run("dense"))(*args)),
        (
            jax.jit(jax.grad(loss(method), argnums))(*args),
            jax.jit(jax.grad(loss("dense"), argnums))(*args),
        ),
        # x1 and the weights only, as a per-edge convolution trains (x2 a constant)
        (
            jax.jit(jax.grad(loss(method), argnums[::2]))(*args),
            jax.jit(jax.grad(loss("dense"), argnums[::2]))(*args),
        ),
        (
            jax.jit(lambda *a: jax.jvp(run(method), a, a)[1])(*args),
            jax.jit(lambda *a: jax.jvp(run("dense"), a, a)[1])(*args),
        ),
        # forward over reverse: Hessian-vector products (the kernels' derivative rules are
        # themselves differentiable)
        (
            jax.jit(lambda *a: jax.jvp(jax.grad(loss(method), argnums), a, a)[1])(*args),
            jax.jit(lambda *a: jax.jvp(jax.grad(loss("dense"), argnums), a, a)[1])(*args),
        ),
    ]:
        for a, b in zip(jax.tree.leaves(fused), jax.tree.leaves(dense), strict=True):
            assert a.shape == b.shape
            assert_close(a, b, rtol=tol(1e-12, 1e-5), atol=tol(1e-12, 1e-5))


def test_modes_agree_with_per_sample_weights():
    """fully connected = full products @ W / sqrt(K); channelwise (mul2 = 1) = full * w."""
    full = tensor_product_plan(SMALL1, SMALL2, "full")
    fully_connected = _plans()["fully_connected"]
    channelwise = _plans()["channelwise"]
    x1, x2, _ = _inputs(full, 3, 20)
    products = apply(full, x1, x2)
    rng = np.random.default_rng(21)

    per_sample = jnp.asarray(rng.normal(size=(3, fully_connected.n_weights)))
    ours = apply(fully_connected, x1, x2, per_sample)
    start = 0
    for key, mul in fully_connected.irreps_out:
        channels = products[key].shape[-1]
        w = per_sample[:, start : start + channels * mul].reshape(3, channels, mul)
        start += channels * mul
        expected = np.einsum("nkc,ncw->nkw", products[key], w) / np.sqrt(channels)
        assert_close(ours[key], expected, rtol=1e-12, atol=1e-12)

    per_edge = jnp.asarray(rng.normal(size=(3, channelwise.n_weights)))
    ours = apply(channelwise, x1, x2, per_edge)
    assert channelwise.irreps_out == full.irreps_out
    start = 0
    for key, mul in channelwise.irreps_out:
        expected = products[key] * per_edge[:, None, start : start + mul]
        assert_close(ours[key], expected, rtol=1e-12, atol=1e-12)
        start += mul


def test_chunks_batch_axes_and_vmap():
    plan = _plans()["fully_connected"]
    x1, x2, _ = _inputs(plan, 7, 40)
    weights = jnp.asarray(np.random.default_rng(41).normal(size=(7, plan.n_weights)))
    expected = apply(plan, x1, x2, weights, chunk_size=None)

    # leading axes (7, 1) x (1, 1) broadcast, per-sample weights, 7 samples in chunks of 3:
    # two full chunks and a padded one
    x1_2d = {key: x[:, None] for key, x in x1.items()}
    x2_2d = {key: x[:1, None] for key, x in x2.items()}
    out = apply(plan, x1_2d, x2_2d, weights[:, None], chunk_size=3)
    first_x2 = apply(plan, x1, {key: x[:1] for key, x in x2.items()}, weights, chunk_size=None)
    _assert_blocks_close({key: v[:, 0] for key, v in out.items()}, first_x2)

    # vmap over a batch of parameter sets, through the chunked map
    stacked = jnp.stack([weights, 2 * weights])
    vmapped = jax.vmap(lambda w: apply(plan, x1, x2, w, chunk_size=3))(stacked)
    _assert_blocks_close({key: v[1] / 2 for key, v in vmapped.items()}, expected)


def test_jit_grad_matches_a_central_difference():
    plan = _plans()["fully_connected"]
    x1, x2, weights = _inputs(plan, 3, 30)

    def loss(x1, x2, weights):
        out = tensor_product(plan, x1, x2, weights)
        return sum(jnp.sum(jnp.sin(v)) for v in out.values())

    # reverse-mode gradient against a central difference along a random direction
    args = (x1, x2, weights)
    grads = jax.jit(jax.grad(loss, argnums=(0, 1, 2)))(*args)
    rng = np.random.default_rng(31)
    direction = jax.tree.map(lambda a: jnp.asarray(rng.normal(size=a.shape)), args)
    step = lambda s: jax.tree.map(lambda a, d: a + s * d, args, direction)  # noqa: E731
    # float32: a larger step, where the rounding (~1e-7 |loss| / eps) and the O(eps^2) error
    # of the difference are both below 1e-4 relative
    eps, jitted_loss = tol(1e-6, 3e-3), jax.jit(loss)
    numerical = (jitted_loss(*step(eps)) - jitted_loss(*step(-eps))) / (2 * eps)
    analytic = sum(
        jnp.vdot(g, d) for g, d in zip(jax.tree.leaves(grads), jax.tree.leaves(direction))
    )
    np.testing.assert_allclose(analytic, numerical, rtol=tol(1e-7, 5e-4))


# needs float64 inputs for the reference; the float32 run checks float32 everywhere else
@pytest.mark.x64_only
def test_float32_agrees_with_float64():
    plan = _plans()["fully_connected"]
    x1, x2, weights = _inputs(plan, 3, 30)
    expected = apply(plan, x1, x2, weights)

    as32 = lambda tree: jax.tree.map(lambda a: a.astype(jnp.float32), tree)  # noqa: E731
    out32 = apply(plan, as32(x1), as32(x2), as32(weights))
    for key, value in out32.items():
        assert value.dtype == jnp.float32
        np.testing.assert_allclose(value, expected[key], rtol=1e-5, atol=1e-5)


def test_plan_outputs_filter_and_counts():
    plan = tensor_product_plan(IRREPS1, IRREPS2, "full", filter_out=[0, (1, 1)])
    assert [key for key, _ in plan.irreps_out] == [(0, 1), (0, -1), (1, 1)]
    assert all(p.out in {(0, 1), (0, -1), (1, 1)} for p in plan.paths)
    # sigma3 = sigma1 sigma2 (-1)^(l1+l2+l3): 1e x 1o -> 0o, 1o, 2o
    full = tensor_product_plan(IRREPS1, IRREPS2_MUL, "full")
    assert {p.out for p in full.paths if p.in1 == (1, -1) and p.in2 == (1, 1)} == {
        (0, -1),
        (1, 1),
        (2, -1),
    }
    fc = tensor_product_plan(IRREPS1, IRREPS2_MUL, irreps_out=IRREPS_OUT)
    counts = fc.multiply_adds()
    assert counts["total"] == counts["products"] + counts["weights"]
    assert counts["products"] == sum(len(p.coefficients) * p.mul1 * p.mul2 for p in fc.paths)
    assert hash(fc) == hash(tensor_product_plan(IRREPS1, IRREPS2_MUL, irreps_out=IRREPS_OUT))
    assert irreps_of(_random_blocks(IRREPS1, 2, 0)) == IRREPS1


def test_errors():
    x1, x2 = _random_blocks(IRREPS1, 2, 0), _random_blocks(IRREPS2_MUL, 2, 1)
    with pytest.raises(ValueError, match="needs irreps_out"):
        tensor_product_plan(IRREPS1, IRREPS2)
    with pytest.raises(ValueError, match="produces the outputs"):
        tensor_product_plan(IRREPS1, IRREPS2, irreps_out=[((6, 1), 1)])
    with pytest.raises(ValueError, match="mul2 = 1 or mul2 = mul1"):
        tensor_product_plan(IRREPS1, IRREPS2_MUL, "channelwise")
    with pytest.raises(ValueError, match="mode must be"):
        tensor_product_plan(IRREPS1, IRREPS2, "uvw")
    plan = tensor_product_plan(IRREPS1, IRREPS2_MUL, irreps_out=IRREPS_OUT)
    with pytest.raises(ValueError, match="needs weights"):
        apply(plan, x1, x2)
    with pytest.raises(ValueError, match="entries on the last axis"):
        tensor_product(plan, x1, x2, jnp.zeros(3))
    with pytest.raises(ValueError, match="takes no weights"):
        tensor_product(tensor_product_plan(IRREPS1, IRREPS2_MUL, "full"), x1, x2, jnp.zeros(3))
    with pytest.raises(ValueError, match=r"must have shape"):
        tensor_product(plan, {**x1, (1, 1): x1[(1, 1)][..., :1]}, x2, jnp.zeros(plan.n_weights))


def test_auto_method_compiles_small_calls_compactly():
    """``method="auto"``: "compact" while samples x multiply-adds stays small, then by mode."""
    plan = _plans()["channelwise"]
    work = plan.multiply_adds()["total"]
    limit = 2**22 // work
    assert auto_method(plan, limit) == "compact"
    assert auto_method(plan, limit + 1) == auto_method(plan) != "compact"
    fc = _plans()["fully_connected"]
    assert auto_method(fc, 1) == "compact"
    assert auto_method(fc, 10**9) == "dense"
    # the compact program has a few operations per group and per output, none per path
    big = tensor_product_plan(
        [((l, s), 1) for l in range(6) for s in (1, -1)],
        [((l, 1), 1) for l in range(6)],
        "channelwise",
    )
    x1, x2, _ = _inputs(big, 2, 11)

    def n_equations(method):
        jaxpr = jax.make_jaxpr(lambda a, b: tensor_product(big, a, b, method=method))
        return len(jaxpr(x1, x2).eqns)

    compact = n_equations("compact")
    assert compact <= 4 * (len(big.irreps_out) + 6) < len(big.paths) / 2
    assert 2 * compact < n_equations("fused")
