"""Block selection, gradients, join, slice/split, sort, unique_metadata and dimension edits,
cross-checked with metatensor-operations on the shared files and random tensors."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import metatensor
import numpy as np
import pytest
from helpers import (
    FLOAT,
    assert_block_equal,
    assert_labels_equal,
    assert_tensor_equal,
    from_metatensor,
)
from test_operations_reduce import jit_apply, load, random_mts_tensor

import eqx_tensor as eqt
from eqx_tensor import Labels, TensorBlock, TensorMap


def both(names, values):
    """The same Labels for us and for metatensor."""
    values = np.asarray(values, dtype=np.int32)
    return Labels(names, values), metatensor.Labels(names, values)


def dynamic_copy(tensor: TensorMap) -> TensorMap:
    """``tensor`` with every block's samples made dynamic (gradients removed)."""
    return eqt.remove_gradients(tensor).to_dynamic_samples()


# --------------------------------------------------------------------------- filter / drop
@pytest.mark.parametrize("file", ["spherical-expansion.mts", "qm7-power-spectrum.mts"])
def test_filter_and_drop_blocks_match_metatensor(file):
    theirs, ours = load(file)
    name = theirs.keys.names[0]
    selected = np.unique(theirs.keys.column(name))[:2].reshape(-1, 1)
    ours_keys, their_keys = both([name], selected)
    assert_tensor_equal(
        eqt.filter_blocks(ours, ours_keys), metatensor.filter_blocks(theirs, their_keys)
    )
    assert_tensor_equal(
        eqt.drop_blocks(ours, ours_keys), metatensor.drop_blocks(theirs, their_keys)
    )
    # matching nothing gives an empty TensorMap, as in metatensor
    nothing, their_nothing = both([name], [[-99]])
    assert len(eqt.filter_blocks(ours, nothing)) == 0
    assert len(metatensor.filter_blocks(theirs, their_nothing)) == 0
    assert len(eqt.drop_blocks(ours, nothing)) == len(ours)


def test_drop_empty_blocks_matches_metatensor():
    theirs, ours = load("spherical-expansion.mts")
    selection, their_selection = both(["atom"], [[0]])
    sliced = eqt.slice(ours, "samples", selection)
    their_sliced = metatensor.slice(theirs, "samples", their_selection)
    result = eqt.drop_empty_blocks(sliced)
    assert_tensor_equal(result, metatensor.drop_empty_blocks(their_sliced))
    assert 0 < len(result) < len(ours)


def test_filter_blocks_errors_and_jit():
    _, ours = load("spherical-expansion.mts")
    with pytest.raises(ValueError, match="'l' in the keys given to 'filter_blocks'"):
        eqt.filter_blocks(ours, Labels(["l"], np.array([[0]])))
    with pytest.raises(TypeError, match="`keys` in 'drop_blocks' must be Labels"):
        eqt.drop_blocks(ours, {"o3_lambda": 0})
    with pytest.raises(TypeError, match="`copy`"):
        eqt.filter_blocks(ours, Labels(["o3_lambda"], np.array([[0]])), copy=1)
    keys = Labels(["o3_lambda"], np.array([[1]]))
    result = jit_apply(eqt.filter_blocks, ours, keys)
    assert result.keys == eqt.filter_blocks(ours, keys).keys
    # metadata-only operations accept dynamic samples
    dynamic = dynamic_copy(ours)
    assert eqt.filter_blocks(dynamic, keys).block(0).samples.is_dynamic


# --------------------------------------------------------------------------- gradients
def test_remove_gradients_and_detach_match_metatensor():
    theirs, ours = load("qm7-power-spectrum.mts")
    assert_tensor_equal(eqt.remove_gradients(ours), metatensor.remove_gradients(theirs))
    assert_tensor_equal(
        eqt.remove_gradients(ours, ["strain"]), metatensor.remove_gradients(theirs, ["strain"])
    )
    block = eqt.remove_gradients_block(ours.block(3), ["positions"])
    assert block.gradients_list() == ["strain"]
    assert_block_equal(block, metatensor.remove_gradients_block(theirs.block(3), ["positions"]))
    assert_tensor_equal(eqt.detach(ours), metatensor.detach(theirs))


