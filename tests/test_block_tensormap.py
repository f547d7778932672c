import jax
import jax.numpy as jnp
import metatensor
import numpy as np
import pytest
from conftest import data_path
from helpers import assert_tensor_equal, from_metatensor

from eqx_tensor import Labels, TensorBlock, TensorMap

FILES = [
    "spherical-expansion.mts",
    "radial-spectrum.mts",
    "qm7-spherical-expansion.mts",
    "qm7-power-spectrum.mts",
    "core-data.mts",
]


def _block(n_samples=3, n_properties=2, seed=0, components=()):
    rng = np.random.default_rng(seed)
    shape = (n_samples, *[len(c) for c in components], n_properties)
    return TensorBlock(
        rng.normal(size=shape),
        Labels.range("s", n_samples),
        list(components),
        Labels.range("p", n_properties),
    )


def _gradient(values_block, rows, n_xyz=3, name="xyz"):
    samples = Labels(["sample", "atom"], np.array([[r, i] for i, r in enumerate(rows)]))
    xyz = Labels.range(name, n_xyz)
    shape = (len(rows), n_xyz, *values_block.values.shape[1:])
    return TensorBlock(
        np.ones(shape), samples, [xyz, *values_block.components], values_block.properties
    )


def test_block_shape_errors_name_the_dimension():
    with pytest.raises(ValueError, match=r"axis 0 \(samples\) has size 4"):
        TensorBlock(np.zeros((4, 2)), Labels.range("s", 3), [], Labels.range("p", 2))
    with pytest.raises(ValueError, match=r"axis 1 \(component 'o3_mu'\)"):
        TensorBlock(
            np.zeros((3, 2, 2)),
            Labels.range("s", 3),
            [Labels.range("o3_mu", 3)],
            Labels.range("p", 2),
        )
    with pytest.raises(ValueError, match=r"axis 1 \(properties\)"):
        TensorBlock(np.zeros((3, 5)), Labels.range("s", 3), [], Labels.range("p", 2))
    with pytest.raises(ValueError, match="3 dimensions"):
        TensorBlock(
            np.zeros((3, 2)), Labels.range("s", 3), [Labels.range("c", 1)], Labels.range("p", 2)
        )
    with pytest.raises(TypeError, match="samples must be Labels"):
        TensorBlock(np.zeros((3, 2)), [0, 1, 2], [], Labels.range("p", 2))
    with pytest.raises(ValueError, match="exactly one dimension"):
        TensorBlock(
            np.zeros((1, 1, 2)),
            Labels.range("s", 1),
            [Labels.single().append("b", 0)],
            Labels.range("p", 2),
        )


def test_gradient_validation():
    block = _block()
    good = _gradient(block, [0, 2])
    block.add_gradient("positions", good)
    assert block.gradients_list() == ["positions"]
    assert block.gradient("positions").is_gradient

    no_sample = TensorBlock(np.ones((1, 2)), Labels.range("atom", 1), [], block.properties)
    with pytest.raises(ValueError, match="must start with a 'sample' dimension"):
        _block().add_gradient("positions", no_sample)
    with pytest.raises(ValueError, match="points to row 5"):
        _block().add_gradient("positions", _gradient(_block(), [0, 5]))
    other_properties = TensorBlock(
        np.ones((1, 3)), Labels(["sample"], np.array([[0]])), [], Labels.range("q", 3)
    )
    with pytest.raises(ValueError, match="properties of the gradient"):
        _block().add_gradient("positions", other_properties)
    with_components = _block(components=[Labels.range("o3_mu", 3)])
    wrong = TensorBlock(
        np.ones((1, 2)), Labels(["sample"], np.array([[0]])), [], with_components.properties
    )
    with pytest.raises(ValueError, match="must end with the values' components"):
        with_components.add_gradient("positions", wrong)
    # gradients of gradients are kept, as metatensor does
    nested = _gradient(block, [0])
    nested.add_gradient("x", _gradient(nested, [0], name="abc"))
    other = _block()
    other.add_gradient("positions", nested)
    assert other.gradient("positions").gradients_list() == ["x"]
    with pytest.raises(ValueError, match="already has a gradient"):
        block.add_gradient("positions", good)


def test_tensormap_requires_same_names():
    a = _block()
    b = TensorBlock(np.zeros((3, 2)), Labels.range("t", 3), [], Labels.range("p", 2))
    keys = Labels.range("k", 2)
    with pytest.raises(ValueError, match=r"same sample names: block 1 \(LabelsEntry\(k=1\)\)"):
        TensorMap(keys, [a, b])
    c = TensorBlock(np.zeros((3, 2)), Labels.range("s", 3), [], Labels.range("q", 2))
    with pytest.raises(ValueError, match="same property names"):
        TensorMap(keys, [a, c])
    with pytest.raises(ValueError, match="one block per key"):
        TensorMap(keys, [a])


