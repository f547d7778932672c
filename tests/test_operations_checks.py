"""Checks and comparisons: equal_metadata, equal, allclose, contiguity, vs metatensor."""

from __future__ import annotations

import functools

import jax
import metatensor
import metatensor.operations as mto
import numpy as np
import pytest
from conftest import data_path
from helpers import FLOAT, assert_tensor_equal, from_metatensor

import eqx_tensor as eqt
from eqx_tensor import Labels, TensorBlock, TensorMap

FILES = [
    "radial-spectrum.mts",
    "spherical-expansion.mts",
    "core-data.mts",
    "qm7-power-spectrum.mts",
]


@functools.cache
def load(name: str) -> metatensor.TensorMap:
    return metatensor.load(str(data_path(name)))


# --------------------------------------------------------------------------- variants
def _rebuild(
    tensor,
    values=None,
    samples=None,
    properties=None,
    components=None,
    gradient_values=None,
    keys=None,
    drop_gradients=False,
    order=None,
):
    """A metatensor TensorMap like ``tensor`` with one kind of change, applied to all blocks."""
    order = range(len(tensor)) if order is None else order
    blocks = []
    for i in order:
        block = tensor.block(i)
        new_properties = properties(block.properties) if properties else block.properties
        new_components = components(block.components) if components else block.components
        new = metatensor.TensorBlock(
            values(block.values) if values else block.values.copy(),
            samples(block.samples) if samples else block.samples,
            new_components,
            new_properties,
        )
        if not drop_gradients:
            for parameter, gradient in block.gradients():
                g_components = list(gradient.components)
                n_extra = len(g_components) - len(block.components)
                new.add_gradient(
                    parameter,
                    metatensor.TensorBlock(
                        gradient_values(gradient.values)
                        if gradient_values
                        else gradient.values.copy(),
                        gradient.samples,
                        g_components[:n_extra] + list(new_components),
                        new_properties,
                    ),
                )
        blocks.append(new)
    new_keys = tensor.keys if keys is None else keys
    if order is not None and keys is None:
        new_keys = metatensor.Labels(tensor.keys.names, np.asarray(tensor.keys.values)[list(order)])
    return metatensor.TensorMap(new_keys, blocks)


def _shift(labels, amount=1):
    values = np.asarray(labels.values).copy()
    values[:, -1] += amount
    return metatensor.Labels(labels.names, values)


def _rename(labels):
    return metatensor.Labels([n + "_x" for n in labels.names], np.asarray(labels.values))


def _perturb(values):
    values = values.copy()
    values.reshape(-1)[0] += 1e-9
    return values


def variants(tensor) -> dict[str, metatensor.TensorMap]:
    n = len(tensor)
    return {
        "same": _rebuild(tensor),
        "reordered_keys": _rebuild(tensor, order=list(range(n))[::-1]),
        "perturbed_values": _rebuild(tensor, values=_perturb),
        "perturbed_gradients": _rebuild(tensor, gradient_values=_perturb),
        "shifted_samples": _rebuild(tensor, samples=_shift),
        "renamed_properties": _rebuild(tensor, properties=_rename),
        "shifted_properties": _rebuild(tensor, properties=_shift),
        "no_gradients": _rebuild(tensor, drop_gradients=True),
        "fewer_blocks": _rebuild(tensor, order=list(range(n - 1))),
        "other_keys": _rebuild(tensor, keys=_shift(tensor.keys, 100)),
        "renamed_keys": _rebuild(tensor, keys=_rename(tensor.keys)),
    }


CHECKS = ["all", ["samples"], ["components"], ["properties"], ("samples", "components"), []]


@pytest.mark.parametrize("name", FILES)
def test_comparisons_match_metatensor(name):
    mts_a = load(name)
    a = from_metatensor(mts_a)
    for variant, mts_b in variants(mts_a).items():
        b = from_metatensor(mts_b)
        for check in CHECKS:
            for check_gradients in (True, False):
                args = (check, check_gradients)
                assert eqt.equal_metadata(a, b, *args) == mto.equal_metadata(mts_a, mts_b, *args), (
                    variant,
                    check,
                    check_gradients,
                )
        assert eqt.equal(a, b) == mto.equal(mts_a, mts_b), variant
        for tolerances in [(1e-13, 1e-12), (1e-6, 1e-6)]:
            assert eqt.allclose(a, b, *tolerances) == mto.allclose(mts_a, mts_b, *tolerances), (
                variant,
                tolerances,
            )
        block_a, block_b = a.block(0), b.block(0)
        mts_block_a, mts_block_b = mts_a.block(0), mts_b.block(0)
        assert eqt.equal_block(block_a, block_b) == mto.equal_block(mts_block_a, mts_block_b)
        assert eqt.allclose_block(block_a, block_b) == mto.allclose_block(mts_block_a, mts_block_b)
        assert eqt.equal_metadata_block(block_a, block_b) == mto.equal_metadata_block(
            mts_block_a, mts_block_b
        )


