"""e3nn counterparts over TensorMaps: Gate, NormActivation, TensorProduct, radial bases, RadialMLP.

References are e3nn-jax's functional layers fed the same inputs through
``eqx_tensor.o3.to_irreps_array`` (and read back with ``from_irreps_array``), its legacy
haiku-free ``FunctionalTensorProduct`` / ``FunctionalFullyConnectedTensorProduct`` for the
weighted products, and its radial functions. Equivariance is checked with
``eqx_tensor.o3.equivariance_error`` (random rotations, the inversion and an improper rotation).
"""

import math

import e3nn_jax as e3nn
import flax.linen as flax_nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from e3nn_jax.legacy import FunctionalFullyConnectedTensorProduct, FunctionalTensorProduct
from helpers import FLOAT, SLOW_WITH_X64, assert_close

import eqx_tensor as eqt
from eqx_tensor import nn, o3
from eqx_tensor.nn.norm_activation import channel_norms

# ----------------------------------------------------------------------------- helpers


def _tensor(spec, n=5, seed=0, dtype=FLOAT, extra_key=None):
    """A TensorMap with blocks ``(n, 2l+1, mul)`` of standard normal values, keys in spec order
    (in the run's precision by default)."""
    rng = np.random.default_rng(seed)
    samples = eqt.Labels.range("sample", n)
    blocks, keys = [], []
    for key, mul in spec:
        l = key[0]
        values = jnp.asarray(rng.normal(size=(n, 2 * l + 1, mul)), dtype)
        mu = eqt.Labels(["o3_mu"], np.arange(-l, l + 1).reshape(-1, 1))
        blocks.append(eqt.TensorBlock(values, samples, [mu], eqt.Labels.range("property", mul)))
        keys.append(key)
    return eqt.TensorMap(eqt.Labels(["o3_lambda", "o3_sigma"], np.array(keys)), blocks)


def _by_key(tensor):
    keys = tensor.keys
    return {(int(k["o3_lambda"]), int(k["o3_sigma"])): b for k, b in zip(keys, tensor.blocks())}


def _assert_tensors_close(ours, reference, atol=1e-12, properties=True):
    ours, reference = _by_key(ours), _by_key(reference)
    assert set(ours) == set(reference)
    for key, block in reference.items():
        assert_close(
            np.asarray(ours[key].values), np.asarray(block.values), atol=atol, rtol=0, err_msg=key
        )
        if properties:
            assert len(ours[key].properties) == len(block.properties)


def _e3nn(fn, *tensors):
    """Apply an e3nn-jax function to TensorMaps and read the result back as a TensorMap."""
    # jit: one compilation instead of one per eagerly dispatched e3nn-jax operation
    out = jax.jit(fn)(*(o3.to_irreps_array(t) for t in tensors))
    return o3.from_irreps_array(out.regroup() if len(set(out.irreps)) < len(out.irreps) else out)


def _take_sample(tensor, i):
    """The TensorMap restricted to its ``i``-th sample."""
    blocks = [
        eqt.TensorBlock(b.values[i : i + 1], b.samples[[i]], b.components, b.properties)
        for b in tensor.blocks()
    ]
    return eqt.TensorMap(tensor.keys, blocks)


def _finite(tree):
    return all(bool(jnp.all(jnp.isfinite(x))) for x in jax.tree_util.tree_leaves(tree))


SPEC1 = [((0, 1), 3), ((0, -1), 2), ((1, 1), 2), ((1, -1), 1), ((2, 1), 2)]
SPEC2_MUL = [((0, 1), 2), ((1, 1), 1), ((2, -1), 1)]
# gate layout: pseudoscalars first, so that the gates (last channels of 0e) are e3nn's too
GATE_SPEC = [((0, -1), 2), ((0, 1), 3 + 5), ((1, 1), 2), ((1, -1), 1), ((2, 1), 2)]


# ----------------------------------------------------------------------------- radial


X = np.concatenate([np.linspace(-0.5, 2.5, 61), [0.0, 1.0, 2.0]])


