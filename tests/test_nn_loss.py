"""Squared-error losses over TensorMaps: values, weights, gradient terms, masks, jit and grad."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import metatensor as mts
import numpy as np
import pytest
import torch
from conftest import data_path
from helpers import assert_close, from_metatensor

import eqx_tensor as eqt
from eqx_tensor import nn


@pytest.fixture(scope="module")
def pair():
    """(prediction, target): the small spherical expansion and a perturbed copy, with gradients."""
    tensor = mts.load(str(data_path("spherical-expansion.mts")))
    prediction = from_metatensor(tensor)
    rng = np.random.default_rng(0)
    blocks = []
    for block in prediction.blocks():
        new = eqt.TensorBlock(
            np.asarray(block.values) + rng.normal(size=block.values.shape),
            block.samples,
            block.components,
            block.properties,
        )
        gradient = block.gradient("positions")
        new.add_gradient(
            "positions",
            eqt.TensorBlock(
                np.asarray(gradient.values) + rng.normal(size=gradient.values.shape),
                gradient.samples,
                gradient.components,
                gradient.properties,
            ),
        )
        blocks.append(new)
    return prediction, eqt.TensorMap(prediction.keys, blocks)


def _sse(a, b) -> float:
    return float(np.sum((np.asarray(a) - np.asarray(b)) ** 2))


def test_sum_and_mean_of_values(pair):
    prediction, target = pair
    expected = sum(_sse(p.values, t.values) for p, t in zip(prediction, target))
    count = sum(p.values.size for p in prediction)
    assert_close(nn.sum_squared_error(prediction, target), expected, rtol=1e-13)
    assert_close(nn.mean_squared_error(prediction, target), expected / count, rtol=1e-13)
    # the same as torch's MSELoss on all values concatenated
    flat = [torch.from_numpy(np.asarray(b.values).reshape(-1)) for b in prediction]
    flat_target = [torch.from_numpy(np.asarray(b.values).reshape(-1)) for b in target]
    reference = torch.nn.MSELoss()(torch.cat(flat), torch.cat(flat_target)).item()
    assert_close(nn.mean_squared_error(prediction, target), reference, rtol=1e-13)


def test_per_block_breakdown(pair):
    prediction, target = pair
    total, per_block = nn.sum_squared_error(prediction, target, per_block=True)
    assert per_block.keys == prediction.keys
    values = [b.values[0, 0] for b in per_block]  # JAX scalars: their dtype sets the tolerance
    for got, p, t in zip(values, prediction, target):
        assert_close(got, _sse(p.values, t.values), rtol=1e-13)
    assert_close(sum(values), total, rtol=1e-13)
    _, per_block_mean = nn.mean_squared_error(prediction, target, per_block=True)
    for block, p, t in zip(per_block_mean, prediction, target):
        assert_close(block.values[0, 0], _sse(p.values, t.values) / p.values.size, rtol=1e-13)


def test_block_weights(pair):
    prediction, target = pair
    weights = np.linspace(0.5, 2.0, len(prediction))
    expected = sum(w * _sse(p.values, t.values) for w, p, t in zip(weights, prediction, target))
    assert_close(
        nn.sum_squared_error(prediction, target, block_weights=weights), expected, rtol=1e-13
    )
    assert_close(
        nn.sum_squared_error(prediction, target, block_weights=list(weights)), expected, rtol=1e-13
    )
    # a mapping by key (LabelsEntry or tuple of key values); missing keys weigh 1
    key0, key1 = prediction.keys.entry(0), prediction.keys.entry(1)
    mapping = {key0: 3.0, tuple(key1.values): 0.0}
    expected = 3.0 * _sse(prediction.block(0).values, target.block(0).values) + sum(
        _sse(p.values, t.values) for p, t in zip(prediction.blocks()[2:], target.blocks()[2:])
    )
    assert_close(
        nn.sum_squared_error(prediction, target, block_weights=mapping), expected, rtol=1e-13
    )
    with pytest.raises(ValueError, match="not a key of the prediction"):
        nn.sum_squared_error(prediction, target, block_weights={(9, 9, 9, 9): 1.0})
    with pytest.raises(ValueError, match="block_weights has 2 entries"):
        nn.sum_squared_error(prediction, target, block_weights=[1.0, 2.0])


def test_gradient_terms(pair):
    prediction, target = pair
    values = sum(_sse(p.values, t.values) for p, t in zip(prediction, target))
    forces = sum(
        _sse(p.gradient("positions").values, t.gradient("positions").values)
        for p, t in zip(prediction, target)
    )
    got = nn.sum_squared_error(prediction, target, gradient_weights={"positions": 0.1})
    assert_close(got, values + 0.1 * forces, rtol=1e-13)
    only_forces = nn.sum_squared_error(
        prediction, target, values_weight=0.0, gradient_weights={"positions": 1.0}
    )
    assert_close(only_forces, forces, rtol=1e-13)
    n_values = sum(p.values.size for p in prediction)
    n_forces = sum(p.gradient("positions").values.size for p in prediction)
    mean = nn.mean_squared_error(prediction, target, gradient_weights={"positions": 0.1})
    assert_close(mean, values / n_values + 0.1 * forces / n_forces, rtol=1e-13)
    with pytest.raises(ValueError, match="'strain' gradients"):
        nn.sum_squared_error(prediction, target, gradient_weights={"strain": 1.0})


def test_masks_and_padding_sentinel(pair):
    prediction, target = pair

    # pad every block with two rows of a padding system (-1) holding garbage (NaN and inf)
    def pad(tensor, fill):
        blocks = []
        for block in tensor:
            samples = np.asarray(block.samples.values)
            extra = np.array([[-1, 100], [-1, 101]], dtype=np.int32)
            values = np.concatenate(
                [np.asarray(block.values), np.full((2, *block.values.shape[1:]), fill)]
            )
            new = eqt.TensorBlock(
                values,
                eqt.Labels(block.samples.names, np.concatenate([samples, extra])),
                block.components,
                block.properties,
            )
            gradient = block.gradient("positions")
            gsamples = np.asarray(gradient.samples.values)
            n = len(samples)
            gextra = np.array([[n, -1, 0], [n + 1, -1, 1]], dtype=np.int32)
            gvalues = np.concatenate(
                [np.asarray(gradient.values), np.full((2, *gradient.values.shape[1:]), fill)]
            )
            new.add_gradient(
                "positions",
                eqt.TensorBlock(
                    gvalues,
                    eqt.Labels(gradient.samples.names, np.concatenate([gsamples, gextra])),
                    gradient.components,
                    gradient.properties,
                ),
            )
            blocks.append(new)
        return eqt.TensorMap(tensor.keys, blocks)

    padded_prediction, padded_target = pad(prediction, np.nan), pad(target, np.inf)
    weights = {"positions": 0.5}
    for loss in (nn.sum_squared_error, nn.mean_squared_error):
        expected = loss(prediction, target, gradient_weights=weights)
        got = loss(padded_prediction, padded_target, gradient_weights=weights, padding_system=-1)
        assert_close(got, expected, rtol=1e-13)
        masks = [np.asarray(b.samples.column("system")) >= 0 for b in padded_prediction]
        got = loss(padded_prediction, padded_target, gradient_weights=weights, mask=masks)
        assert_close(got, expected, rtol=1e-13)

    # with dynamic sample labels, under jit, differentiable with respect to the arrays
    def dynamic(tensor, arrays=None):
        arrays = arrays or [(b.values, b.gradient("positions").values) for b in tensor]
        blocks = []
        for block, (values, gradient_values) in zip(tensor, arrays):
            new = eqt.TensorBlock(
                values, block.samples.to_dynamic(), block.components, block.properties
            )
            gradient = block.gradient("positions")
            new.add_gradient(
                "positions",
                eqt.TensorBlock(
                    gradient_values,
                    gradient.samples.to_dynamic(),
                    gradient.components,
                    gradient.properties,
                ),
            )
            blocks.append(new)
        return eqt.TensorMap(tensor.keys, blocks)

    dynamic_prediction = dynamic(padded_prediction)

    @jax.jit
    def value_and_grad(arrays, target):
        return jax.value_and_grad(
            lambda a: nn.mean_squared_error(
                dynamic(dynamic_prediction, a),
                target,
                gradient_weights=weights,
                padding_system=-1,
            )
        )(arrays)

    arrays = [
        (jnp.asarray(b.values), jnp.asarray(b.gradient("positions").values))
        for b in padded_prediction
    ]
    value, grads = value_and_grad(arrays, dynamic(padded_target))
    assert_close(
        value, nn.mean_squared_error(prediction, target, gradient_weights=weights), rtol=1e-13
    )
    for values_grad, gradient_grad in grads:
        assert np.all(np.isfinite(values_grad)) and np.all(np.isfinite(gradient_grad))
        np.testing.assert_array_equal(values_grad[-2:], 0.0)
        np.testing.assert_array_equal(gradient_grad[-2:], 0.0)


def test_gradient_of_the_loss(pair):
    prediction, target = pair
    grads = jax.grad(nn.sum_squared_error)(prediction, target)
    for g, p, t in zip(grads, prediction, target):
        assert_close(g.values, 2 * (np.asarray(p.values) - np.asarray(t.values)), rtol=1e-13)


def _count(jaxpr, primitive: str) -> int:
    """Equations of ``primitive`` in ``jaxpr`` and in the jaxprs nested in it (jit, ...)."""
    count = 0
    for eqn in jaxpr.eqns:
        count += eqn.primitive.name == primitive
        for value in eqn.params.values():
            if hasattr(value, "jaxpr") and hasattr(value.jaxpr, "eqns"):
                count += _count(value.jaxpr, primitive)
    return count


def test_one_reduction_whatever_the_number_of_blocks(pair):
    """All blocks are summed in one reduction: XLA compiles one kernel per reduction, and a
    kernel per block made the loss a third of the kernels of a small model's train step."""
    prediction, target = pair

    def reductions(loss, **kwargs) -> int:
        return _count(
            jax.make_jaxpr(lambda p, t: loss(p, t, **kwargs))(prediction, target).jaxpr,
            "reduce_sum",
        )

    assert len(prediction) > 2
    assert reductions(nn.sum_squared_error) == 1
    assert reductions(nn.sum_squared_error, block_weights=jnp.arange(len(prediction))) == 1
    assert reductions(nn.mean_squared_error, gradient_weights={"positions": 0.5}) == 2
    masks = [np.arange(len(b.samples)) % 2 == 0 for b in prediction.blocks()]
    # a masked mean also counts the compared elements, in one more reduction
    assert reductions(nn.mean_squared_error, mask=masks) == 2


