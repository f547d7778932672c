"""Conversions between metatensor-core objects and ours, and equality assertions, for tests."""

from __future__ import annotations

import numpy as np

import eqx_tensor as eqt


def labels_from_metatensor(labels) -> eqt.Labels:
    return eqt.Labels(list(labels.names), np.array(labels.values))


def block_from_metatensor(block) -> eqt.TensorBlock:
    def convert(b):
        return eqt.TensorBlock(
            np.array(b.values),
            labels_from_metatensor(b.samples),
            [labels_from_metatensor(c) for c in b.components],
            labels_from_metatensor(b.properties),
        )

    result = convert(block)
    for parameter, gradient in block.gradients():
        result.add_gradient(parameter, convert(gradient))
    return result


def from_metatensor(tensor) -> eqt.TensorMap:
    """Our TensorMap with the same metadata and (NumPy) values as a metatensor TensorMap."""
    return eqt.TensorMap(
        labels_from_metatensor(tensor.keys), [block_from_metatensor(b) for b in tensor.blocks()]
    )


def _to_numpy(array) -> np.ndarray:
    if hasattr(array, "detach"):  # torch tensors
        array = array.detach().cpu().numpy()
    return np.asarray(array)


def assert_labels_equal(ours: eqt.Labels, theirs, what: str = "labels") -> None:
    assert list(ours.names) == list(theirs.names), f"{what} names: {ours.names} != {theirs.names}"
    np.testing.assert_array_equal(
        np.asarray(ours.values), _to_numpy(theirs.values), err_msg=f"{what} values"
    )


def assert_block_equal(ours: eqt.TensorBlock, theirs, atol: float = 1e-12, what="block") -> None:
    """Metadata exactly equal, values close; gradients included."""
    assert_labels_equal(ours.samples, theirs.samples, f"{what} samples")
    assert len(ours.components) == len(theirs.components), f"{what} number of components"
    for i, (a, b) in enumerate(zip(ours.components, theirs.components)):
        assert_labels_equal(a, b, f"{what} components[{i}]")
    assert_labels_equal(ours.properties, theirs.properties, f"{what} properties")
    np.testing.assert_allclose(
        np.asarray(ours.values),
        _to_numpy(theirs.values),
        rtol=0,
        atol=atol,
        err_msg=f"{what} values",
    )
    # metatensor keeps gradients in a hash map, so their order carries no meaning
    assert sorted(ours.gradients_list()) == sorted(theirs.gradients_list()), f"{what} gradients"
    for parameter in theirs.gradients_list():
        assert_block_equal(
            ours.gradient(parameter),
            theirs.gradient(parameter),
            atol,
            f"{what} gradient {parameter}",
        )


def assert_tensor_equal(ours: eqt.TensorMap, theirs, atol: float = 1e-12) -> None:
    """Keys, blocks, metadata and gradients equal to a metatensor TensorMap's."""
    assert_labels_equal(ours.keys, theirs.keys, "keys")
    for i, (a, b) in enumerate(zip(ours.blocks(), theirs.blocks())):
        assert_block_equal(a, b, atol, f"block {i} ({ours.keys.entry(i)})")