@pytest.mark.parametrize("basis", ["gaussian", "cosine", "smooth_finite", "fourier"])
@pytest.mark.parametrize(
    "ends", [(True, True), (False, False), (True, False), (False, True)], ids=str
)
def test_soft_one_hot_linspace_matches_e3nn(basis, ends):
    start_zero, end_zero = ends
    if basis == "fourier" and start_zero != end_zero:
        with pytest.raises(ValueError, match="fourier"):
            nn.soft_one_hot_linspace(
                X, start=0.0, end=2.0, number=5, basis=basis, cutoff=None,
                start_zero=start_zero, end_zero=end_zero,
            )  # fmt: skip
        return
    kwargs = dict(start=0.0, end=2.0, number=5, basis=basis, start_zero=start_zero)
    ours = nn.soft_one_hot_linspace(X, cutoff=None, end_zero=end_zero, **kwargs)
    expected = e3nn.soft_one_hot_linspace(jnp.asarray(X), end_zero=end_zero, **kwargs)
    assert ours.shape == (len(X), 5)
    assert_close(ours, expected, atol=1e-12, rtol=0)


def test_radial_functions_match_e3nn():
    x = jnp.asarray(X)
    assert_close(nn.bessel(x, 6, 2.0), e3nn.bessel(x, 6, 2.0), atol=1e-12, rtol=0)
    assert_close(nn.sus(x), e3nn.sus(x), atol=1e-15, rtol=0)
    assert_close(nn.soft_envelope(x, 2.0), e3nn.soft_envelope(x, 2.0), atol=1e-12, rtol=0)
    for n0, n1 in [(1, 2), (5, 2), (4, 4), (10, 5)]:
        assert_close(
            nn.poly_envelope(n0, n1, 2.0)(x), e3nn.poly_envelope(n0, n1, 2.0)(x), atol=1e-10
        )
    # DimeNet's u_p is poly_envelope(p - 1, 2)
    for p in (3, 6):
        assert_close(
            nn.polynomial_envelope(x, 2.0, p), e3nn.poly_envelope(p - 1, 2, 2.0)(x), atol=1e-10
        )
    cosine = nn.cosine_cutoff(x, 2.0)
    assert_close(cosine[X == 0.0], 1.0)
    assert_close(cosine[X >= 2.0], 0.0)
    assert_close(cosine[X == 1.0], 0.5, atol=1e-15)
    # envelopes are 1 at 0 and 0 from the cutoff on
    for env in (nn.polynomial_envelope(x, 2.0), nn.poly_envelope(3, 3, 2.0)(x)):
        assert_close(env[X == 0.0], 1.0, atol=1e-12)
        assert_close(env[X >= 2.0], 0.0)


def test_radial_gradients_finite_at_zero_and_cutoff():
    x = jnp.asarray([0.0, 1e-300, 0.5, 2.0, 3.0])
    functions = {
        "bessel": lambda r: nn.bessel(r, 4, 2.0),
        "smooth_finite": lambda r: nn.soft_one_hot_linspace(
            r, start=0.0, end=2.0, number=4, basis="smooth_finite"
        ),
        "gaussian": lambda r: nn.radial_basis(r, "gaussian", 4, 2.0),
        "fourier": lambda r: nn.radial_basis(r, "fourier", 4, 2.0),
        "polynomial": lambda r: nn.polynomial_envelope(r, 2.0),
        "poly": lambda r: nn.poly_envelope(4, 4, 2.0)(r),
        "soft": lambda r: nn.soft_envelope(r, 2.0),
        "cosine": lambda r: nn.cosine_cutoff(r, 2.0),
    }
    for name, fn in functions.items():
        grads = jax.vmap(jax.grad(lambda r, fn=fn: jnp.sum(fn(r))))(x)
        assert _finite(grads), name
    # bessel at 0 is its limit, with zero slope (sin(ax)/x is even)
    assert_close(nn.bessel(jnp.zeros(1), 3, 2.0)[0], nn.bessel(1e-8, 3, 2.0), rtol=1e-12)
    # safe_norm: zero gradient at the zero vector, where jnp.linalg.norm gives NaN
    vectors = jnp.asarray([[0.0, 0.0, 0.0], [3.0, 0.0, 4.0]])
    assert_close(nn.safe_norm(vectors), [0.0, 5.0])
    grad = jax.grad(lambda v: jnp.sum(nn.safe_norm(v)))(vectors)
    assert_close(grad, [[0, 0, 0], [0.6, 0, 0.8]])
    assert not _finite(jax.grad(lambda v: jnp.sum(jnp.linalg.norm(v, axis=-1)))(vectors))


