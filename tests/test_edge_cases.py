"""Edge cases: empty blocks, blocks without properties, TensorMaps without blocks, constant
features (zero variance), tiny radii. Outputs have the right shapes and gradients stay finite.

Zero-length edge vectors are covered with the layers that see them (``test_nn_e3nn.py``).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import X64

import eqx_tensor as eqt
from eqx_tensor import Labels, TensorBlock, TensorMap, nn, o3


def _tensor(
    n_samples: tuple[int, int], constant: bool = False, n_properties: tuple[int, int] = (3, 3)
) -> TensorMap:
    """Blocks (o3_lambda, o3_sigma) = (0, 1) and (1, 1) with the given numbers of samples."""
    rng = np.random.default_rng(0)
    blocks = []
    for l, n, n_p in zip((0, 1), n_samples, n_properties):
        samples = Labels(["system", "atom"], np.array([[0, i] for i in range(n)]).reshape(-1, 2))
        shape = (n, 2 * l + 1, n_p)
        values = np.ones(shape) if constant else rng.normal(size=shape)
        block = TensorBlock(
            jnp.asarray(values),
            samples,
            [Labels(["o3_mu"], np.arange(-l, l + 1).reshape(-1, 1))],
            Labels.range("p", n_p),
        )
        blocks.append(block)
    return TensorMap(Labels(["o3_lambda", "o3_sigma"], np.array([[0, 1], [1, 1]])), blocks)


def _all_finite(tree) -> bool:
    return all(np.all(np.isfinite(np.asarray(leaf))) for leaf in jax.tree.leaves(tree))


def _total(tensor: TensorMap) -> jax.Array:
    return sum(jnp.sum(block.values) for block in tensor)


MODELS = {
    "mlp": lambda: nn.Sequential(
        [
            nn.EquivariantLinear(out_features=4),
            nn.InvariantSiLU(),
            nn.EquivariantLinear(out_features=2),
        ]
    ),
    "layer_norm": lambda: nn.LayerNorm(),
    "invariant_layer_norm": lambda: nn.InvariantLayerNorm(),
    "norm_activation": lambda: nn.NormActivation(jnp.tanh),
}


@pytest.mark.parametrize("name", list(MODELS))
@pytest.mark.parametrize("constant", [False, True])
def test_layers_and_loss_with_an_empty_block(name, constant):
    x = _tensor((0, 4), constant=constant)
    model = MODELS[name]()
    # jit: one compilation instead of one eager kernel per operation and shape
    params = jax.jit(model.init)(jax.random.key(0), x)

    def loss(params, x):
        y = model.apply(params, x)
        return nn.mean_squared_error(y, jax.tree.map(jnp.zeros_like, y)) + _total(y)

    value, grads = jax.jit(jax.value_and_grad(loss, argnums=(0, 1)))(params, x)
    assert jnp.isfinite(value)
    assert _all_finite(grads)
    if not constant:  # (a layer norm of constant features is flat: a zero gradient is right)
        assert float(jnp.abs(grads[1].block(1).values).max()) > 0


@pytest.mark.parametrize(
    "reduce",
    [
        lambda t: eqt.sum_over_samples(t, "atom"),
        lambda t: eqt.mean_over_samples(t, "atom"),
        lambda t: eqt.var_over_samples(t, "atom"),
        lambda t: eqt.std_over_samples(t, "atom"),
        lambda t: eqt.std_over_properties(t, "p"),
    ],
)
def test_reductions_of_empty_blocks_have_finite_gradients(reduce):
    x = _tensor((0, 4))
    assert jnp.isfinite(jax.jit(lambda t: _total(reduce(t)))(x))
    assert _all_finite(jax.jit(jax.grad(lambda t: _total(reduce(t))))(x))


@pytest.mark.parametrize(
    "reduce, explicit",
    [
        (lambda t: eqt.std_over_samples(t, "atom"), eqt.std_over_samples_block),
        (lambda t: eqt.std_over_properties(t, "p"), eqt.std_over_properties_block),
    ],
)
def test_std_of_constant_values_has_zero_gradient(reduce, explicit):
    """sqrt at zero variance: 0, as the explicit gradients already take it, not NaN."""
    x = _tensor((3, 3), constant=True)
    grads = jax.jit(jax.grad(lambda t: _total(reduce(t))))(x)
    assert all(float(jnp.abs(block.values).max()) == 0.0 for block in grads)
    # the explicit-gradient path agrees: zero where the standard deviation is zero
    block = x.block(0)
    with_gradient = TensorBlock(block.values, block.samples, block.components, block.properties)
    rows = Labels(["sample"], np.arange(3).reshape(-1, 1))
    with_gradient.add_gradient(
        "alpha",
        TensorBlock(jnp.ones((3, 1, 3)), rows, block.components, block.properties),
    )
    names = "atom" if explicit is eqt.std_over_samples_block else "p"
    gradient = explicit(with_gradient, names).gradient("alpha").values
    assert float(jnp.abs(gradient).max()) == 0.0


@pytest.mark.parametrize("mode", ["full", "channelwise", "fully_connected"])
def test_tensor_products_of_empty_blocks(mode):
    x = _tensor((0, 0))
    tp = nn.TensorProduct(mode) if mode != "fully_connected" else nn.TensorProduct(out_features=2)
    # jit: one compilation instead of one eager kernel per operation and shape
    params = jax.jit(tp.init)(jax.random.key(0), x, x)
    out = jax.jit(tp.apply)(params, x, x)
    assert len(out) > 0 and all(block.values.shape[0] == 0 for block in out)
    assert _all_finite(jax.jit(jax.grad(lambda p: _total(tp.apply(p, x, x))))(params))
    assert o3.to_irreps_array(x).shape == (0, 3 + 3 * 3)


def test_linear_layers_on_blocks_without_properties_and_without_blocks():
    x = _tensor((3, 3), n_properties=(0, 2))
    for model in (nn.Linear(out_features=2), nn.EquivariantLinear(out_features=2)):
        params = model.init(jax.random.key(0), x)
        out = model.apply(params, x)
        assert [block.values.shape for block in out] == [(3, 1, 2), (3, 3, 2)]
        # as torch.nn.Linear(0, 2): no input, the output is the bias alone
        bias = params["params"].get("bias")
        expected = 0.0 if bias is None else bias[0, :2]
        np.testing.assert_allclose(out.block(0).values[:, 0], np.broadcast_to(expected, (3, 2)))
    empty = TensorMap(Labels(["o3_lambda", "o3_sigma"], np.zeros((0, 2), np.int32)), [])
    model = nn.Linear(out_features=2)
    assert len(model.apply(model.init(jax.random.key(0), empty), empty)) == 0


def test_smooth_step_has_finite_gradients_for_tiny_radii():
    for x in (jnp.float32(1e-30), jnp.float64(1e-200), jnp.float64(1e-3)):
        assert jnp.isfinite(jax.grad(nn.sus)(x))
    # unchanged where exp(-1/x) is a normal number (float32: exp(-100) is not, exp(-10) is)
    x, rtol = (0.01, 1e-14) if X64 else (0.1, 1e-6)
    np.testing.assert_allclose(nn.sus(jnp.asarray(x)), np.exp(-1 / x), rtol=rtol)
