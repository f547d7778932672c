"""The array policy: operations return JAX arrays whatever the input holds; the data model's own
methods (``copy``, ``to``) and ``load`` keep or give what they say.

Before the policy, ``keys_to_samples``, ``keys_to_properties`` and ``components_to_properties``
returned NumPy arrays for NumPy input while ``join``, ``slice``, ``sum_over_samples`` and the
others returned JAX arrays.
"""

from __future__ import annotations

import jax
import numpy as np
import pytest
from conftest import data_path

import eqx_tensor as eqt


def _arrays(tensor: eqt.TensorMap) -> list:
    arrays = []
    for block in tensor.blocks():
        arrays.append(block.values)
        arrays.extend(gradient.values for _, gradient in block.gradients())
    return arrays


@pytest.fixture(scope="module")
def tensor() -> eqt.TensorMap:
    loaded = eqt.load(str(data_path("spherical-expansion.mts")))
    assert all(isinstance(a, np.ndarray) for a in _arrays(loaded))  # load gives NumPy
    return loaded


def _one(name: str) -> eqt.Labels:
    return eqt.Labels([name], np.array([[1]], dtype=np.int32))


OPERATIONS = {
    "keys_to_samples": lambda t: t.keys_to_samples("neighbor_type"),
    "keys_to_properties": lambda t: t.keys_to_properties("neighbor_type"),
    "components_to_properties": lambda t: t.components_to_properties("o3_mu"),
    "remove_gradients": eqt.remove_gradients,
    "filter_blocks": lambda t: eqt.filter_blocks(t, _one("o3_lambda")),
    "drop_blocks": lambda t: eqt.drop_blocks(t, _one("o3_lambda")),
    "join": lambda t: eqt.join([t, t], axis="samples", add_dimension="tensor"),
    "slice": lambda t: eqt.slice(
        t, "samples", eqt.Labels(["system"], np.array([[0]], dtype=np.int32))
    ),
    "sum_over_samples": lambda t: eqt.sum_over_samples(t, "atom"),
    "sort": eqt.sort,
    "rename_dimension": lambda t: eqt.rename_dimension(t, "samples", "atom", "atom_index"),
    "remove_dimension": lambda t: eqt.remove_dimension(t, "keys", "o3_sigma"),
    "add": lambda t: eqt.add(t, t),
    "multiply": lambda t: eqt.multiply(t, 2.0),
    "zeros_like": eqt.zeros_like,
}


@pytest.mark.parametrize("name", sorted(OPERATIONS))
def test_operations_return_jax_arrays_for_numpy_input(tensor, name):
    result = OPERATIONS[name](tensor)
    arrays = _arrays(result)
    assert arrays, name
    kinds = {type(a).__name__ for a in arrays if not isinstance(a, jax.Array)}
    assert not kinds, f"{name} returned {kinds} arrays for NumPy input"


def test_data_model_methods_keep_the_array_type(tensor):
    assert all(isinstance(a, np.ndarray) for a in _arrays(tensor.copy()))
    on_jax = tensor.to(arrays="jax")
    assert all(isinstance(a, jax.Array) for a in _arrays(on_jax))
    assert all(isinstance(a, jax.Array) for a in _arrays(on_jax.copy()))
    assert all(isinstance(a, np.ndarray) for a in _arrays(on_jax.to(arrays="numpy")))


def test_moved_values_equal_the_numpy_computation(tensor):
    """The conversion happens after the NumPy work: same numbers as moving JAX input."""
    moved = tensor.keys_to_samples("neighbor_type")
    from_jax = tensor.to(arrays="jax").keys_to_samples("neighbor_type")
    assert moved.keys == from_jax.keys
    for a, b in zip(_arrays(moved), _arrays(from_jax)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