def test_radial_mlp_shapes_envelope_and_errors():
    lengths = jnp.asarray([0.0, 0.5, 1.0, 2.0, 2.5])
    mlp = nn.RadialMLP(out_features=7, hidden=(16, 16), n_basis=6, r_max=2.0)
    params = jax.jit(mlp.init)(jax.random.key(0), lengths)
    assert jax.tree_util.tree_map(jnp.shape, params["params"]) == {
        "weight_0": (6, 16),
        "weight_1": (16, 16),
        "weight_2": (16, 7),
    }
    # jit: one compilation instead of one eager kernel per operation
    out = jax.jit(mlp.apply)(params, lengths)
    assert out.shape == (5, 7) and out.dtype == FLOAT
    assert_close(out[3:], 0.0)  # beyond the cutoff the envelope is zero
    assert float(jnp.abs(out[:3]).max()) > 0.0
    # the same weights without envelope; a basis given as a function
    plain = nn.RadialMLP(7, hidden=(16, 16), n_basis=6, r_max=2.0, envelope=None)
    expected = jax.jit(plain.apply)(params, lengths) * nn.polynomial_envelope(lengths, 2.0)[:, None]
    assert_close(out, expected, rtol=1e-12)
    custom = nn.RadialMLP(3, hidden=(), basis=lambda r: nn.bessel(r, 4, 2.0), envelope="soft")
    p = {"params": {"weight_0": jnp.ones((4, 3))}}
    assert custom.apply(p, lengths[None]).shape == (1, 5, 3)
    with pytest.raises(ValueError, match="basis must be one of"):
        nn.RadialMLP(3, basis="laguerre").init(jax.random.key(0), lengths)
    with pytest.raises(ValueError, match="envelope must be one of"):
        nn.RadialMLP(3, envelope="hard").init(jax.random.key(0), lengths)


# ----------------------------------------------------------------------------- norm activation


@pytest.mark.parametrize("normalization", ["component", "norm"])
def test_norm_activation_matches_e3nn(normalization):
    x = _tensor(SPEC1, seed=1)
    ours = nn.NormActivation(jnp.tanh, normalization=normalization).apply({}, x)
    acts = [None if key[0] == 0 else jnp.tanh for key, _ in SPEC1]
    expected = _e3nn(lambda a: e3nn.norm_activation(a, acts, normalization=normalization), x)
    _assert_tensors_close(ours, expected)
    assert ours.block(0).properties == x.block(0).properties
    # apply_to_scalars: x f(|x|) on the scalars too
    ours = nn.norm_activation(x, jax.nn.sigmoid, apply_to_scalars=True)
    expected = _e3nn(lambda a: e3nn.norm_activation(a, [jax.nn.sigmoid] * len(SPEC1)), x)
    _assert_tensors_close(ours, expected)


def test_norm_activation_zero_channel_gradient_and_bias():
    x = _tensor([((0, 1), 2), ((1, 1), 2), ((2, -1), 1)], n=3, seed=2)
    # zero out one channel of one sample
    values = x.block(1).values.at[1, :, 0].set(0.0)
    blocks = x.blocks()
    blocks[1] = eqt.TensorBlock(
        values, blocks[1].samples, blocks[1].components, blocks[1].properties
    )
    x = eqt.TensorMap(x.keys, blocks)

    def f(v):
        block = eqt.TensorBlock(v, blocks[1].samples, blocks[1].components, blocks[1].properties)
        tensor = eqt.TensorMap(x.keys[[1]], [block])
        return nn.norm_activation(tensor, jax.nn.sigmoid).block(0).values

    jacobian = jax.jacfwd(f)(values)  # (3, 3, 2, 3, 3, 2)
    assert _finite(jacobian)
    # at x = 0 the derivative of x f(|x|) is f(0) times the identity
    assert_close(jacobian[1, :, 0, 1, :, 0], 0.5 * np.eye(3), atol=1e-15)
    assert_close(f(values)[1, :, 0], 0.0)

    layer = nn.NormActivation(jax.nn.sigmoid, bias=True)
    params = layer.init(jax.random.key(0), x)
    shapes = jax.tree_util.tree_map(jnp.shape, params["params"]["bias"])
    assert shapes == ((2,), (1,))  # one bias per channel of each covariant block
    assert_close(
        layer.apply(params, x).block(1).values,
        nn.norm_activation(x, jax.nn.sigmoid).block(1).values,
    )
    shifted = jax.tree_util.tree_map(lambda b: b + 0.3, params)
    norms = channel_norms(x.block(2).values)
    assert_close(
        layer.apply(shifted, x).block(2).values,
        x.block(2).values * jax.nn.sigmoid(norms + 0.3),
        atol=1e-14,
    )
    grads = jax.grad(lambda p: sum(jnp.sum(b.values**2) for b in layer.apply(p, x).blocks()))(
        params
    )
    assert _finite(grads)


