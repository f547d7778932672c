import jax.numpy as jnp
import metatensor
import numpy as np
import pytest
from helpers import assert_labels_equal

from eqx_tensor import Labels, LabelsEntry

# integer metadata only: the same in both precisions, so the float32 run skips it
pytestmark = pytest.mark.x64_only


def _pair(names, values):
    return Labels(names, np.array(values)), metatensor.Labels(names, np.array(values, np.int32))


def test_construction_and_accessors():
    labels = Labels(["system", "atom"], np.array([[0, 1], [0, 2], [1, 0]]))
    assert labels.names == ["system", "atom"]
    assert labels.values.dtype == np.int32
    assert not labels.values.flags.writeable
    assert len(labels) == 3
    np.testing.assert_array_equal(labels["atom"], [1, 2, 0])
    np.testing.assert_array_equal(labels.column("system"), [0, 0, 1])
    entry = labels[1]
    assert isinstance(entry, LabelsEntry)
    assert entry["atom"] == 2 and entry[0] == 0
    assert tuple(entry) == (0, 2)
    assert repr(entry) == "LabelsEntry(system=0, atom=2)"
    assert [tuple(e) for e in labels] == [(0, 1), (0, 2), (1, 0)]
    assert labels.position(entry) == 1
    assert labels.position((1, 0)) == 2
    assert labels.position([5, 5]) is None
    assert (0, 1) in labels and (3, 3) not in labels
    assert Labels("a", [[1]]).names == ["a"]


def test_constructors_match_metatensor():
    assert_labels_equal(Labels.single(), metatensor.Labels.single())
    assert_labels_equal(Labels.range("n", 4), metatensor.Labels.range("n", 4))
    empty = Labels.empty(["a", "b"])
    assert len(empty) == 0 and empty.values.shape == (0, 2)


@pytest.mark.parametrize(
    ("names", "values", "match"),
    [
        (["a"], [[1], [1]], "unique entries"),
        (["a", "b"], [[1]], "2 names"),
        (["a"], [1, 2], "2-D array"),
        (["a", "a"], [[1, 2]], "names must be unique"),
        (["1a"], [[1]], "valid identifier"),
        (["a"], [[2**40]], "int32"),
    ],
)
def test_bad_labels_raise(names, values, match):
    with pytest.raises(ValueError, match=match):
        Labels(names, np.array(values))


def test_float_labels_raise_a_type_error_as_in_metatensor():
    with pytest.raises(TypeError, match="must be integers"):
        Labels(["a"], np.array([[1.5]]))


def test_non_string_name_is_type_error():
    with pytest.raises(TypeError, match="must be strings"):
        Labels([1], np.array([[0]]))


def test_set_operations_match_metatensor():
    a, ma = _pair(["x", "y"], [[0, 0], [1, 2], [3, 4], [5, 5]])
    b, mb = _pair(["x", "y"], [[3, 4], [7, 7], [0, 0], [9, 1]])
    union, m1, m2 = a.union_and_mapping(b)
    munion, mm1, mm2 = ma.union_and_mapping(mb)
    assert_labels_equal(union, munion)
    np.testing.assert_array_equal(m1, mm1)
    np.testing.assert_array_equal(m2, mm2)
    inter, i1, i2 = a.intersection_and_mapping(b)
    minter, mi1, mi2 = ma.intersection_and_mapping(mb)
    assert_labels_equal(inter, minter)
    np.testing.assert_array_equal(i1, mi1)
    np.testing.assert_array_equal(i2, mi2)
    diff, d1 = a.difference_and_mapping(b)
    mdiff, md1 = ma.difference_and_mapping(mb)
    assert_labels_equal(diff, mdiff)
    np.testing.assert_array_equal(d1, md1)
    with pytest.raises(ValueError, match="same names"):
        a.union(Labels(["x", "z"], np.array([[0, 0]])))


def test_select_matches_metatensor():
    a, ma = _pair(["x", "y", "z"], [[0, 0, 1], [1, 2, 1], [3, 4, 2], [5, 5, 2]])
    selection, mselection = _pair(["z"], [[2]])
    np.testing.assert_array_equal(a.select(selection), ma.select(mselection))
    selection, mselection = _pair(["y", "x"], [[2, 1], [5, 5], [8, 8]])
    np.testing.assert_array_equal(a.select(selection), ma.select(mselection))
    with pytest.raises(ValueError, match="'w' is not a dimension"):
        a.select(Labels(["w"], np.array([[0]])))


def test_dimension_edits_match_metatensor():
    a, ma = _pair(["x", "y"], [[0, 0], [1, 2], [3, 4]])
    assert_labels_equal(
        a.insert(1, "n", np.array([7, 8, 9])), ma.insert(1, "n", np.array([7, 8, 9]))
    )
    # metatensor's append inserts at len(self) (entries) instead of len(names): compare with
    # the insert it means
    assert_labels_equal(a.append("n", np.array([7, 8, 9])), ma.insert(2, "n", np.array([7, 8, 9])))
    assert_labels_equal(a.remove("x"), ma.remove("x"))
    assert_labels_equal(a.rename("x", "w"), ma.rename("x", "w"))
    assert_labels_equal(a.permute([1, 0]), ma.permute([1, 0]))
    with pytest.raises(ValueError, match="repeated entries"):
        Labels(["x", "y"], np.array([[0, 1], [0, 2]])).remove("y")
    with pytest.raises(ValueError, match="already a dimension"):
        a.append("x", np.array([1, 2, 3]))
    with pytest.raises(ValueError, match="shape"):
        a.append("n", np.array([1, 2]))
    with pytest.raises(ValueError, match="permutation"):
        a.permute([0, 0])


def test_equality_and_hash():
    a = Labels(["x"], np.array([[0], [1]]))
    b = Labels(["x"], np.array([[0], [1]]))
    c = Labels(["x"], np.array([[1], [0]]))
    d = Labels(["y"], np.array([[0], [1]]))
    assert a == b and hash(a) == hash(b)
    assert a != c and a != d
    assert len({a, b, c, d}) == 3


def test_printing_matches_tutorial_layout():
    labels = Labels(["sample", "system", "atom"], np.array([[0, 0, 4], [0, 0, 5], [1, 0, 4]]))
    assert str(labels) == (
        "Labels\n    sample  system  atom\n      0       0      4\n      0       0      5\n"
        "      1       0      4"
    )
    long = Labels.range("o3_mu", 5)
    assert [line.strip() for line in str(long).splitlines()] == [
        "Labels",
        "o3_mu",
        "0",
        "1",
        "...",
        "3",
        "4",
    ]


def test_dynamic_labels():
    dynamic = Labels(["system", "atom"], jnp.array([[0, 1], [0, 2]], dtype=jnp.int32))
    assert dynamic.is_dynamic and len(dynamic) == 2
    with pytest.raises(ValueError, match=r"Labels\.select needs the values"):
        dynamic.select(Labels(["system"], np.array([[0]])))
    static = dynamic.to_static()
    assert not static.is_dynamic
    assert static == Labels(["system", "atom"], np.array([[0, 1], [0, 2]]))
    assert static.to_dynamic().is_dynamic
    with pytest.raises(TypeError, match="integers"):
        Labels(["a"], jnp.zeros((2, 1)))