@pytest.mark.parametrize("name", FILES[:2])
def test_raise_messages_match_metatensor(name):
    mts_a = load(name)
    a = from_metatensor(mts_a)
    pairs = [
        (eqt.equal_raise, mto.equal_raise, ()),
        (eqt.allclose_raise, mto.allclose_raise, ()),
        (eqt.equal_metadata_raise, mto.equal_metadata_raise, ()),
    ]
    for variant, mts_b in variants(mts_a).items():
        b = from_metatensor(mts_b)
        for ours, theirs, args in pairs:
            try:
                theirs(mts_a, mts_b, *args)
                expected = None
            except mto.NotEqualError as error:
                expected = str(error)
            if expected is None:
                ours(a, b, *args)
                continue
            with pytest.raises(eqt.NotEqualError) as info:
                ours(a, b, *args)
            # same message, except for key differences where ours names the extra entry
            if "should have the same keys," in str(info.value):
                assert expected.startswith(str(info.value).split(",")[0]), variant
            elif "gradient parameters" in str(info.value):
                assert str(info.value).startswith(expected), variant
            else:
                assert str(info.value) == expected, (variant, ours.__name__)


def test_raise_variants_name_the_difference():
    a = from_metatensor(load("radial-spectrum.mts"))
    b = from_metatensor(variants(load("radial-spectrum.mts"))["perturbed_gradients"])
    with pytest.raises(eqt.NotEqualError, match="gradient 'positions' values are not equal"):
        eqt.equal_raise(a, b)
    with pytest.raises(ValueError, match=r"blocks for key \(center_type=6, neighbor_type=6\)"):
        eqt.allclose_raise(a, b)
    eqt.allclose_raise(a, b, rtol=1e-6, atol=1e-6)
    with pytest.raises(eqt.NotEqualError, match="gradient 'positions' values are not allclose"):
        eqt.allclose_block_raise(a.block(0), b.block(0))
    c = from_metatensor(variants(load("radial-spectrum.mts"))["renamed_properties"])
    with pytest.raises(eqt.NotEqualError, match="same properties"):
        eqt.equal_metadata_block_raise(a.block(0), c.block(0))
    eqt.equal_metadata_block_raise(a.block(0), c.block(0), check=["samples", "components"])
    with pytest.raises(ValueError, match="'values' does not refer to metadata to check"):
        eqt.equal_metadata(a, c, check=["values"])
    with pytest.raises(ValueError, match="`check` must be a list of strings or 'all'"):
        eqt.equal_metadata(a, c, check="samples")


def test_nan_handling_and_types():
    block = TensorBlock(np.array([[1.0, np.nan]]), Labels.range("s", 1), [], Labels.range("p", 2))
    tensor = TensorMap(Labels.range("key", 1), [block])
    assert not eqt.equal(tensor, tensor)
    assert not eqt.allclose(tensor, tensor)
    assert eqt.allclose(tensor, tensor, equal_nan=True)
    # metatensor: non-TensorMap arguments give False / NotEqualError in equal_metadata
    assert not eqt.equal_metadata(tensor, block)
    with pytest.raises(eqt.NotEqualError, match="`tensor_2` must be a TensorMap"):
        eqt.equal_metadata_raise(tensor, block)
    with pytest.raises(TypeError, match="`tensor_2` in 'equal' must be a TensorMap"):
        eqt.equal(tensor, block)
    with pytest.raises(TypeError, match="`block_1` in 'allclose' must be a TensorBlock"):
        eqt.allclose_block(tensor, block)