def test_norm_activation_propagates_explicit_gradients():
    vectors = jax.random.normal(jax.random.key(3), (4, 3))
    sh = o3.spherical_harmonics(vectors, [1, 2], gradients=True)
    # jit: one compilation instead of one eager kernel per operation
    out = jax.jit(nn.NormActivation(jnp.tanh).apply)({}, sh)

    def values(v):
        tensor = o3.spherical_harmonics(v, [1, 2])
        return [b.values for b in nn.norm_activation(tensor, jnp.tanh).blocks()]

    jacobians = jax.jit(jax.jacfwd(values))(vectors)  # per block (4, 2l+1, 1, 4, 3)
    for block, jacobian in zip(out.blocks(), jacobians):
        # each sample depends on its own vector only: the diagonal, as (4, 3, 2l+1, 1)
        expected = jnp.einsum("imkia->iamk", jacobian)
        assert_close(block.gradient("positions").values, expected, atol=1e-12)


# ----------------------------------------------------------------------------- gate


def test_gate_matches_e3nn_even_gates():
    x = _tensor(GATE_SPEC, seed=4)
    ours = nn.Gate().apply({}, x)
    expected = _e3nn(e3nn.gate, x)
    # 0o through soft_odd stays 0o, 3 of the 8 scalars are kept, 5 channels gated
    assert _by_key(ours)[(0, 1)].values.shape == (5, 1, 3)
    assert ours.keys == eqt.Labels(
        ["o3_lambda", "o3_sigma"], np.array([[0, -1], [0, 1], [1, 1], [1, -1], [2, 1]])
    )
    _assert_tensors_close(ours, expected)
    assert _by_key(ours)[(0, 1)].properties == eqt.Labels.range("property", 3)
    assert _by_key(ours)[(2, 1)].properties == eqt.Labels.range("property", 2)


def test_gate_matches_e3nn_odd_gates_flip_sigma():
    # gates are the last 5 channels of the pseudoscalars, through tanh (odd): 1o -> 1e etc.
    spec = [((0, 1), 3), ((0, -1), 2 + 5), ((1, 1), 2), ((1, -1), 1), ((2, 1), 2)]
    x = _tensor(spec, seed=5)
    ours = nn.gate(x, gates_sigma=-1, even_act=jax.nn.silu)
    expected = _e3nn(lambda a: e3nn.gate(a, even_act=jax.nn.silu), x)
    _assert_tensors_close(ours, expected)
    assert sorted(_by_key(ours)) == [(0, -1), (0, 1), (1, -1), (1, 1), (2, -1)]
    # a gated block keeps its channels: (1, 1) in -> (1, -1) out with the same 2 properties
    assert _by_key(ours)[(1, -1)].values.shape == (5, 3, 2)


def test_gate_scalars_only_and_all_channels_gates():
    x = _tensor([((0, 1), 4), ((0, -1), 3)], seed=6)
    _assert_tensors_close(nn.gate(x), _e3nn(e3nn.gate, x))
    # every scalar is a gate: no scalar block left in the output
    x = _tensor([((0, 1), 3), ((1, 1), 2), ((2, -1), 1)], seed=7)
    ours = nn.gate(x, normalize_act=False)
    assert sorted(_by_key(ours)) == [(1, 1), (2, -1)]
    _assert_tensors_close(ours, _e3nn(lambda a: e3nn.gate(a, normalize_act=False), x))


def test_gate_groups_by_other_key_dimensions():
    a, b = _tensor(GATE_SPEC, seed=8), _tensor(GATE_SPEC, seed=9)
    keys = np.array([[t, *k] for t in (1, 6) for k, _ in GATE_SPEC])
    both = eqt.TensorMap(
        eqt.Labels(["center_type", "o3_lambda", "o3_sigma"], keys), a.blocks() + b.blocks()
    )
    out = nn.gate(both)
    assert out.keys.names == ["center_type", "o3_lambda", "o3_sigma"]
    for center_type, single in ((1, a), (6, b)):
        expected = _by_key(nn.gate(single))
        for key, block in expected.items():
            got = out.block(center_type=center_type, o3_lambda=key[0], o3_sigma=key[1])
            np.testing.assert_array_equal(got.values, block.values)


