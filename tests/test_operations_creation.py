"""Creation: block_from_array, *_like, random_uniform_like, one_hot, vs metatensor."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import metatensor
import metatensor.operations as mto
import numpy as np
import pytest
from conftest import data_path
from helpers import assert_block_equal, assert_tensor_equal, from_metatensor

import eqx_tensor as eqt
from eqx_tensor import Labels

FILES = ["radial-spectrum.mts", "spherical-expansion.mts", "qm7-power-spectrum.mts"]


@functools.cache
def load(name: str) -> metatensor.TensorMap:
    return metatensor.load(str(data_path(name)))


# --------------------------------------------------------------------------- block_from_array
@pytest.mark.parametrize(
    ("shape", "names"),
    [
        ((3, 4), {}),
        ((3, 2, 5, 4), {}),
        ((3, 2, 4), {"component_names": ["xyz"]}),
        ((2, 3, 5, 4), {"sample_names": ["system", "atom"]}),
        ((2, 3, 5, 4, 2), {"sample_names": ["system", "atom"], "property_names": ["n", "l"]}),
        ((6, 4, 2), {"property_names": ["n", "l"]}),
    ],
)
def test_block_from_array_matches_metatensor(shape, names):
    array = np.random.default_rng(0).normal(size=shape)
    block = eqt.block_from_array(array, **names)
    assert isinstance(block.values, jax.Array)
    assert_block_equal(block, mto.block_from_array(array, **names), atol=0)
    # JAX input, and inside jit (metadata only depends on the static shape)
    jitted = jax.jit(lambda x: eqt.block_from_array(x, **names).values)(jnp.asarray(array))
    np.testing.assert_array_equal(jitted, block.values)


def test_block_from_array_bad_input():
    with pytest.raises(ValueError, match="at least two dimensions"):
        eqt.block_from_array(np.zeros(3))
    with pytest.raises(ValueError, match="does not have enough dimensions to match the sample"):
        eqt.block_from_array(np.zeros((2, 3)), sample_names=["a", "b"], property_names=["c"])
    with pytest.raises(ValueError, match="match the given sample, component, and property"):
        eqt.block_from_array(np.zeros((2, 3, 4)), component_names=["a", "b"])


# --------------------------------------------------------------------------- *_like
LIKE = {
    "zeros": (eqt.zeros_like, mto.zeros_like, eqt.zeros_like_block, mto.zeros_like_block),
    "ones": (eqt.ones_like, mto.ones_like, eqt.ones_like_block, mto.ones_like_block),
}


def _like_cases() -> list:
    """Every ``gradients`` choice on the first file, the default on the others; the other
    combinations in the slow step."""
    cases = []
    for name in FILES:
        for gradients in [None, "positions", ["positions"], []]:
            fast = name == FILES[0] or gradients is None
            marks = () if fast else pytest.mark.slow
            cases.append(pytest.param(name, gradients, marks=marks, id=f"{name}-{gradients}"))
    return cases


@pytest.mark.parametrize(("name", "gradients"), _like_cases())
@pytest.mark.parametrize("kind", list(LIKE))
def test_like_matches_metatensor(name, kind, gradients):
    mts_tensor = load(name)
    tensor = from_metatensor(mts_tensor)
    ours, theirs, ours_block, theirs_block = LIKE[kind]
    assert_tensor_equal(ours(tensor, gradients), theirs(mts_tensor, gradients), atol=0)
    assert_block_equal(
        ours_block(tensor.block(0), gradients=gradients),
        theirs_block(mts_tensor.block(0), gradients=gradients),
        atol=0,
    )


@pytest.mark.parametrize("name", FILES)
def test_empty_like_has_the_metadata(name):
    mts_tensor = load(name)
    tensor = from_metatensor(mts_tensor)
    result = eqt.empty_like(tensor, requires_grad=True)  # requires_grad: accepted, ignored
    expected = mto.empty_like(mts_tensor)
    assert eqt.equal_metadata(result, tensor)
    for ours, theirs in zip(result, expected.blocks()):
        # metatensor's float64, or the float32 that JAX makes of it when x64 is off
        dtype = jax.dtypes.canonicalize_dtype(theirs.values.dtype)
        assert ours.values.shape == theirs.values.shape and ours.dtype == dtype
    block = eqt.empty_like_block(tensor.block(0), gradients=[])
    assert block.gradients_list() == [] and block.values.shape == tensor.block(0).values.shape


def test_like_keeps_dtype_works_under_jit_and_block_results_can_take_gradients():
    tensor = from_metatensor(load("radial-spectrum.mts"))
    as_float32 = jax.tree.map(lambda x: np.asarray(x, dtype=np.float32), tensor)
    assert eqt.zeros_like(as_float32).dtype == np.float32
    assert eqt.ones_like(as_float32).block(0).gradient("positions").dtype == np.float32
    jitted = jax.jit(lambda t: eqt.ones_like(t, gradients="positions"))(tensor)
    assert eqt.equal(jitted, eqt.ones_like(tensor))
    # *_like_block results are ordinary (modifiable) blocks, as in metatensor
    block = eqt.zeros_like_block(tensor.block(0), gradients=[])
    block.add_gradient("positions", tensor.block(0).gradient("positions").to(dtype=block.dtype))


def test_like_bad_input():
    tensor = from_metatensor(load("radial-spectrum.mts"))
    with pytest.raises(ValueError, match="requested gradient 'strain' in 'zeros_like' is not"):
        eqt.zeros_like(tensor, gradients="strain")
    with pytest.raises(ValueError, match="requested gradient 'cell' in 'ones_like'"):
        eqt.ones_like_block(tensor.block(0), gradients=["positions", "cell"])
    with pytest.raises(TypeError, match="`tensor` in 'zeros_like' must be a TensorMap"):
        eqt.zeros_like(tensor.block(0))


# --------------------------------------------------------------------------- random
def test_random_uniform_like():
    mts_tensor = load("spherical-expansion.mts")
    tensor = from_metatensor(mts_tensor)
    key = jax.random.key(0)
    result = eqt.random_uniform_like(tensor, key)
    assert eqt.equal_metadata(result, tensor)
    expected = mto.random_uniform_like(mts_tensor)
    assert_tensor_equal(eqt.zeros_like(result), mto.zeros_like(expected), atol=0)
    all_values = [np.asarray(b.values).ravel() for b in result]
    all_values += [np.asarray(b.gradient("positions").values).ravel() for b in result]
    flat = np.concatenate(all_values)
    assert flat.min() >= 0 and flat.max() < 1 and len(np.unique(flat)) == len(flat)
    # deterministic in the key, different for another key
    assert eqt.equal(result, eqt.random_uniform_like(tensor, key))
    assert not eqt.allclose(result, eqt.random_uniform_like(tensor, jax.random.key(1)))
    assert eqt.equal(result, jax.jit(eqt.random_uniform_like)(tensor, key))
    # gradients selection and float32
    only_values = eqt.random_uniform_like(tensor, key, gradients=[])
    assert only_values.block(0).gradients_list() == []
    as_float32 = jax.tree.map(lambda x: np.asarray(x, dtype=np.float32), tensor)
    assert eqt.random_uniform_like(as_float32, key).dtype == np.float32
    block = eqt.random_uniform_like_block(tensor.block(0), jax.random.key(3), "positions")
    assert eqt.equal_metadata_block(block, tensor.block(0))


def test_random_uniform_like_needs_a_key():
    tensor = from_metatensor(load("radial-spectrum.mts"))
    with pytest.raises(TypeError, match="needs an explicit JAX PRNG key"):
        eqt.random_uniform_like(tensor, ["positions"])
    with pytest.raises(TypeError, match="needs an explicit JAX PRNG key"):
        eqt.random_uniform_like(tensor, None)


# --------------------------------------------------------------------------- one_hot
def test_one_hot_matches_metatensor():
    mts_tensor = load("qm7-power-spectrum.mts")
    keys = mts_tensor.keys
    for name in keys.names:
        dimension = metatensor.Labels([name], np.unique(np.asarray(keys.column(name)))[:, None])
        ours = eqt.one_hot(
            Labels(keys.names, np.asarray(keys.values)),
            Labels([name], np.asarray(dimension.values)),
        )
        theirs = mto.one_hot(keys, dimension)
        assert ours.dtype == theirs.dtype
        np.testing.assert_array_equal(ours, theirs)
    samples = mts_tensor.block(0).samples
    dimension = metatensor.Labels(["atom"], np.arange(30)[::-1, None])
    ours = eqt.one_hot(
        Labels(samples.names, np.asarray(samples.values)),
        Labels(["atom"], np.asarray(dimension.values)),
    )
    np.testing.assert_array_equal(ours, mto.one_hot(samples, dimension))


def test_one_hot_dynamic_labels_and_errors():
    labels = Labels(["system", "type"], np.array([[0, 1], [0, 8], [1, 6], [1, 1]]))
    dimension = Labels(["type"], np.array([[1], [6], [8]]))
    expected = np.array([[1, 0, 0], [0, 0, 1], [0, 1, 0], [1, 0, 0]])
    np.testing.assert_array_equal(eqt.one_hot(labels.to_dynamic(), dimension), expected)
    # under jit, a padding row with a value outside the dimension gives zeros
    padded = Labels(["system", "type"], np.concatenate([labels.values, [[-1, -1]]]))
    result = jax.jit(eqt.one_hot, static_argnums=1)(padded.to_dynamic(), dimension)
    np.testing.assert_array_equal(result, np.concatenate([expected, [[0, 0, 0]]]))
    with pytest.raises(ValueError, match="type=-1 is present in the labels, but was not found"):
        eqt.one_hot(padded, dimension)
    with pytest.raises(ValueError, match="only one label dimension can be extracted"):
        eqt.one_hot(labels, labels)
    with pytest.raises(ValueError, match="'charge' is not a dimension"):
        eqt.one_hot(labels, Labels(["charge"], np.array([[0]])))