def test_detach_stops_autodiff_but_keeps_explicit_gradients():
    _, ours = load("radial-spectrum.mts")
    # in the run's precision: the gradient's dtype must match the scaled values'
    block = ours.block(0).to(dtype=FLOAT)

    def loss(scale, detach):
        scaled = TensorBlock(
            jnp.asarray(block.values) * scale, block.samples, block.components, block.properties
        )
        scaled.add_gradient("positions", block.gradient("positions"))
        if detach:
            scaled = eqt.detach_block(scaled)
        return jnp.sum(scaled.values**2)

    assert jax.grad(loss)(2.0, False) != 0.0
    assert jax.grad(loss)(2.0, True) == 0.0
    assert eqt.detach_block(block).gradients_list() == ["positions"]


def test_requires_grad_maps_to_identity_or_detach():
    _, ours = load("radial-spectrum.mts")
    ours = eqt.remove_gradients(ours)

    def loss(scale, flag):
        scaled = eqt.multiply(ours, scale)
        return sum(jnp.sum(b.values**2) for b in eqt.requires_grad(scaled, flag))

    assert jax.grad(loss)(2.0, True) > 0.0
    assert jax.grad(loss)(2.0, False) == 0.0
    assert eqt.requires_grad_block(ours.block(0)) is ours.block(0)
    with pytest.raises(TypeError, match="requires_grad"):
        eqt.requires_grad(ours, "yes")


# --------------------------------------------------------------------------- join
def _split_systems(theirs):
    first, second = metatensor.split(
        theirs,
        "samples",
        [
            metatensor.Labels(["system"], np.array([[0], [2], [4]], dtype=np.int32)),
            metatensor.Labels(["system"], np.array([[1], [3], [5], [6]], dtype=np.int32)),
        ],
    )
    return first, second


@pytest.mark.parametrize("add_dimension", [None, "tensor"])
def test_join_samples_matches_metatensor(add_dimension):
    theirs, _ = load("qm7-power-spectrum.mts")
    first, second = _split_systems(theirs)
    ours = [from_metatensor(first), from_metatensor(second)]
    result = eqt.join(ours, "samples", add_dimension=add_dimension)
    reference = metatensor.join([first, second], "samples", add_dimension=add_dimension)
    assert_tensor_equal(result, reference)


def test_join_properties_matches_metatensor():
    theirs, ours = load("spherical-expansion.mts")
    low, their_low = both(["n"], [[0], [1]])
    high, their_high = both(["n"], [[2], [3], [4], [5]])
    parts = eqt.split(ours, "properties", [low, high])
    their_parts = metatensor.split(theirs, "properties", [their_low, their_high])
    assert_tensor_equal(eqt.join(parts, "properties"), metatensor.join(their_parts, "properties"))
    # same properties twice: add_dimension keeps them apart
    assert_tensor_equal(
        eqt.join([parts[0], parts[0]], "properties", add_dimension="tensor"),
        metatensor.join([their_parts[0], their_parts[0]], "properties", add_dimension="tensor"),
    )
    # different property names: (joined_index, property)
    renamed = eqt.rename_dimension(parts[1], "properties", "n", "radial")
    their_renamed = metatensor.rename_dimension(their_parts[1], "properties", "n", "radial")
    assert_tensor_equal(
        eqt.join([parts[0], renamed], "properties"),
        metatensor.join([their_parts[0], their_renamed], "properties"),
    )