def test_gate_errors():
    with pytest.raises(ValueError, match="needs one gate per channel"):
        nn.gate(_tensor([((0, 1), 2), ((1, 1), 3)]))
    with pytest.raises(ValueError, match="no gates block"):
        nn.gate(_tensor([((0, -1), 4), ((1, 1), 3)]))
    with pytest.raises(ValueError, match="odd_act must be an odd or an even"):
        nn.gate(_tensor(GATE_SPEC), odd_act=jax.nn.relu)
    # an even odd_act turns pseudoscalars into scalars, next to the scalars: refused
    with pytest.raises(ValueError, match="two outputs"):
        nn.gate(_tensor(GATE_SPEC), odd_act=jnp.cos)
    sh = o3.spherical_harmonics(jnp.ones((2, 3)), [0, 1], gradients=True)
    with pytest.raises(ValueError, match="explicit gradients"):
        nn.gate(sh)
    with pytest.raises(TypeError, match="expects a TensorMap"):
        nn.gate(jnp.ones(3))


# ----------------------------------------------------------------------------- tensor product


def _sh(vectors, ls=(0, 1, 2)):
    return o3.spherical_harmonics(
        vectors, list(ls), samples=eqt.Labels.range("sample", len(vectors))
    )


def test_full_tensor_product_matches_e3nn():
    x1, x2 = _tensor(SPEC1, seed=10), _tensor(SPEC2_MUL, seed=11)
    tp = nn.TensorProduct(mode="full")
    assert tp.init(jax.random.key(0), x1, x2) == {}
    # jit: one compilation instead of one eager kernel per operation
    ours = jax.jit(tp.apply)({}, x1, x2)
    _assert_tensors_close(ours, _e3nn(e3nn.tensor_product, x1, x2))
    # filter_ir_out: by o3_lambda, by key and by irrep string
    ours = jax.jit(nn.TensorProduct("full", out_lambdas=[0, (1, -1), "2e"]).apply)({}, x1, x2)
    expected = _e3nn(
        lambda a, b: e3nn.tensor_product(a, b, filter_ir_out=["0e", "0o", "1e", "2e"]), x1, x2
    )
    assert sorted(_by_key(ours)) == [(0, -1), (0, 1), (1, -1), (2, 1)]
    _assert_tensors_close(ours, expected)


def test_output_properties_describe_the_channels():
    x1 = _tensor([((0, 1), 2), ((1, 1), 1)], n=2)
    x2 = _tensor([((1, 1), 1)], n=2)
    full = nn.TensorProduct("full").apply({}, x1, x2)
    block = full.block(o3_lambda=1, o3_sigma=1)  # only 0e x 1o (2 channels x 1)
    assert block.properties.names == [
        "o3_lambda_1", "o3_sigma_1", "property_1", "o3_lambda_2", "o3_sigma_2", "property_2",
    ]  # fmt: skip
    np.testing.assert_array_equal(block.properties.values, [[0, 1, 0, 1, 1, 0], [0, 1, 1, 1, 1, 0]])
    # 1o x 1o -> 1e: o3_sigma = 1 * 1 * (-1)**(1 + 1 + 1) = -1
    np.testing.assert_array_equal(
        full.block(o3_lambda=1, o3_sigma=-1).properties.values, [[1, 1, 0, 1, 1, 0]]
    )
    channelwise = nn.TensorProduct("channelwise", internal_weights=False).apply({}, x1, x2)
    block = channelwise.block(o3_lambda=1, o3_sigma=1)
    assert block.properties.names == [
        "o3_lambda_1", "o3_sigma_1", "o3_lambda_2", "o3_sigma_2", "property",
    ]  # fmt: skip
    np.testing.assert_array_equal(block.properties.values, [[0, 1, 1, 1, 0], [0, 1, 1, 1, 1]])
    fc = nn.TensorProduct(
        out_features={"0e": 3, (1, 1): 2},
        out_properties={"0e": eqt.Labels.range("n", 3), (1, 1): eqt.Labels.range("n", 2)},
    )
    out = fc.apply(fc.init(jax.random.key(0), x1, x2), x1, x2)
    assert [tuple(k.values) for k in out.keys] == [(0, 1), (1, 1)]
    assert out.block(0).properties == eqt.Labels.range("n", 3)
    assert out.block(0).samples == x1.block(0).samples


def _fc_weights_from_e3nn(plan, fctp, e3nn_weights):
    """Our flat weights from e3nn's per-instruction (mul1, mul2, mul_out) weights."""
    index1 = {key: i for i, (key, _) in enumerate(plan.irreps_in1)}
    index2 = {key: i for i, (key, _) in enumerate(plan.irreps_in2)}
    index_out = {key: i for i, (key, _) in enumerate(plan.irreps_out)}
    by_instruction = {
        (ins.i_in1, ins.i_in2, ins.i_out): w for ins, w in zip(fctp.instructions, e3nn_weights)
    }
    flat = []
    for out, _ in plan.irreps_out:
        for p in plan.paths_to(out):
            flat.append(by_instruction[(index1[p.in1], index2[p.in2], index_out[out])].ravel())
    return jnp.concatenate(flat)