def test_blocks_in_tensormap_are_frozen():
    tensor = TensorMap(Labels.range("k", 1), [_block()])
    with pytest.raises(ValueError, match="view inside a TensorMap"):
        tensor.block(0).add_gradient("positions", _gradient(tensor.block(0), [0]))


def test_block_lookup_and_printing():
    tensor = from_metatensor(metatensor.load(data_path("spherical-expansion.mts")))
    block = tensor.block(o3_lambda=1, center_type=6, neighbor_type=8)
    same = tensor.block({"o3_lambda": 1, "center_type": 6, "neighbor_type": 8})
    assert block is same
    assert tensor.block(tensor.keys[4]) is tensor.block(4)
    assert len(tensor.blocks(o3_lambda=2)) == 4
    assert tensor.blocks_matching(Labels(["o3_lambda"], np.array([[1]]))) == [1, 4, 7, 10]
    with pytest.raises(ValueError, match="4 blocks match"):
        tensor.block(o3_lambda=1)
    with pytest.raises(ValueError, match="no block matches"):
        tensor.block(o3_lambda=7)
    with pytest.raises(ValueError, match="'foo' is not a key dimension"):
        tensor.block(foo=1)
    assert [k["o3_lambda"] for k, _ in tensor.items()][:3] == [0, 1, 2]
    assert tensor.sample_names == ["system", "atom"]
    assert tensor.component_names == ["o3_mu"]
    assert tensor.property_names == ["n"]

    # printing is metatensor's, character for character
    theirs = metatensor.load(data_path("spherical-expansion.mts"))
    assert str(tensor) == str(theirs)
    assert str(tensor.block(2).gradient("positions")) == str(theirs.block(2).gradient("positions"))
    radial_theirs = metatensor.load(data_path("radial-spectrum.mts"))
    radial = from_metatensor(radial_theirs)
    selection = {"center_type": 7, "neighbor_type": 7}
    assert str(radial.block(selection)) == str(radial_theirs.block(selection))


@pytest.mark.parametrize(
    ("name", "sort_samples"),
    [
        # the default run sorts or not in turn; every pair in the slow step
        pytest.param(name, sort, marks=() if (i + sort) % 2 else pytest.mark.slow)
        for i, name in enumerate(FILES)
        for sort in (True, False)
    ],
)
def test_moving_keys_matches_metatensor(name, sort_samples):
    theirs = metatensor.load(data_path(name))
    ours = from_metatensor(theirs)
    names = ours.keys.names
    for moved in [names[-1:], names[-2:], names[:1]]:
        for operation in ["keys_to_samples", "keys_to_properties"]:
            try:
                expected = getattr(theirs, operation)(moved, sort_samples=sort_samples)
            except Exception:  # metatensor refuses: we must refuse as well
                with pytest.raises(ValueError):
                    getattr(ours, operation)(moved, sort_samples=sort_samples)
                continue
            result = getattr(ours, operation)(moved, sort_samples=sort_samples)
            assert_tensor_equal(result, expected, atol=0)


def test_keys_to_properties_with_explicit_labels_fills_missing():
    theirs = metatensor.load(data_path("radial-spectrum.mts"))
    ours = from_metatensor(theirs)
    selection = np.array([[1], [6], [7], [8]], np.int32)
    expected = theirs.keys_to_properties(metatensor.Labels(["neighbor_type"], selection))
    result = ours.keys_to_properties(Labels(["neighbor_type"], selection))
    assert_tensor_equal(result, expected, atol=0)


def test_components_to_properties_matches_metatensor():
    theirs = metatensor.load(data_path("spherical-expansion.mts"))
    ours = from_metatensor(theirs)
    expected = theirs.components_to_properties("o3_mu")
    assert_tensor_equal(ours.components_to_properties("o3_mu"), expected, atol=0)


def test_components_to_properties_moves_the_middle_of_three_components():
    # metatensor swaps axes here instead of moving one; check against a hand computation
    rng = np.random.default_rng(1)
    components = [Labels.range("a", 2), Labels.range("b", 3), Labels.range("c", 4)]
    values = rng.normal(size=(5, 2, 3, 4, 6))
    block = TensorBlock(values, Labels.range("s", 5), components, Labels.range("p", 6))
    result = TensorMap(Labels.single(), [block]).components_to_properties("b").block(0)
    assert [c.names[0] for c in result.components] == ["a", "c"]
    assert result.properties.names == ["b", "p"]
    # moved in NumPy, then converted like every operation's output (float32 with x64 off)
    expected = values.astype(result.values.dtype)
    for i, (b, p) in enumerate(result.properties.values):
        np.testing.assert_array_equal(
            np.asarray(result.values)[:, :, :, i], expected[:, :, b, :, p]
        )


def test_moving_errors():
    tensor = from_metatensor(metatensor.load(data_path("spherical-expansion.mts")))
    with pytest.raises(ValueError, match="'foo' is not a key dimension"):
        tensor.keys_to_samples("foo")
    with pytest.raises(ValueError, match="different components"):
        tensor.keys_to_samples("o3_lambda")
    with pytest.raises(ValueError, match="'xyz' is not a component dimension"):
        tensor.components_to_properties("xyz")