def test_join_properties_merges_different_gradient_samples():
    theirs = random_mts_tensor(11, n_blocks=2)
    other = random_mts_tensor(11, n_blocks=2)
    # same samples, different properties names and different (random) gradient rows
    other_blocks = []
    rng = np.random.default_rng(0)
    for block in other.blocks():
        gradient = block.gradient("positions")
        keep = np.sort(rng.permutation(len(gradient.samples))[: len(gradient.samples) // 2])
        new = metatensor.TensorBlock(
            block.values * 2, block.samples, block.components, block.properties
        )
        new.add_gradient(
            "positions",
            metatensor.TensorBlock(
                gradient.values[keep],
                metatensor.Labels(gradient.samples.names, gradient.samples.values[keep]),
                gradient.components,
                block.properties,
            ),
        )
        new.add_gradient("strain", block.gradient("strain").copy())
        other_blocks.append(new)
    other = metatensor.TensorMap(other.keys, other_blocks)
    result = eqt.join(
        [from_metatensor(theirs), from_metatensor(other)], "properties", add_dimension="t"
    )
    reference = metatensor.join([theirs, other], "properties", add_dimension="t")
    assert_tensor_equal(result, reference)


@pytest.mark.parametrize("different_keys", ["intersection", "union"])
@pytest.mark.parametrize("axis", ["samples", "properties"])
def test_join_different_keys_matches_metatensor(different_keys, axis):
    theirs, _ = load("spherical-expansion.mts")
    first = metatensor.filter_blocks(theirs, both(["o3_lambda"], [[0], [1]])[1])
    second = metatensor.filter_blocks(theirs, both(["o3_lambda"], [[1], [2]])[1])
    result = eqt.join(
        [from_metatensor(first), from_metatensor(second)],
        axis,
        different_keys=different_keys,
        add_dimension="tensor",
    )
    reference = metatensor.join(
        [first, second], axis, different_keys=different_keys, add_dimension="tensor"
    )
    assert_tensor_equal(result, reference)


def test_join_errors():
    theirs, ours = load("spherical-expansion.mts")
    parts = eqt.split(
        ours, "properties", [Labels(["n"], np.array([[0]])), Labels(["n"], np.array([[1]]))]
    )
    with pytest.raises(eqt.NotEqualError, match="should have the same properties"):
        eqt.join(parts, "samples", add_dimension="t")
    with pytest.raises(ValueError, match=r"samples.*not unique|unique entries"):
        eqt.join([ours, ours], "samples")
    with pytest.raises(ValueError, match="add_dimension"):
        eqt.join([ours, ours], "samples")
    with pytest.raises(eqt.NotEqualError, match=r"same keys|same number of blocks"):
        eqt.join(
            [ours, eqt.filter_blocks(ours, Labels(["o3_lambda"], np.array([[0]])))],
            "samples",
            add_dimension="t",
        )
    renamed = eqt.rename_dimension(ours, "samples", "atom", "center")
    with pytest.raises(ValueError, match="different sample names"):
        eqt.join([ours, renamed], "samples")
    with pytest.raises(ValueError, match="'samples' or 'properties'"):
        eqt.join([ours, ours], "components")
    with pytest.raises(ValueError, match="not a valid option for `different_keys`"):
        eqt.join([ours, ours], "samples", different_keys="all")
    with pytest.raises(ValueError, match="at least one"):
        eqt.join([], "samples")
    with pytest.raises(TypeError, match="list or a tuple"):
        eqt.join(ours, "samples")
    sliced = eqt.slice(ours, "samples", Labels(["atom"], np.array([[1]])))
    with pytest.raises(eqt.NotEqualError, match="same samples"):
        eqt.join([ours, sliced], "properties", different_keys="intersection", add_dimension="t")
    del theirs


def test_join_single_tensor_still_adds_the_dimension():
    _, ours = load("radial-spectrum.mts")
    result = eqt.join([ours], "samples", add_dimension="tensor")
    assert result.sample_names == ["system", "atom", "tensor"]
    block = eqt.join_blocks([ours.block(0)], "properties", add_dimension="tensor")
    assert block.properties.names == ["n", "tensor"]


def test_join_samples_with_dynamic_labels_under_jit():
    theirs, _ = load("qm7-power-spectrum.mts")
    first, second = _split_systems(metatensor.remove_gradients(theirs))
    ours = [dynamic_copy(from_metatensor(first)), dynamic_copy(from_metatensor(second))]
    traces = []

    @jax.jit
    def joined(tensors):
        traces.append(1)
        return eqt.join(tensors, "samples", add_dimension="tensor")

    result = joined(ours)
    reference = metatensor.join([first, second], "samples", add_dimension="tensor")
    for block, their_block in zip(result, reference.blocks()):
        assert block.samples.is_dynamic
        np.testing.assert_array_equal(block.samples.values, their_block.samples.values)
        np.testing.assert_allclose(block.values, their_block.values, atol=1e-12)
    # other sample values, same sizes: no new compilation
    shifted = [
        TensorMap(
            t.keys,
            [
                TensorBlock(
                    b.values,
                    eqt.Labels(b.samples.names, b.samples.values + 7),
                    b.components,
                    b.properties,
                )
                for b in t
            ],
        )
        for t in ours
    ]
    joined(shifted)
    assert len(traces) == 1


def test_join_blocks_matches_metatensor():
    theirs, ours = load("spherical-expansion.mts")
    blocks = [ours.block(0), ours.block(0)]
    reference = metatensor.join_blocks(
        [theirs.block(0), theirs.block(0)], "properties", add_dimension="copy"
    )
    assert_block_equal(eqt.join_blocks(blocks, "properties", add_dimension="copy"), reference)


# --------------------------------------------------------------------------- slice / split
@pytest.mark.parametrize("file", ["spherical-expansion.mts", "qm7-power-spectrum.mts"])
def test_slice_and_split_samples_match_metatensor(file):
    theirs, ours = load(file)
    selections = [
        both(["system"], [[0], [2]]),
        both(["atom"], [[1], [3]]),
        both(["system", "atom"], [[1, 0], [5, 2]]),
        both(["system"], [[-5]]),
    ]
    for selection, their_selection in selections:
        assert_tensor_equal(
            eqt.slice(ours, "samples", selection),
            metatensor.slice(theirs, "samples", their_selection),
        )
    parts = eqt.split(ours, "samples", [s for s, _ in selections])
    their_parts = metatensor.split(theirs, "samples", [s for _, s in selections])
    for part, their_part in zip(parts, their_parts):
        assert_tensor_equal(part, their_part)


def test_slice_properties_matches_metatensor():
    theirs, ours = load("qm7-power-spectrum.mts")
    selection, their_selection = both(["l", "n_1"], [[2, 0], [0, 1], [1, 3]])
    assert_tensor_equal(
        eqt.slice(ours, "properties", selection),
        metatensor.slice(theirs, "properties", their_selection),
    )


def test_slice_block_with_positions_matches_metatensor():
    theirs, ours = load("qm7-power-spectrum.mts")
    for axis, positions in [("samples", [5, 0, 3]), ("properties", [7, 1, 2])]:
        for selection in (positions, np.array(positions)):
            assert_block_equal(
                eqt.slice_block(ours.block(0), axis, selection),
                metatensor.slice_block(theirs.block(0), axis, np.array(positions)),
            )
    blocks = eqt.split_block(ours.block(0), "samples", [[0, 1], [2]])
    assert [len(b.samples) for b in blocks] == [2, 1]


def test_slice_errors():
    _, ours = load("spherical-expansion.mts")
    with pytest.raises(ValueError, match="invalid sample name 'structure'"):
        eqt.slice(ours, "samples", Labels(["structure"], np.array([[0]])))
    with pytest.raises(ValueError, match="invalid property name 'l'"):
        eqt.split(ours, "properties", [Labels(["l"], np.array([[0]]))])
    with pytest.raises(ValueError, match="'samples' or 'properties'"):
        eqt.slice(ours, "keys", Labels(["system"], np.array([[0]])))
    with pytest.raises(TypeError, match="`selection`"):
        eqt.slice(ours, "samples", {"system": 0})
    with pytest.raises(ValueError, match="out of range"):
        eqt.slice_block(ours.block(0), "properties", [0, 99])
    with pytest.raises(ValueError, match="repeats"):
        eqt.slice_block(ours.block(0), "properties", [0, 0])
    with pytest.raises(TypeError, match="must be a list"):
        eqt.split(ours, "samples", Labels(["system"], np.array([[0]])))


def test_slice_dynamic_samples():
    _, ours = load("qm7-power-spectrum.mts")
    dynamic = dynamic_copy(eqt.remove_gradients(ours))
    with pytest.raises(ValueError, match="slice along samples with a Labels selection"):
        eqt.slice(dynamic, "samples", Labels(["system"], np.array([[0]])))
    block = jax.jit(lambda b: eqt.slice_block(b, "samples", [2, 0]))(dynamic.block(0))
    np.testing.assert_array_equal(block.samples.values, ours.block(0).samples.values[[2, 0]])
    sliced = eqt.slice(dynamic, "properties", Labels(["l"], np.array([[0]])))
    assert sliced.block(0).samples.is_dynamic


# --------------------------------------------------------------------------- sort
@pytest.mark.parametrize("seed", [0, *[pytest.param(s, marks=pytest.mark.slow) for s in (1, 2)]])
def test_sort_matches_metatensor(seed):
    theirs = random_mts_tensor(seed, n_blocks=3)
    # shuffle the keys too
    order = np.random.default_rng(seed).permutation(len(theirs.keys))
    theirs = metatensor.TensorMap(
        metatensor.Labels(theirs.keys.names, theirs.keys.values[order]),
        [theirs.block(int(i)).copy() for i in order],
    )
    ours = from_metatensor(theirs)
    for axes in [
        "all",
        "keys",
        "samples",
        ["properties"],
        ["components", "samples"],
        ["keys", "samples"],
    ]:
        for descending in (False, True):
            axes_argument = list(axes) if isinstance(axes, list) else axes
            result = eqt.sort(ours, axes_argument, descending)
            reference = metatensor.sort(
                theirs, list(axes) if isinstance(axes, list) else axes, descending
            )
            assert_tensor_equal(result, reference)


def test_sort_under_jit_and_on_empty_blocks():
    theirs = random_mts_tensor(7, n_blocks=2)
    ours = from_metatensor(theirs)
    jitted = jit_apply(eqt.sort, ours)
    assert_tensor_equal(jitted, metatensor.sort(theirs))
    empty = eqt.slice(ours, "samples", Labels(["system"], np.array([[99]])))
    sorted_empty = eqt.sort(empty)
    for block in sorted_empty:
        assert len(block.samples) == 0
        properties = np.asarray(block.properties.values)
        assert np.all(properties[np.lexsort(properties.T[::-1])] == properties)


def test_sort_errors_and_dynamic_samples():
    _, ours = load("radial-spectrum.mts")
    with pytest.raises(ValueError, match="`axes` in 'sort_block' must be one of"):
        eqt.sort_block(ours.block(0), "keys")
    with pytest.raises(TypeError, match="'axes'"):
        eqt.sort(ours, 3)
    dynamic = dynamic_copy(eqt.remove_gradients(ours))
    with pytest.raises(ValueError, match="sort along samples needs the values"):
        eqt.sort(dynamic)
    assert eqt.sort(dynamic, ["keys", "properties"]).block(0).samples.is_dynamic


# --------------------------------------------------------------------------- unique_metadata
def test_unique_metadata_matches_metatensor():
    theirs, ours = load("qm7-power-spectrum.mts")
    for axis, names, gradient in [
        ("samples", ["system"], None),
        ("samples", "atom", None),
        ("properties", ("l", "n_2"), None),
        ("samples", ["system", "atom"], "positions"),
        ("samples", ["sample"], "strain"),
    ]:
        assert_labels_equal(
            eqt.unique_metadata(ours, axis, names, gradient),
            metatensor.unique_metadata(theirs, axis, names, gradient),
        )
        assert_labels_equal(
            eqt.unique_metadata_block(ours.block(2), axis, names, gradient),
            metatensor.unique_metadata_block(theirs.block(2), axis, names, gradient),
        )
    with pytest.raises(ValueError, match="'structure' in 'unique_metadata' is not a dimension"):
        eqt.unique_metadata(ours, "samples", "structure")
    with pytest.raises(ValueError, match="'samples' or 'properties'"):
        eqt.unique_metadata(ours, "keys", "system")
    dynamic = dynamic_copy(eqt.remove_gradients(ours))
    with pytest.raises(ValueError, match="unique_metadata needs the values"):
        eqt.unique_metadata(dynamic, "samples", "system")


# --------------------------------------------------------------------------- dimensions
def test_dimension_edits_match_metatensor():
    theirs, ours = load("spherical-expansion.mts")
    n_properties = len(theirs.block(0).properties)
    edits = [
        ("insert_dimension", ("keys", 1, "foo", 3)),
        ("insert_dimension", ("samples", 0, "foo", 3)),
        ("insert_dimension", ("properties", 1, "foo", np.arange(n_properties))),
        ("append_dimension", ("keys", "foo", np.arange(len(theirs.keys)))),
        ("append_dimension", ("samples", "foo", 0)),
        ("append_dimension", ("properties", "foo", 2)),
        ("permute_dimensions", ("keys", [3, 1, 0, 2])),
        ("permute_dimensions", ("samples", [1, 0])),
        ("remove_dimension", ("keys", "o3_sigma")),
        ("rename_dimension", ("keys", "o3_lambda", "l")),
        ("rename_dimension", ("samples", "atom", "center")),
        ("rename_dimension", ("samples", "system", "structure")),
        ("rename_dimension", ("components", "o3_mu", "m")),
        ("rename_dimension", ("components", "xyz", "direction")),  # gradients only
        ("insert_dimension", ("keys", -1, "foo", 3)),  # negative: numpy.insert's meaning
        ("insert_dimension", ("samples", -2, "foo", 3)),
        ("permute_dimensions", ("keys", [-1, 1, 0, -2])),
        ("rename_dimension", ("properties", "n", "k")),
    ]
    for name, arguments in edits:
        result = getattr(eqt, name)(ours, *arguments)
        assert_tensor_equal(result, getattr(metatensor, name)(theirs, *arguments))
    # properties of the radial spectrum: a two-dimensional case for permute / remove
    theirs, ours = load("qm7-power-spectrum.mts")
    system, their_system = both(["system"], [[3]])
    ours = eqt.slice(ours, "samples", system)
    theirs = metatensor.slice(theirs, "samples", their_system)
    for name, arguments in [
        ("permute_dimensions", ("properties", [2, 0, 1])),
        ("remove_dimension", ("samples", "system")),
    ]:
        assert_tensor_equal(
            getattr(eqt, name)(ours, *arguments), getattr(metatensor, name)(theirs, *arguments)
        )


def test_dimension_edit_errors():
    _, ours = load("spherical-expansion.mts")
    with pytest.raises(ValueError, match="not a valid axis"):
        eqt.insert_dimension(ours, "components", 0, "foo", 0)
    with pytest.raises(ValueError, match="not a valid axis"):
        eqt.append_dimension(ours, "blocks", "foo", 0)
    with pytest.raises(ValueError, match="already a dimension"):
        eqt.append_dimension(ours, "keys", "o3_lambda", 0)
    with pytest.raises(ValueError, match=r"must have shape \(5,\)"):
        eqt.append_dimension(ours, "properties", "foo", np.arange(3))
    with pytest.raises(ValueError, match="permutation"):
        eqt.permute_dimensions(ours, "samples", [0, 0])
    with pytest.raises(ValueError, match="'foo' in 'remove_dimension' is not a dimension"):
        eqt.remove_dimension(ours, "keys", "foo")
    with pytest.raises(ValueError, match="only dimension"):
        eqt.remove_dimension(ours, "properties", "n")
    with pytest.raises(ValueError, match=r"repeated entries|unique"):
        eqt.remove_dimension(ours, "keys", "o3_lambda")
    with pytest.raises(ValueError, match="'uvw' in 'rename_dimension' is not a component"):
        eqt.rename_dimension(ours, "components", "uvw", "abc")
    with pytest.raises(ValueError, match="index 5 in 'insert_dimension' is out of range"):
        eqt.insert_dimension(ours, "keys", 5, "foo", 0)
    with pytest.raises(ValueError, match="index -3 in 'permute_dimensions' is out of range"):
        eqt.permute_dimensions(ours, "samples", [-3, 0])
    with pytest.raises(ValueError, match="'append_dimension' along keys"):
        eqt.append_dimension(ours, "keys", "o3_sigma", 1)
    # concrete JAX arrays are fine for static labels (keys, properties)...
    n_keys = len(ours.keys)
    appended = eqt.append_dimension(ours, "keys", "tag", jnp.arange(n_keys))
    assert not appended.keys.is_dynamic and appended.keys.names[-1] == "tag"
    assert (
        not eqt.append_dimension(ours, "properties", "tag", jnp.zeros(5, jnp.int32))
        .block(0)
        .properties.is_dynamic
    )
    # ... but not traced ones
    with pytest.raises(ValueError, match="'append_dimension' must be known at trace time"):
        jax.jit(lambda v: eqt.append_dimension(ours, "keys", "tag", v).keys.names)(
            jnp.arange(n_keys)
        )
    with pytest.raises(ValueError, match="'foo' in 'rename_dimension' is not a dimension"):
        eqt.rename_dimension(ours, "samples", "foo", "bar")
    dynamic = dynamic_copy(eqt.remove_gradients(ours))
    with pytest.raises(ValueError, match="remove_dimension along samples"):
        eqt.remove_dimension(dynamic, "samples", "atom")
    # the others only need names and sizes
    edited = eqt.append_dimension(
        eqt.rename_dimension(dynamic, "samples", "atom", "center"), "samples", "tag", 1
    )
    assert edited.block(0).samples.is_dynamic
    assert edited.sample_names == ["system", "center", "tag"]


# --------------------------------------------------------------------------- jit pipeline
def test_manipulation_pipeline_under_jit_equals_eager():
    _, ours = load("spherical-expansion.mts")

    def pipeline(tensor):
        tensor = eqt.remove_gradients(tensor, ["positions"])
        tensor = eqt.filter_blocks(tensor, Labels(["o3_lambda"], np.array([[0], [1]])))
        tensor = eqt.sort(eqt.append_dimension(tensor, "samples", "tag", 0), "samples", True)
        tensor = eqt.slice(tensor, "properties", Labels(["n"], np.array([[0], [2]])))
        return eqt.join([tensor, tensor], "properties", add_dimension="copy")

    eager = pipeline(ours)
    jitted = jax.jit(pipeline)(ours)
    for a, b in zip(jitted, eager):
        assert a.samples == b.samples and a.properties == b.properties
        np.testing.assert_allclose(a.values, b.values, atol=1e-14)


def test_grad_flows_through_join_slice_sort_and_filter():
    _, ours = load("radial-spectrum.mts")
    ours = eqt.remove_gradients(ours)
    keys = Labels(["center_type"], np.asarray(ours.keys.values)[:1, :1])

    def loss(scale):
        scaled = TensorMap(
            ours.keys,
            [TensorBlock(b.values * scale, b.samples, b.components, b.properties) for b in ours],
        )
        joined = eqt.join([scaled, scaled], "samples", add_dimension="copy")
        kept = eqt.slice(eqt.filter_blocks(joined, keys), "properties", [0, 2])
        return sum(jnp.sum(b.values) for b in eqt.sort(kept))

    assert len(eqt.filter_blocks(ours, keys)) > 0
    expected = 2 * sum(
        np.sum(np.asarray(b.values)[..., [0, 2]]) for b in eqt.filter_blocks(ours, keys)
    )
    np.testing.assert_allclose(jax.grad(loss)(1.0), expected, rtol=1e-12)