def _e3nn_irreps(tensor):
    return o3.to_irreps_array(tensor).irreps


def test_fully_connected_matches_e3nn():
    x1, x2 = _tensor(SPEC1, n=4, seed=12), _tensor(SPEC2_MUL, n=4, seed=13)
    out_spec = {(0, 1): 3, (1, 1): 2, (1, -1): 2, (2, 1): 1, (3, -1): 1}
    tp = nn.TensorProduct(out_features=out_spec)
    plan = tp.plan(x1, x2)
    assert [k for k, _ in plan.irreps_out] == list(out_spec)
    fctp = FunctionalFullyConnectedTensorProduct(
        _e3nn_irreps(x1),
        _e3nn_irreps(x2),
        e3nn.Irreps([(mul, o3.key_to_irrep(*key)) for key, mul in out_spec.items()]),
    )
    rng = np.random.default_rng(14)
    e3nn_weights = [jnp.asarray(rng.normal(size=ins.path_shape)) for ins in fctp.instructions]
    params = {"params": {"weight": _fc_weights_from_e3nn(plan, fctp, e3nn_weights)}}
    assert params["params"]["weight"].shape == (tp.n_weights(x1, x2),)
    shapes = jax.eval_shape(tp.init, jax.random.key(0), x1, x2)
    assert jax.tree_util.tree_map(lambda a: a.shape, shapes) == jax.tree_util.tree_map(
        jnp.shape, params
    )
    expected = _e3nn(
        lambda a, b: jax.vmap(lambda u, v: fctp.left_right(e3nn_weights, u, v))(a, b), x1, x2
    )
    # jit: one compilation instead of one eager kernel per operation
    apply = jax.jit(tp.apply)
    _assert_tensors_close(apply(params, x1, x2), expected)
    # the same weights supplied per sample give the same result
    per_sample = jnp.tile(params["params"]["weight"], (4, 1))
    _assert_tensors_close(apply({}, x1, x2, weights=per_sample), expected)


def test_channelwise_matches_e3nn_and_per_sample_weights():
    x1 = _tensor([((0, 1), 2), ((1, 1), 2), ((1, -1), 2), ((2, 1), 2)], n=4, seed=15)
    x2 = _sh(jax.random.normal(jax.random.key(16), (4, 3)), (0, 1, 2))
    tp = nn.TensorProduct("channelwise", out_lambdas=[0, 1, (2, 1)])
    # jit: one compilation instead of one eager kernel per operation
    params = jax.jit(tp.init)(jax.random.key(17), x1, x2)
    apply = jax.jit(tp.apply)
    plan = tp.plan(x1, x2)
    weights = params["params"]["weight"]
    assert weights.shape == (plan.n_weights,)

    keys1 = [key for key, _ in plan.irreps_in1]
    keys2 = [key for key, _ in plan.irreps_in2]
    reference = FunctionalTensorProduct(
        _e3nn_irreps(x1),
        _e3nn_irreps(x2),
        e3nn.Irreps([(p.mul1, o3.key_to_irrep(*p.out)) for p in plan.paths]),
        [
            (keys1.index(p.in1), keys2.index(p.in2), i, "uvu", True)
            for i, p in enumerate(plan.paths)
        ],
    )
    e3nn_weights, start = [], 0
    for ins in reference.instructions:
        size = math.prod(ins.path_shape)
        e3nn_weights.append(weights[start : start + size].reshape(ins.path_shape))
        start += size
    expected = jax.jit(jax.vmap(lambda u, v: reference.left_right(e3nn_weights, u, v)))(
        o3.to_irreps_array(x1), o3.to_irreps_array(x2)
    )
    # e3nn has one output chunk per path: concatenate those of one key, in path order
    chunks = {}
    for p, chunk in zip(plan.paths, expected.chunks):
        block = jnp.einsum("ki,nmi->nkm", o3.change_of_basis(p.out[0]), chunk)
        chunks[p.out] = jnp.concatenate([chunks[p.out], block], -1) if p.out in chunks else block
    ours = _by_key(apply(params, x1, x2))
    assert set(ours) == set(chunks)
    for key, block in chunks.items():
        assert_close(ours[key].values, block, atol=1e-12, rtol=0)

    # per-sample weights: sample i with weights w_i equals a one-sample product with w_i
    per_sample = jax.random.normal(jax.random.key(18), (4, plan.n_weights), FLOAT)
    out = _by_key(apply(params, x1, x2, weights=per_sample))
    for i in (0, 3):
        one = [_take_sample(t, i) for t in (x1, x2)]
        single = _by_key(apply({"params": {"weight": per_sample[i]}}, *one))
        for key, block in single.items():
            assert_close(out[key].values[i : i + 1], block.values, atol=1e-12)
    # no internal weights: the unweighted product
    unweighted = nn.TensorProduct("channelwise", internal_weights=False, out_lambdas=[0, 1, (2, 1)])
    assert unweighted.init(jax.random.key(0), x1, x2) == {}


