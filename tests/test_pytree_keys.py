"""Debuggable pytrees: key paths name blocks and gradients, mismatches say what differs."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import eqx_tensor as eqt


def _tensor(keys=((0, 1), (1, 1)), with_gradient=True, dynamic=False) -> eqt.TensorMap:
    blocks = []
    for l, _ in keys:
        samples = eqt.Labels(["system", "atom"], np.array([[0, 0], [0, 1], [1, 0]]))
        block = eqt.TensorBlock(
            np.arange(3 * (2 * l + 1) * 2, dtype=np.float64).reshape(3, 2 * l + 1, 2),
            samples.to_dynamic() if dynamic else samples,
            [eqt.Labels(["o3_mu"], np.arange(-l, l + 1).reshape(-1, 1))],
            eqt.Labels.range("n", 2),
        )
        if with_gradient:
            block.add_gradient(
                "positions",
                eqt.TensorBlock(
                    np.ones((2, 3, 2 * l + 1, 2)),
                    eqt.Labels(["sample", "system", "atom"], np.array([[0, 0, 0], [1, 0, 1]])),
                    [eqt.Labels(["xyz"], np.arange(3).reshape(-1, 1)), block.components[0]],
                    block.properties,
                ),
            )
        blocks.append(block)
    return eqt.TensorMap(eqt.Labels(["o3_lambda", "o3_sigma"], np.array(keys)), blocks)


def test_key_paths_name_blocks_values_and_gradients():
    tensor = _tensor()
    paths = [jax.tree_util.keystr(path) for path, _ in jax.tree_util.tree_leaves_with_path(tensor)]
    assert paths == [
        "[o3_lambda=0, o3_sigma=1].values",
        "[o3_lambda=0, o3_sigma=1].gradient('positions').values",
        "[o3_lambda=1, o3_sigma=1].values",
        "[o3_lambda=1, o3_sigma=1].gradient('positions').values",
    ]
    # the leaves come in the same order as with plain flattening
    leaves = jax.tree_util.tree_leaves(tensor)
    with_path = [leaf for _, leaf in jax.tree_util.tree_leaves_with_path(tensor)]
    assert all(a is b for a, b in zip(leaves, with_path)) and len(leaves) == len(with_path)


def test_key_paths_of_dynamic_samples_and_blocks():
    tensor = _tensor(with_gradient=False, dynamic=True)
    paths = [jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_leaves_with_path(tensor)]
    assert paths == [
        "[o3_lambda=0, o3_sigma=1].values",
        "[o3_lambda=0, o3_sigma=1].samples",
        "[o3_lambda=1, o3_sigma=1].values",
        "[o3_lambda=1, o3_sigma=1].samples",
    ]
    block = tensor.block(0)
    paths = [jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_leaves_with_path(block)]
    assert paths == [".values", ".samples"]


def test_tree_map_with_path_and_unflatten_round_trip():
    tensor = _tensor()
    scaled = jax.tree_util.tree_map_with_path(
        lambda path, x: x * (2.0 if "gradient" in jax.tree_util.keystr(path) else 1.0), tensor
    )
    assert isinstance(scaled, eqt.TensorMap) and scaled.keys == tensor.keys
    g = scaled.block(o3_lambda=1).gradient("positions").values
    np.testing.assert_array_equal(np.asarray(g), 2.0)
    np.testing.assert_array_equal(
        np.asarray(scaled.block(o3_lambda=1).values), tensor.block(o3_lambda=1).values
    )


def test_treedef_mismatch_names_the_differing_keys():
    a, b = _tensor(), _tensor(keys=((0, 1), (2, 1)))
    with pytest.raises(ValueError) as error:
        jax.tree.map(lambda x, y: x + y, a, b)
    message = str(error.value)
    # the readable metadata repr shows both sets of keys
    assert "o3_lambda" in message and "TensorMap" in message
    assert "Labels" in message or "keys" in message


def test_metadata_reprs_are_readable():
    tensor = _tensor()
    treedef = jax.tree_util.tree_structure(tensor)
    text = str(treedef)
    assert "TensorMap" in text and "o3_lambda" in text and "positions" in text
    assert len(text) < 2000


def test_info_is_part_of_the_treedef_and_retraces():
    traces = []

    @jax.jit
    def f(tensor):
        traces.append(1)
        return jax.tree.map(lambda x: x + 1, tensor)

    tensor = _tensor(with_gradient=False)
    out = f(tensor)
    assert out.info() == {}
    tagged = tensor.copy()
    tagged.set_info("units", "eV")
    out = f(tagged)
    # changing info changes the static metadata: a new trace, and the output keeps the info
    assert len(traces) == 2
    assert out.info() == {"units": "eV"}
    f(tagged)
    assert len(traces) == 2


def test_jit_of_a_gradient_key_path_under_grad():
    tensor = eqt.remove_gradients(_tensor())

    def loss(t):
        return sum(jnp.sum(b.values**2) for b in t)

    grads = jax.grad(loss)(tensor)
    paths = [jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_leaves_with_path(grads)]
    assert paths == ["[o3_lambda=0, o3_sigma=1].values", "[o3_lambda=1, o3_sigma=1].values"]