def test_moving_keys_under_jit_matches_eager():
    import jax

    tensor = from_metatensor(metatensor.load(data_path("spherical-expansion.mts")))
    tensor = jax.tree_util.tree_map(jnp.asarray, tensor)
    eager = tensor.keys_to_properties("neighbor_type")
    jitted = jax.jit(lambda t: t.keys_to_properties("neighbor_type"))(tensor)
    assert jitted.keys == eager.keys
    for a, b in zip(jax.tree_util.tree_leaves(eager), jax.tree_util.tree_leaves(jitted)):
        np.testing.assert_allclose(a, b, rtol=0, atol=0)


def test_to_casts_and_converts_values_and_gradients():
    tensor = from_metatensor(metatensor.load(str(data_path("spherical-expansion.mts"))))
    tensor.set_info("origin", "test")
    assert tensor.device == "cpu"
    single = tensor.to(dtype=jnp.float32)
    assert single.get_info("origin") == "test"
    for block, original in zip(single, tensor):
        assert block.values.dtype == np.float32
        assert block.gradient("positions").values.dtype == np.float32
        assert block.samples == original.samples
        np.testing.assert_allclose(block.values, original.values, rtol=1e-6)
    on_jax = tensor.to(arrays="jax", device="cpu")
    assert isinstance(on_jax.block(0).values, jax.Array)
    assert on_jax.device == jax.devices("cpu")[0]
    back = on_jax.to(arrays="numpy")
    assert isinstance(back.block(0).gradient("positions").values, np.ndarray)
    assert_tensor_equal(back, tensor)
    # casting is jit-able (metadata static)
    assert jax.jit(lambda t: t.to(dtype=jnp.float32))(on_jax).dtype == jnp.float32
    assert tensor.keys.to("cpu") is tensor.keys  # static labels are host metadata
    samples = Labels.range("s", 3).to_dynamic()
    dynamic = TensorBlock(jnp.ones((3, 2)), samples, [], Labels.range("p", 2)).to(device="cpu")
    assert dynamic.samples.is_dynamic and dynamic.samples.device == jax.devices("cpu")[0]
    # dynamic samples everywhere, same values and sizes
    everywhere = tensor.to_dynamic_samples()
    for block, original in zip(everywhere, tensor):
        assert block.samples.is_dynamic and block.gradient("positions").samples.is_dynamic
        np.testing.assert_array_equal(block.samples.values, original.samples.values)
        assert block.values is original.values
    with pytest.raises(ValueError, match="arrays must be"):
        tensor.to(arrays="torch")
    # as in metatensor, NumPy data can go to "cpu", nowhere else
    assert isinstance(tensor.to(arrays="numpy", device="cpu").block(0).values, np.ndarray)
    with pytest.raises(ValueError, match="non-cpu device"):
        tensor.to(arrays="numpy", device="cuda")
    with pytest.raises(ValueError, match="no JAX device"):
        tensor.to(device="tpu")


def test_with_arrays_rebuilds_a_block_with_its_metadata():
    rng = np.random.default_rng(3)
    block = TensorBlock(
        rng.normal(size=(4, 3, 2)),
        Labels.range("s", 4),
        [Labels.range("c", 3)],
        Labels.range("p", 2),
    )
    block.add_gradient(
        "positions",
        TensorBlock(
            rng.normal(size=(5, 3, 3, 2)),
            Labels(["sample", "atom"], np.array([[0, 0], [1, 0], [1, 1], [2, 2], [3, 0]])),
            [Labels.range("xyz", 3), Labels.range("c", 3)],
            Labels.range("p", 2),
        ),
    )
    wider = Labels.range("q", 5)
    new = block.with_arrays(
        np.ones((4, 3, 5)), properties=wider, gradients={"positions": np.zeros((5, 3, 3, 5))}
    )
    assert new.samples == block.samples and new.components == block.components
    assert new.properties == wider and not new.is_view
    gradient = new.gradient("positions")
    assert gradient.samples == block.gradient("positions").samples
    assert gradient.components == block.gradient("positions").components
    assert gradient.properties == wider
    np.testing.assert_array_equal(gradient.values, 0.0)
    # no gradients unless given; new samples; shapes are checked unless check=False
    assert block.with_arrays(block.values).gradients_list() == []
    assert block.with_arrays(np.ones((2, 3, 2)), samples=Labels.range("s", 2)).shape == (2, 3, 2)
    with pytest.raises(ValueError, match="does not match the metadata"):
        block.with_arrays(np.ones((4, 3, 3)))
    with pytest.raises(ValueError, match="does not match the metadata"):
        block.with_arrays(block.values, gradients={"positions": np.ones((5, 3, 4, 2))})
    unchecked = block.with_arrays(np.ones((4, 3, 2)), check=False)
    assert unchecked.shape == (4, 3, 2)