def test_tensor_product_errors():
    x1, x2 = _tensor(SPEC1, n=3), _tensor(SPEC2_MUL, n=3)
    with pytest.raises(ValueError, match="needs out_features"):
        nn.TensorProduct().init(jax.random.key(0), x1, x2)
    with pytest.raises(ValueError, match="out_features is for mode='fully_connected'"):
        nn.TensorProduct("full", out_features=2).apply({}, x1, x2)
    with pytest.raises(ValueError, match="mode must be one of"):
        nn.TensorProduct("uvw").apply({}, x1, x2)
    with pytest.raises(ValueError, match="other samples"):
        nn.TensorProduct("full").apply({}, x1, _tensor(SPEC2_MUL, n=4))
    with pytest.raises(ValueError, match="weights must have shape"):
        nn.TensorProduct(out_features=2).apply({}, x1, x2, weights=jnp.ones((2, 3)))
    with pytest.raises(ValueError, match="takes no weights"):
        nn.TensorProduct("full").apply({}, x1, x2, weights=jnp.ones(3))
    with pytest.raises(ValueError, match="exactly"):
        keyed = eqt.TensorMap(eqt.Labels(["o3_lambda"], np.array([[0]])), [x1.block(0)])
        nn.TensorProduct("full").apply({}, keyed, x2)
    with pytest.raises(ValueError, match="explicit gradients"):
        sh = o3.spherical_harmonics(jnp.ones((3, 3)), 1, gradients=True)
        nn.TensorProduct("full").apply({}, x1, sh)
    with pytest.raises(ValueError, match="no output block"):
        nn.TensorProduct("full", out_lambdas=[9]).apply({}, x1, x2)


# ----------------------------------------------------------------------------- equivariance

EQ_SPEC = [((0, 1), 3), ((0, -1), 1), ((1, 1), 2), ((1, -1), 1), ((2, 1), 1)]
ODD_GATE_SPEC = [((0, 1), 3), ((0, -1), 2 + 5), ((1, 1), 2), ((1, -1), 1), ((2, 1), 2)]
TP_MODES = {
    "full": dict(out_lambdas=[0, 1, 2]),
    "channelwise": {},
    "fully_connected": dict(out_features=3),
}


def _radial_params(n_in, n_hidden, n_out, seed, dtype):
    """RadialMLP parameters drawn directly: they are a plain pytree."""
    rng = np.random.default_rng(seed)
    return {
        "params": {
            "weight_0": jnp.asarray(rng.normal(size=(n_in, n_hidden)), dtype),
            "weight_1": jnp.asarray(rng.normal(size=(n_hidden, n_out)), dtype),
        }
    }


def _equivariance_case(name, dtype):
    """``(fn, inputs)`` for one covariant layer; products get per-edge weights from lengths."""
    vectors = jnp.asarray(np.random.default_rng(21).normal(size=(5, 3)), dtype)
    if name == "gate":
        return nn.Gate().apply, ({}, _tensor(GATE_SPEC, n=5, seed=23, dtype=dtype))
    if name == "gate_odd":
        x = _tensor(ODD_GATE_SPEC, n=5, seed=24, dtype=dtype)
        return lambda t: nn.gate(t, gates_sigma=-1), (x,)
    x = _tensor(EQ_SPEC, n=5, seed=20, dtype=dtype)
    if name == "norm_activation":
        return nn.NormActivation(jnp.tanh, normalization="norm").apply, ({}, x)
    mode = name.removeprefix("tensor_product_")
    tp = nn.TensorProduct(mode, **TP_MODES[mode])
    n_weights = tp.n_weights(x, _sh(vectors))
    radial = nn.RadialMLP(max(n_weights, 1), hidden=(8,), n_basis=8, r_max=3.0)
    radial_params = _radial_params(8, 8, max(n_weights, 1), 22, dtype)

    def fn(x, v):
        # vectors rotate as vectors: the spherical harmonics follow, the lengths do not change
        weights = radial.apply(radial_params, nn.safe_norm(v)) if n_weights else None
        return tp.apply({}, x, _sh(v), weights=weights)

    return fn, (x, vectors)


