"""Labels and LabelsEntry against metatensor-core: the same inputs to both, the same results,
exception types and strings; and the vectorised lookups and set operations against
metatensor-core and a plain-Python reference on random labels."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import metatensor
import numpy as np
import pytest

from eqx_tensor import Labels, LabelsEntry
from eqx_tensor.labels import _SMALL

INT32 = np.iinfo(np.int32)


def _outcome(factory):
    """``("ok", result)`` or ``("error", exception)``."""
    try:
        return "ok", factory()
    except Exception as error:  # any exception is an outcome to compare
        return "error", error


def _expected_type(error: Exception) -> type:
    # metatensor-core reports invalid parameters as MetatensorError: ours are ValueError
    return ValueError if isinstance(error, metatensor.MetatensorError) else type(error)


def _same_labels(ours: Labels, theirs) -> None:
    assert isinstance(ours, Labels)
    assert ours.names == list(theirs.names)
    assert ours.values.dtype == np.int32
    np.testing.assert_array_equal(ours.values, np.asarray(theirs.values))


def _compare(ours_factory, theirs_factory) -> None:
    """Both succeed with equal results, or both raise the same type of exception."""
    ours, theirs = _outcome(ours_factory), _outcome(theirs_factory)
    assert ours[0] == theirs[0], f"ours: {ours[1]!r}, metatensor: {theirs[1]!r}"
    if ours[0] == "error":
        assert isinstance(ours[1], _expected_type(theirs[1])), (ours[1], theirs[1])
        assert str(ours[1]), "error messages must say what is wrong"
    elif isinstance(theirs[1], metatensor.Labels):
        _same_labels(ours[1], theirs[1])
    elif isinstance(theirs[1], np.ndarray):
        np.testing.assert_array_equal(ours[1], theirs[1])
    else:
        assert ours[1] == theirs[1]


def _pair(names, values):
    values = np.asarray(values, dtype=np.int32)
    return Labels(names, values), metatensor.Labels(names, values)


# --------------------------------------------------------------------------- construction
CONSTRUCTION = {
    "no names (0, 0)": ("", np.zeros((0, 0), np.int32)),
    "no names (0,)": ("", np.zeros((0,), np.int32)),
    "no names (3, 0)": ("", np.zeros((3, 0), np.int32)),
    "empty name list (2, 0)": ([], np.zeros((2, 0), np.int32)),
    "one name, (0,)": ("a", np.zeros((0,), np.int32)),
    "one name, (0, 5)": ("a", np.zeros((0, 5), np.int32)),
    "empty float": ("a", np.zeros((0, 1))),
    "string with a comma and space": ("a, b", np.zeros((1, 1), np.int32)),
    "string with a comma": ("a,b", np.zeros((1, 2), np.int32)),
    "tuple of names": (("a", "b"), np.zeros((1, 2), np.int32)),
    "array of names": (np.array(["a", "b"]), np.zeros((1, 2), np.int32)),
    "names an int": (5, np.zeros((1, 1), np.int32)),
    "name an int": ([5], np.zeros((1, 1), np.int32)),
    "name with a leading digit": (["1a"], np.zeros((1, 1), np.int32)),
    "name with a space": (["a b"], np.zeros((1, 1), np.int32)),
    "name with a dash": (["a-b"], np.zeros((1, 1), np.int32)),
    "non-ASCII name": (["é"], np.zeros((1, 1), np.int32)),
    "underscore name": (["_a1"], np.zeros((1, 1), np.int32)),
    "repeated names": (["a", "a"], np.zeros((1, 2), np.int32)),
    "empty name": ([""], np.zeros((1, 1), np.int32)),
    "1-D values": (["a"], np.array([1, 2], np.int32)),
    "3-D values": (["a"], np.zeros((1, 1, 1), np.int32)),
    "scalar values": (["a"], np.array(3)),
    "wrong number of columns": (["a", "b"], np.zeros((1, 1), np.int32)),
    "float values": (["a"], np.array([[1.5]])),
    "whole float values": (["a"], np.array([[1.0]])),
    "complex values": (["a"], np.array([[1j]])),
    "int64 values": (["a"], np.array([[1], [-4]], np.int64)),
    "uint8 values": (["a"], np.array([[3]], np.uint8)),
    "bool values": (["a"], np.array([[True], [False]])),
    "object values": (["a"], np.array([[1]], dtype=object)),
    "string values": (["a"], np.array([["1"]])),
    "repeated entries": (["a"], np.array([[1], [2], [1]])),
    "repeated entries, many": (["a", "b"], np.concatenate([np.arange(400), [7]]).reshape(-1, 1)),
    "non-contiguous values": (["a", "b"], np.arange(8, dtype=np.int32).reshape(2, 4)[:, ::2]),
    "int32 limits": (["a", "b"], np.array([[INT32.min, INT32.max], [INT32.max, INT32.min]])),
}


@pytest.mark.parametrize("case", list(CONSTRUCTION))
def test_construction_matches_metatensor(case):
    names, values = CONSTRUCTION[case]
    if case == "repeated entries, many":
        names = ["a"]
    _compare(lambda: Labels(names, values), lambda: metatensor.Labels(names, values))


@pytest.mark.parametrize("n", [3, 2 * _SMALL])
def test_assume_unique_skips_the_check_as_in_metatensor(n):
    values = (np.arange(n) % (n - 1)).reshape(-1, 1).astype(np.int32)  # first row repeated last
    with pytest.raises(ValueError, match="unique entries"):
        Labels(["a"], values)
    ours = Labels(["a"], values, assume_unique=True)
    theirs = metatensor.Labels(["a"], values, assume_unique=True)
    _same_labels(ours, theirs)
    # lookups find the first of the repeated entries, in both
    assert ours.position([0]) == theirs.position([0]) == 0
    other, their_other = _pair(["a"], [[0], [n + 5]])
    for method in ("union_and_mapping", "intersection_and_mapping", "difference_and_mapping"):
        result = getattr(ours, method)(other)
        reference = getattr(theirs, method)(their_other)
        _same_labels(result[0], reference[0])
        for mapping, their_mapping in zip(result[1:], reference[1:]):
            np.testing.assert_array_equal(mapping, their_mapping)
        # and with the repeated entries on the other side
        result = getattr(other, method)(ours)
        reference = getattr(their_other, method)(theirs)
        _same_labels(result[0], reference[0])
        for mapping, their_mapping in zip(result[1:], reference[1:]):
            np.testing.assert_array_equal(mapping, their_mapping)


def test_construction_errors_name_the_function_and_the_problem():
    with pytest.raises(TypeError, match=r"Labels: Labels names must be strings, got int"):
        Labels([5], np.zeros((1, 1), np.int32))
    with pytest.raises(ValueError, match=r"Labels: 'a b' is not a valid identifier"):
        Labels(["a b"], np.zeros((1, 1), np.int32))
    with pytest.raises(TypeError, match=r"Labels: values must be integers .* float64"):
        Labels(["a"], np.array([[1.5]]))
    with pytest.raises(ValueError, match=r"values have 1 columns but there are 2 names"):
        Labels(["a", "b"], np.zeros((3, 1), np.int32))
    with pytest.raises(ValueError, match=r"\(a=1\) is at rows 0 and 2.*assume_unique"):
        Labels(["a"], np.array([[1], [2], [1]]))
    with pytest.raises(ValueError, match=r"\(a=7\) is at rows 7 and 400"):
        Labels(["a"], np.concatenate([np.arange(400), [7]]).reshape(-1, 1))


def test_deliberate_deviations_from_metatensor():
    # nested lists are accepted (metatensor wants an array)
    _same_labels(Labels(["a"], [[1], [2]]), metatensor.Labels(["a"], np.array([[1], [2]])))
    assert len(Labels(["a"], [])) == 0
    # values outside int32 raise instead of wrapping around
    with pytest.raises(ValueError, match="int32"):
        Labels(["a"], np.array([[2**40]]))
    with pytest.raises(ValueError, match="int32"):
        Labels(["a"], np.array([[2**32 - 1]], np.uint32))
    # static labels are hashable and compare unequal to other objects
    labels = Labels(["a"], np.array([[1]]))
    assert hash(labels) == hash(Labels("a", np.array([[1]])))
    assert labels != 1 and not labels == "a"


def test_constructors_match_metatensor():
    for ours, theirs in [
        (Labels.single(), metatensor.Labels.single()),
        (Labels.empty("a"), metatensor.Labels.empty("a")),
        (Labels.empty(["a", "b"]), metatensor.Labels.empty(["a", "b"])),
        (Labels.empty([]), metatensor.Labels.empty([])),
        (Labels.range("n", 5), metatensor.Labels.range("n", 5)),
        (Labels.range("n", 0), metatensor.Labels.range("n", 0)),
    ]:
        _same_labels(ours, theirs)
    assert Labels.range("n", 300).position([299]) == 299


def test_values_are_read_only_int32():
    values = np.array([[0, 1], [1, 0]])
    labels = Labels(["a", "b"], values)
    assert labels.values.dtype == np.int32 and not labels.values.flags.writeable
    with pytest.raises(ValueError):
        labels.values[0, 0] = 5


# --------------------------------------------------------------------------- access
def _access_pair():
    return _pair(["x", "y"], [[0, 1], [2, 3], [4, 5]])


@pytest.mark.parametrize(
    "index", [1, np.int64(1), np.int32(2), -1, 5, -4, "y", "z", 1.0, None, ("x", "y")]
)
def test_getitem_matches_metatensor(index):
    ours, theirs = _access_pair()

    def convert(result):
        return result.values if isinstance(result, LabelsEntry) else result

    def convert_theirs(result):
        return np.asarray(result.values) if isinstance(result, metatensor.LabelsEntry) else result

    _compare(lambda: convert(ours[index]), lambda: convert_theirs(theirs[index]))


@pytest.mark.parametrize("dimension", ["x", "z", 0])
def test_column_matches_metatensor(dimension):
    ours, theirs = _access_pair()
    _compare(lambda: ours.column(dimension), lambda: theirs.column(dimension))


def test_iteration_and_entry_match_metatensor():
    ours, theirs = _access_pair()
    assert [repr(e) for e in ours] == [repr(e) for e in theirs]
    assert repr(ours.entry(-1)) == repr(theirs.entry(-1))
    assert len(ours) == len(theirs)


@pytest.mark.parametrize(
    "entry",
    [
        [2, 3],
        (2, 3),
        np.array([2, 3]),
        np.array([2, 3], np.int64),
        [9, 9],
        [2**40, 3],
        [2],
        [2, 3, 4],
        [2.0, 3.0],
        np.array([2.0, 3.0]),
        2,
        np.array([[2, 3]]),
        "entry",
    ],
)
def test_position_matches_metatensor(entry):
    ours, theirs = _access_pair()
    if isinstance(entry, str):  # entries of Labels (also of other names: only values count)
        for other, their_other in (_access_pair(), _pair(["p", "q"], [[2, 3]])):
            assert ours.position(other[0]) == theirs.position(their_other[0])
        return
    _compare(lambda: ours.position(entry), lambda: theirs.position(entry))
    _compare(lambda: entry in ours, lambda: entry in theirs)


def test_position_on_large_labels():
    rng = np.random.default_rng(3)
    values = np.unique(rng.integers(-50, 50, size=(3000, 3)), axis=0)
    ours, theirs = _pair(["a", "b", "c"], values)
    for row in values[rng.permutation(len(values))[:50]]:
        assert ours.position(row) == theirs.position(row)
        assert ours.position(tuple(int(v) for v in row)) == theirs.position(row)
    for missing in ([100, 0, 0], [0, -51, 0], [INT32.max, INT32.min, 0]):
        assert ours.position(missing) is None and theirs.position(missing) is None


# --------------------------------------------------------------------------- LabelsEntry
def test_labels_entry_matches_metatensor():
    ours, theirs = _pair(["system", "atom", "center_type"], [[0, 1, 8], [0, 2, 1]])
    entry, their_entry = ours[1], theirs[1]
    assert entry.names == their_entry.names
    np.testing.assert_array_equal(entry.values, their_entry.values)
    assert entry.values.dtype == np.int32
    assert entry.print() == their_entry.print() == "(system=0, atom=2, center_type=1)"
    assert repr(entry) == repr(their_entry) and str(entry) == str(their_entry)
    assert entry.device == their_entry.device == "cpu"
    assert len(entry) == len(their_entry)
    assert list(entry) == [int(v) for v in their_entry.values]
    for dimension in (0, -1, "atom", "center_type", "nope", 5, 1.5):
        _compare(lambda d=dimension: entry[d], lambda d=dimension: int(their_entry[d]))
    assert (entry == ours[1]) and (their_entry == theirs[1])
    assert (entry != ours[0]) and (their_entry != theirs[0])
    # entries of other names differ, even with the same values
    other = Labels(["a", "b", "c"], np.array([[0, 2, 1]]))[0]
    assert entry != other
    # extensions: comparison with plain sequences, hashing
    assert entry == (0, 2, 1) and entry == [0, 2, 1] and entry != (0, 2, 2)
    assert hash(entry) == hash(Labels(ours.names, ours.values[1:])[0])


# --------------------------------------------------------------------------- printing
PRINTED = {
    "tutorial": (["sample", "system", "atom"], [[0, 0, 4], [0, 0, 5], [1, 0, 4]]),
    "long": (["o3_mu"], [[i] for i in range(-3, 4)]),
    "wide values": (["a", "bb"], [[123456789, -5], [-1, 0], [3, 7], [4, 42], [5, 1]]),
    "empty": (["a", "b"], np.zeros((0, 2))),
    "no names": ([], np.zeros((2, 0))),
    "one entry": (["x"], [[3]]),
}


@pytest.mark.parametrize("case", list(PRINTED))
def test_printing_matches_metatensor(case):
    ours, theirs = _pair(*PRINTED[case])
    assert str(ours) == str(theirs)
    assert repr(ours) == repr(theirs)
    for max_entries in (-1, -5, 0, 1, 2, 3, 4, 6, 20):
        for indent in (0, 2, 5):
            assert ours.print(max_entries, indent) == theirs.print(max_entries, indent)


def test_printing_long_labels_truncates_like_metatensor():
    ours, theirs = _pair(["system", "atom"], np.arange(2000).reshape(-1, 2))
    assert str(ours) == str(theirs)
    assert [line.strip() for line in str(ours).splitlines()][4] == "..."
    assert ours.print(7, 1) == theirs.print(7, 1)


def test_printing_dynamic_labels():
    labels = Labels(["a", "b"], jnp.array([[0, 1], [2, 3]], dtype=jnp.int32))
    assert str(labels) == str(metatensor.Labels(["a", "b"], np.array([[0, 1], [2, 3]])))

    @jax.jit
    def printed(values):
        text.append(Labels(["a", "b"], values).print())
        return values

    text = []
    printed(jnp.zeros((3, 2), dtype=jnp.int32))
    assert text[0].splitlines() == [" a  b", "<3 dynamic entries, traced>"]


# --------------------------------------------------------------------------- dimension edits
def _edit_pair():
    return _pair(["x", "y"], [[0, 0], [1, 2], [3, 4]])


INSERTS = {
    "middle": (1, "n", np.array([7, 8, 9])),
    "first": (0, "n", np.array([7, 8, 9])),
    "last": (2, "n", np.array([7, 8, 9])),
    "negative index": (-1, "n", np.array([7, 8, 9])),
    "most negative index": (-2, "n", np.array([7, 8, 9])),
    "index out of range": (3, "n", np.array([7, 8, 9])),
    "negative index out of range": (-3, "n", np.array([7, 8, 9])),
    "float index": (1.0, "n", np.array([7, 8, 9])),
    "2-D values": (1, "n", np.array([[7], [8], [9]])),
    "wrong length": (1, "n", np.array([7, 8])),
    "existing name": (1, "x", np.array([7, 8, 9])),
    "invalid name": (1, "1n", np.array([7, 8, 9])),
    "name an int": (1, 5, np.array([7, 8, 9])),
    "int64 values": (1, "n", np.array([7, 8, 9], dtype=np.int64)),
}


@pytest.mark.parametrize("case", list(INSERTS))
def test_insert_matches_metatensor(case):
    ours, theirs = _edit_pair()
    index, name, values = INSERTS[case]
    _compare(lambda: ours.insert(index, name, values), lambda: theirs.insert(index, name, values))


def test_insert_extensions_and_checks():
    ours, theirs = _edit_pair()
    # an int for every entry, a list, a jax.Array (dynamic result): eqx_tensor extensions
    expected = theirs.insert(1, "n", np.array([7, 7, 7]))
    _same_labels(ours.insert(1, "n", 7), expected)
    _same_labels(ours.insert(1, "n", [7, 7, 7]), expected)
    dynamic = ours.insert(1, "n", jnp.array([7, 7, 7], dtype=jnp.int32))
    assert dynamic.is_dynamic
    _same_labels(dynamic.to_static(), expected)
    # append goes after the last dimension (metatensor's append uses the number of entries)
    _same_labels(ours.append("n", np.array([7, 8, 9])), theirs.insert(2, "n", np.array([7, 8, 9])))
    # metatensor truncates floats; we refuse them
    with pytest.raises(TypeError, match=r"Labels.insert: `values` of 'n' must be integers"):
        ours.insert(1, "n", np.array([7.5, 8, 9]))
    with pytest.raises(ValueError, match=r"Labels.insert: .*'n' must be a 1-D array of shape"):
        ours.insert(1, "n", np.array([7, 8]))
    with pytest.raises(IndexError, match=r"Labels.insert: index 3 is out of range"):
        ours.insert(3, "n", 0)
    # inserting into labels without names checks that the new entries are unique
    with pytest.raises(ValueError, match="unique entries"):
        Labels([], np.zeros((2, 0), np.int32)).insert(0, "a", np.array([1, 1]))


@pytest.mark.parametrize("name", ["x", "y", "z", 0])
def test_remove_matches_metatensor(name):
    ours, theirs = _edit_pair()
    _compare(lambda: ours.remove(name), lambda: theirs.remove(name))
    ours, theirs = _pair(["x", "y"], [[0, 1], [0, 2]])
    _compare(lambda: ours.remove(name), lambda: theirs.remove(name))
    ours, theirs = _pair(["x"], [[0], [1]])
    _compare(lambda: ours.remove(name), lambda: theirs.remove(name))


@pytest.mark.parametrize(
    ("old", "new"), [("x", "w"), ("x", "y"), ("x", "x"), ("z", "w"), ("x", "1w"), ("x", 5)]
)
def test_rename_matches_metatensor(old, new):
    ours, theirs = _edit_pair()
    _compare(lambda: ours.rename(old, new), lambda: theirs.rename(old, new))


def test_rename_keeps_lookups():
    labels = Labels(["x", "y"], np.arange(600).reshape(-1, 2))
    renamed = labels.rename("x", "w")
    assert renamed.names == ["w", "y"] and labels.names == ["x", "y"]
    assert renamed.position([10, 11]) == 5
    assert renamed.positions(Labels(["w", "y"], np.array([[2, 3], [0, 0]]))).tolist() == [1, -1]


@pytest.mark.parametrize(
    "order", [[1, 0], (1, 0), np.array([1, 0]), [0, 0], [0], [0, 2], [-1, 0], [1.0, 0]]
)
def test_permute_matches_metatensor(order):
    ours, theirs = _edit_pair()
    _compare(lambda: ours.permute(order), lambda: theirs.permute(order))


# --------------------------------------------------------------------------- set operations
SET_OPERATIONS = ("union_and_mapping", "intersection_and_mapping", "difference_and_mapping")


def _compare_set_operations(a: Labels, b: Labels, ta, tb) -> None:
    for method in SET_OPERATIONS:
        result = getattr(a, method)(b)
        reference = getattr(ta, method)(tb)
        _same_labels(result[0], reference[0])
        assert len(result) == len(reference)
        for mapping, their_mapping in zip(result[1:], reference[1:]):
            assert mapping.dtype == np.int64
            np.testing.assert_array_equal(mapping, their_mapping)
    _same_labels(a.union(b), ta.union(tb))
    _same_labels(a.intersection(b), ta.intersection(tb))
    _same_labels(a.difference(b), ta.difference(tb))


def _unique_rows(rng, draw, n: int) -> np.ndarray:
    """Up to ``n`` distinct rows drawn by ``draw(size)``, in random order."""
    rows = np.unique(draw(3 * n + 8), axis=0)
    return rows[rng.permutation(len(rows))[:n]].astype(np.int32)


KINDS = ("dense", "negative", "sparse", "limits", "atomic")


def _draw(rng, kind: str, n_columns: int):
    def draw(size):
        if kind == "dense":
            return rng.integers(0, 8, size=(size, n_columns))
        if kind == "negative":
            return rng.integers(-6, 3, size=(size, n_columns))
        if kind == "sparse":
            return rng.integers(-(10**6), 10**6, size=(size, n_columns))
        if kind == "limits":
            choices = np.array([INT32.min, INT32.min + 1, -1, 0, 1, INT32.max - 1, INT32.max])
            return rng.choice(choices, size=(size, n_columns))
        # atomic: atomic numbers in the last column, few systems / atoms before it
        columns = [rng.integers(0, 40, size=size) for _ in range(n_columns - 1)]
        columns.append(rng.choice([1, 6, 7, 8, 16, 35], size=size))
        return np.stack(columns, axis=1)

    return draw


def _random_case(seed: int, kind: str, n_columns: int, n1: int, n2: int, overlap: float):
    rng = np.random.default_rng(seed)
    draw = _draw(rng, kind, n_columns)
    first = _unique_rows(rng, draw, n1)
    shared = first[rng.permutation(len(first))[: int(overlap * min(len(first), n2))]]
    second = np.concatenate([shared, _unique_rows(rng, draw, n2)])
    second = np.unique(second, axis=0)
    second = second[rng.permutation(len(second))[:n2]].reshape(-1, n_columns)
    names = [f"d{i}" for i in range(n_columns)]
    return names, first.reshape(-1, n_columns), second


RANDOM_CASES = [
    # (kind, n_columns, n1, n2, overlap): small (dict) and large (vectorised) sides
    ("dense", 1, 5, 7, 0.5),
    ("dense", 2, 40, 60, 0.5),
    ("dense", 3, 400, 300, 0.7),
    ("dense", 2, 0, 30, 0.0),
    ("dense", 3, 300, 0, 0.0),
    ("negative", 2, 30, 400, 0.5),
    ("negative", 4, 1000, 900, 0.3),
    ("sparse", 3, 500, 600, 0.5),
    ("sparse", 1, 600, 20, 1.0),
    ("limits", 2, 30, 40, 0.5),
    ("limits", 4, 400, 500, 0.5),
    ("limits", 6, 700, 700, 0.9),
    ("atomic", 3, 900, 800, 0.5),
    ("atomic", 2, 200, 50, 1.0),
    ("sparse", 8, 300, 300, 0.5),
]


@pytest.mark.parametrize("case", range(len(RANDOM_CASES)))
def test_set_operations_match_metatensor_on_random_labels(case):
    kind, n_columns, n1, n2, overlap = RANDOM_CASES[case]
    names, first, second = _random_case(case, kind, n_columns, n1, n2, overlap)
    a, ta = _pair(names, first)
    b, tb = _pair(names, second)
    _compare_set_operations(a, b, ta, tb)
    _compare_set_operations(b, a, tb, ta)
    _compare_set_operations(a, a, ta, ta)
    # fresh labels whose lookup structures are built on first use, not at construction
    a2 = Labels(names, first, assume_unique=True)
    b2 = Labels(names, second, assume_unique=True)
    _compare_set_operations(a2, b2, ta, tb)


@pytest.mark.parametrize("case", range(len(RANDOM_CASES)))
def test_positions_and_select_match_a_reference_on_random_labels(case):
    kind, n_columns, n1, n2, overlap = RANDOM_CASES[case]
    names, first, second = _random_case(case, kind, n_columns, n1, n2, overlap)
    a, ta = _pair(names, first)
    b, tb = _pair(names, second)

    where = {tuple(row): i for i, row in enumerate(first.tolist())}
    expected = [where.get(tuple(row), -1) for row in second.tolist()]
    positions = a.positions(b)
    assert positions.dtype == np.int64
    np.testing.assert_array_equal(positions, expected)
    np.testing.assert_array_equal(Labels(names, first, assume_unique=True).positions(b), expected)
    for row in second[:5]:
        assert a.position(row) == ta.position(row)

    # select with all the names (positions in the selection's order), in another order, and
    # with a subset of them (positions in the order of the labels)
    np.testing.assert_array_equal(a.select(b), ta.select(tb))
    reverse = names[::-1]
    np.testing.assert_array_equal(
        a.select(Labels(reverse, second[:, ::-1])),
        ta.select(metatensor.Labels(reverse, np.ascontiguousarray(second[:, ::-1]))),
    )
    subset = names[-1:] if n_columns == 1 else [names[-1], names[0]]
    columns = [names.index(n) for n in subset]
    selection = np.unique(second[:, columns], axis=0)
    selected = a.select(Labels(subset, selection))
    assert selected.dtype == np.int64
    np.testing.assert_array_equal(selected, ta.select(metatensor.Labels(subset, selection)))
    if subset != names:
        chosen = {tuple(row) for row in selection.tolist()}
        mine = first[:, columns].tolist()
        np.testing.assert_array_equal(
            selected, [i for i, row in enumerate(mine) if tuple(row) in chosen]
        )


def test_lookup_structures_cover_every_kind_of_key():
    """The random cases above go through each way of packing rows into keys."""
    rng = np.random.default_rng(0)
    grid = np.stack(np.meshgrid(np.arange(30), np.arange(-5, 15), indexing="ij"), axis=-1)
    dense = Labels(["a", "b"], grid.reshape(-1, 2))
    assert dense._index.table is not None
    sparse = Labels(["a", "b"], _unique_rows(rng, _draw(rng, "sparse", 2), 500))
    assert sparse._index.table is None and sparse._index.order is not None
    ordered = Labels(["a", "b"], np.sort(rng.choice(10**7, 500, replace=False)).reshape(-1, 2))
    assert ordered._index.table is None and ordered._index.order is None
    limits = Labels(["a", "b", "c", "d"], _unique_rows(rng, _draw(rng, "limits", 4), 400))
    assert any(step[0] == 2 for step in limits._index.steps)  # compressed leading key
    atomic = Labels(["a", "t"], _unique_rows(rng, _draw(rng, "atomic", 2), 200))
    assert any(step[0] == 1 for step in atomic._index.steps)  # ranked atomic numbers
    for labels in (dense, sparse, ordered, limits, atomic):
        values = labels.values
        shuffled = Labels(labels.names, values[rng.permutation(len(values))])
        np.testing.assert_array_equal(
            labels.positions(shuffled), [labels.position(row) for row in shuffled.values]
        )
        outside = Labels(labels.names, values + 1, assume_unique=True)
        expected = [
            -1 if labels.position(row) is None else labels.position(row) for row in values + 1
        ]
        np.testing.assert_array_equal(labels.positions(outside), expected)


def test_set_operations_on_empty_labels_match_metatensor():
    a, ta = _pair(["x", "y"], [[0, 1], [2, 3], [4, 5], [2, 1]])
    e, te = _pair(["x", "y"], np.zeros((0, 2)))
    _compare_set_operations(a, e, ta, te)
    _compare_set_operations(e, a, te, ta)
    _compare_set_operations(e, e, te, te)
    assert a.positions(e).shape == (0,) and e.positions(a).tolist() == [-1] * 4


@pytest.mark.parametrize("method", ["union", "intersection", "difference"])
def test_set_operations_check_names(method):
    a = Labels(["x", "y"], np.array([[0, 1]]))
    for other in (Labels(["x", "z"], np.array([[0, 1]])), Labels(["y", "x"], np.array([[0, 1]]))):
        with pytest.raises(ValueError, match=rf"Labels.{method} needs Labels with the same names"):
            getattr(a, method)(other)
    with pytest.raises(TypeError, match=rf"Labels.{method} expects Labels, got int"):
        getattr(a, method)(3)


def test_select_special_cases_match_metatensor():
    a, ta = _pair(["x", "y"], [[0, 1], [2, 3], [4, 5], [2, 1]])
    cases = [
        (["x"], np.array([[2], [0]])),
        (["x"], np.zeros((0, 1))),
        ([], np.zeros((1, 0))),
        ([], np.zeros((0, 0))),
        (["x", "y"], np.array([[2, 1], [0, 1], [9, 9]])),
        (["y", "x"], np.array([[1, 2], [1, 0], [9, 9]])),
        (["w"], np.array([[2]])),
        (["x", "y", "w"], np.array([[2, 1, 0]])),
    ]
    for names, values in cases:
        _compare(
            lambda names=names, values=values: a.select(Labels(names, values)),
            lambda names=names, values=values: ta.select(metatensor.Labels(names, values)),
        )
    # repeated selection entries (assume_unique misused) repeat the positions, as metatensor
    repeated = np.array([[2, 1], [2, 1]])
    np.testing.assert_array_equal(
        a.select(Labels(["x", "y"], repeated, assume_unique=True)),
        ta.select(metatensor.Labels(["x", "y"], repeated, assume_unique=True)),
    )
    with pytest.raises(TypeError, match=r"Labels.select: selection must be Labels"):
        a.select(3)
    with pytest.raises(ValueError, match=r"Labels.select: 'w' is not a dimension"):
        a.select(Labels(["w"], np.array([[2]])))


def test_union_with_repeated_entries_on_the_other_side():
    """Labels built with ``assume_unique=True`` may repeat entries: the union keeps the first
    occurrence, as metatensor-core does, for small and large labels."""
    for n in (3, 3 * _SMALL):
        first = np.arange(n).reshape(-1, 1) * 2
        second = np.concatenate([np.arange(n), np.arange(n)]).reshape(-1, 1)
        a, ta = _pair(["x"], first)
        b = Labels(["x"], second, assume_unique=True)
        tb = metatensor.Labels(["x"], second.astype(np.int32), assume_unique=True)
        _compare_set_operations(a, b, ta, tb)


# --------------------------------------------------------------------------- dynamic labels
def test_dynamic_labels_say_what_to_write_instead():
    dynamic = Labels(["system", "atom"], jnp.array([[0, 1], [0, 2]], dtype=jnp.int32))
    static = Labels(["system", "atom"], np.array([[0, 1]]))
    operations = {
        "Labels.position": lambda: dynamic.position([0, 1]),
        "Labels.positions": lambda: dynamic.positions(static),
        "Labels.select": lambda: dynamic.select(Labels(["system"], np.array([[0]]))),
        "Labels.union": lambda: static.union(dynamic),
        "Labels.intersection": lambda: dynamic.intersection(static),
        "Labels.difference": lambda: dynamic.difference(static),
        "Labels.entry": lambda: dynamic[0],
        "iterating over Labels": lambda: list(dynamic),
    }
    for operation, call in operations.items():
        with pytest.raises(ValueError) as error:
            call()
        message = str(error.value)
        assert message.startswith(f"{operation} needs the values of the labels")
        assert "['system', 'atom']" in message and "jax.Array" in message
        assert "np.asarray(values)" in message and "to_static()" in message
    # what the message advises works
    assert dynamic.to_static().positions(static).tolist() == [0]
    values = np.asarray(dynamic.values)
    assert Labels(dynamic.names, values).positions(static).tolist() == [0]


def test_traced_labels_say_they_are_traced():
    static = Labels(["a"], np.array([[0]]))

    @jax.jit
    def lookup(values):
        Labels(["a"], values).positions(static)
        return values

    with pytest.raises(ValueError, match=r"Labels.positions needs .* a traced jax.Array"):
        lookup(jnp.zeros((2, 1), dtype=jnp.int32))

    @jax.jit
    def to_static(values):
        Labels(["a"], values).to_static()
        return values

    with pytest.raises(ValueError, match=r"Labels.to_static: .* traced jax.Array"):
        to_static(jnp.zeros((2, 1), dtype=jnp.int32))


def test_dynamic_labels_construction_errors():
    with pytest.raises(TypeError, match=r"Labels: Labels values must be integers, got a jax"):
        Labels(["a"], jnp.zeros((2, 1)))
    with pytest.raises(ValueError, match=r"Labels: values must have shape \(n, 2\)"):
        Labels(["a", "b"], jnp.zeros((2, 1), dtype=jnp.int32))
    empty = Labels(["a", "b"], jnp.zeros((0,), dtype=jnp.int32))
    assert empty.values.shape == (0, 2) and len(empty) == 0


def test_positions_of_rows_at_the_int32_limits_and_of_repeated_entries():
    """What ``operations.reduce_over_samples`` asks of ``positions``: the row positions, and the
    first occurrence of entries repeated under ``assume_unique=True``."""
    values = np.array([[1, 2], [3, -4], [INT32.max, INT32.min]])
    labels = Labels(["a", "b"], values)
    query = Labels(["a", "b"], np.array([[INT32.max, INT32.min], [1, 2], [3, -4], [5, 5]]))
    assert labels.positions(query).tolist() == [2, 0, 1, -1]
    repeated = Labels(["a"], np.array([[1], [1], [2]]), assume_unique=True)
    assert repeated.positions(Labels(["a"], np.array([[1], [2]]))).tolist() == [0, 2]