def test_equal_metadata_works_under_jit():
    a = from_metatensor(load("spherical-expansion.mts"))
    b = eqt.multiply(a, 2.0)
    c = from_metatensor(variants(load("spherical-expansion.mts"))["renamed_properties"])

    @jax.jit
    def check(x, y):
        # metadata is static: a Python bool at trace time
        return jax.numpy.asarray(eqt.equal_metadata(x, y))

    assert bool(check(a, b))
    assert not bool(check(a, c))
    assert bool(
        jax.jit(lambda x, y: jax.numpy.asarray(eqt.equal_metadata(x, y, ["samples"])))(a, c)
    )


def test_equal_and_allclose_refuse_tracers():
    a = from_metatensor(load("radial-spectrum.mts"))
    with pytest.raises(ValueError, match="'equal' needs the concrete values"):
        jax.jit(lambda x: jax.numpy.asarray(eqt.equal(x, x)))(a)
    with pytest.raises(ValueError, match="'allclose' needs the concrete values"):
        jax.grad(lambda x: float(eqt.allclose_block(x.block(0), x.block(0))))(a)


def test_dynamic_labels():
    mts_a = load("radial-spectrum.mts")
    a = from_metatensor(mts_a)
    dynamic = a.to_dynamic_samples()
    shifted = from_metatensor(variants(mts_a)["shifted_samples"]).to_dynamic_samples()
    # concrete dynamic values are compared by value
    assert eqt.equal_metadata(a, dynamic)
    assert eqt.equal(a, dynamic)
    assert not eqt.equal_metadata(dynamic, shifted)
    assert eqt.equal_metadata(dynamic, shifted, check=["properties", "components"])

    # traced: different sizes are still known to differ; equal sizes cannot be decided
    longer = TensorMap(
        a.keys,
        [
            TensorBlock(
                np.concatenate([b.values, b.values[:1]]),
                Labels(
                    b.samples.names, np.concatenate([b.samples.values, [[999, 999]]])
                ).to_dynamic(),
                b.components,
                b.properties,
            )
            for b in a
        ],
    )

    @jax.jit
    def compare(x, y):
        return jax.numpy.asarray(eqt.equal_metadata(x, y, check_gradients=False))

    assert not bool(compare(eqt.remove_gradients(dynamic), longer))
    with pytest.raises(ValueError, match="'equal_metadata_block_raise' cannot compare the dynamic"):
        compare(dynamic, shifted)
    # only names and sizes matter when samples are not checked
    assert bool(
        jax.jit(lambda x, y: jax.numpy.asarray(eqt.equal_metadata(x, y, check=["properties"])))(
            dynamic, shifted
        )
    )


def test_contiguity():
    mts_a = load("spherical-expansion.mts")
    # in the run's precision: made contiguous (as JAX arrays) the values stay bit for bit
    a = from_metatensor(mts_a).to(dtype=FLOAT)
    assert eqt.is_contiguous(a) and mto.is_contiguous(mts_a)
    # non-contiguous NumPy values: every other column of a twice wider array
    blocks = []
    for block in a:
        values = np.asarray(block.values)
        strided = np.repeat(values, 2, axis=-1)[..., ::2]
        assert not strided.flags["C_CONTIGUOUS"]
        new = TensorBlock(strided, block.samples, block.components, block.properties)
        for parameter, gradient in block.gradients():
            new.add_gradient(
                parameter,
                TensorBlock(
                    np.asarray(gradient.values),
                    gradient.samples,
                    gradient.components,
                    gradient.properties,
                ),
            )
        blocks.append(new)
    strided_tensor = TensorMap(a.keys, blocks)
    assert not eqt.is_contiguous(strided_tensor)
    assert not eqt.is_contiguous_block(strided_tensor.block(0))
    contiguous = eqt.make_contiguous(strided_tensor)
    assert eqt.is_contiguous(contiguous)
    assert eqt.equal(contiguous, a)
    assert all(isinstance(b.values, jax.Array) for b in contiguous)
    assert_tensor_equal(contiguous, mto.make_contiguous(mts_a))
    block = eqt.make_contiguous_block(strided_tensor.block(1))
    assert eqt.is_contiguous_block(block) and eqt.equal_block(block, a.block(1))
    # JAX arrays are always contiguous, including inside jit
    assert jax.jit(lambda t: jax.numpy.asarray(eqt.is_contiguous(t)))(strided_tensor)