@pytest.mark.parametrize(
    "dtype, tolerance",
    [
        pytest.param(jnp.float64, 1e-12, marks=pytest.mark.x64_only),
        pytest.param(jnp.float32, 1e-5, marks=SLOW_WITH_X64),
    ],
)
@pytest.mark.parametrize(
    "name",
    [
        "gate",
        "gate_odd",
        "norm_activation",
        "tensor_product_full",
        "tensor_product_channelwise",
        "tensor_product_fully_connected",
    ],
)
def test_equivariance(name, dtype, tolerance):
    fn, inputs = _equivariance_case(name, dtype)
    # rotated inputs have the same metadata: one compilation serves every group element
    fn = jax.jit(fn)
    error = o3.equivariance_error(
        fn, inputs, input_kinds="vector", key=jax.random.key(1), n_rotations=2
    )
    assert error < tolerance, error
    # outputs of order one, so that the absolute error is a meaningful check
    out = fn(*inputs)
    assert all(b.values.dtype == dtype for b in out.blocks())
    assert max(float(jnp.abs(b.values).max()) for b in out.blocks()) > 0.1


# ----------------------------------------------------------------------------- training


SMALL_SPEC = [((0, 1), 2), ((1, 1), 2), ((1, -1), 1)]


class _Block(flax_nn.Module):
    """SH of edge vectors -> TP(features, SH) weighted per edge -> Gate -> NormActivation."""

    @flax_nn.compact
    def __call__(self, x, vectors):
        sh = _sh(vectors, (0, 1))
        n_gated = 2 + 1  # channels of (1, 1), (1, -1) below
        tp = nn.TensorProduct(out_features={(0, 1): 2 + n_gated, (1, 1): 2, (1, -1): 1})
        radial = nn.RadialMLP(tp.n_weights(x, sh), hidden=(8,), r_max=3.0)
        h = tp(x, sh, weights=radial(nn.safe_norm(vectors)))
        h = nn.Gate()(h)
        h = nn.NormActivation(jax.nn.sigmoid, bias=True)(h)
        # internal weights too: an invariant readout
        readout = nn.TensorProduct(out_features={(0, 1): 1})(h, h)
        return readout


@pytest.fixture(scope="module")
def block_model():
    """The model, its parameters, features and edge vectors (two of zero length)."""
    x = _tensor(SMALL_SPEC, n=4, seed=30)
    vectors = jnp.asarray([[0.0, 0.0, 0.0], [1.0, 0.5, -0.3], [0.0, 0.0, 0.0], [0.2, -1.0, 0.4]])
    model = _Block()
    # jit: one compilation instead of one per eagerly dispatched operation
    params = jax.jit(model.init)(jax.random.key(0), x, vectors)
    return model, params, x, vectors


def test_gradients_finite_for_zero_length_edges(block_model):
    model, params, x, vectors = block_model

    def loss(params, x, vectors):
        return jnp.sum(model.apply(params, x, vectors).block(0).values ** 2)

    value_and_grad = jax.jit(jax.value_and_grad(loss, argnums=(0, 1, 2)))
    value, grads = value_and_grad(params, x, vectors)
    assert bool(jnp.isfinite(value)) and float(value) > 0 and _finite(grads)
    # zero features: NormActivation and Gate at exactly zero still have finite gradients
    zeros = jax.tree_util.tree_map(jnp.zeros_like, x)
    assert _finite(value_and_grad(params, zeros, vectors))


def test_jit_grad_and_optax_step(block_model):
    model, params, x, vectors = block_model
    # the first product takes its weights from the radial MLP: no parameters of its own
    assert set(params["params"]) == {"RadialMLP_0", "NormActivation_0", "TensorProduct_1"}
    target = jnp.linspace(-1.0, 1.0, 4)[:, None, None]
    optimizer = optax.adam(1e-2)
    state = optimizer.init(params)

    def loss(params):
        return jnp.mean((model.apply(params, x, vectors).block(0).values - target) ** 2)

    @jax.jit
    def step(params, state):
        value, grads = jax.value_and_grad(loss)(params)
        updates, state = optimizer.update(grads, state, params)
        return optax.apply_updates(params, updates), state, value

    losses = []
    for _ in range(10):
        params, state, value = step(params, state)
        losses.append(float(value))
    assert all(math.isfinite(v) for v in losses)
    assert losses[-1] < losses[0]