def test_keys_are_matched_by_value(pair):
    prediction, target = pair
    order = np.arange(len(target))[::-1]
    shuffled = eqt.TensorMap(target.keys[order], target.blocks_by_id(order))
    assert_close(
        nn.sum_squared_error(prediction, shuffled), nn.sum_squared_error(prediction, target)
    )
    subset = eqt.TensorMap(prediction.keys[:3], prediction.blocks()[:3])
    # target blocks without a prediction are refused, unless asked for
    with pytest.raises(ValueError, match="the prediction has no block for the target keys"):
        nn.sum_squared_error(subset, target)
    nn.sum_squared_error(subset, target, ignore_missing_keys=True)
    with pytest.raises(ValueError, match="the target has no block for the prediction key"):
        nn.sum_squared_error(prediction, subset)


def test_metadata_errors(pair):
    prediction, target = pair
    block = target.block(0)
    wrong_shape = eqt.TensorBlock(
        np.zeros((block.values.shape[0], 1, 2)),
        block.samples,
        block.components,
        eqt.Labels.range("n", 2),
    )
    other = eqt.TensorMap(target.keys[:1], [wrong_shape])
    first = eqt.TensorMap(prediction.keys[:1], [prediction.block(0)])
    with pytest.raises(ValueError, match="have shape"):
        nn.sum_squared_error(first, other)
    samples = np.asarray(block.samples.values).copy()
    samples[:, 1] += 10
    moved = eqt.TensorBlock(
        block.values, eqt.Labels(block.samples.names, samples), block.components, block.properties
    )
    with pytest.raises(ValueError, match="different samples"):
        nn.sum_squared_error(first, eqt.TensorMap(target.keys[:1], [moved]))
    with pytest.raises(ValueError, match="shape \\(n_samples,\\)"):
        nn.sum_squared_error(first, first, mask=[np.ones(7, bool)])
    with pytest.raises(ValueError, match="'structure' sample dimension"):
        nn.sum_squared_error(first, first, padding_system=-1, system_name="structure")
