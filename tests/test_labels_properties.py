"""Property-based tests (hypothesis) against metatensor: Labels set operations,
``keys_to_samples``, ``join``, ``slice`` / ``split``."""

from __future__ import annotations

import metatensor
import numpy as np
import pytest
from helpers import assert_labels_equal, assert_tensor_equal, from_metatensor
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import eqx_tensor as eqt
from eqx_tensor import Labels

# metadata, and values that only move (slice, split, join, sort: no arithmetic): the same in
# both precisions, so the float32 run skips this module
pytestmark = pytest.mark.x64_only

# the tensor examples run JAX operations eagerly (a compilation per new shape): few examples
TENSOR_SETTINGS = settings(
    max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


# --------------------------------------------------------------------------- strategies
@st.composite
def label_pairs(draw):
    """Two sets of label entries with the same names (overlapping on purpose)."""
    n_names = draw(st.integers(1, 3))
    names = ["a", "b", "c"][:n_names]
    entry = st.tuples(*[st.integers(-2, 2)] * n_names)
    first = draw(st.lists(entry, unique=True, max_size=10))
    second = draw(
        st.lists(
            st.one_of(st.sampled_from(first or [(0,) * n_names]), entry), unique=True, max_size=10
        )
    )
    return names, first, second


def _values(rows, n_names):
    return np.array(rows, dtype=np.int32).reshape(-1, n_names)


@st.composite
def random_tensors(draw, gradients=True):
    """A metatensor TensorMap with keys (a, b), samples (system, atom), properties (n,),
    optional components, shuffled rows and sparse ``positions`` gradients."""
    seed = draw(st.integers(0, 2**16))
    rng = np.random.default_rng(seed)
    key_rows = draw(
        st.lists(
            st.tuples(st.integers(0, 2), st.integers(0, 2)), unique=True, min_size=1, max_size=4
        )
    )
    with_components = draw(st.booleans())
    n_properties = draw(st.integers(1, 3))
    properties = metatensor.Labels(["n"], np.arange(n_properties, dtype=np.int32)[:, None])
    components = []
    if with_components:
        components = [metatensor.Labels(["o3_mu"], np.arange(-1, 2, dtype=np.int32)[:, None])]
    blocks = []
    for _ in key_rows:
        pairs = np.array([(s, a) for s in range(3) for a in range(3)], dtype=np.int32)
        samples = pairs[rng.permutation(len(pairs))[: int(rng.integers(0, len(pairs) + 1))]]
        shape = (len(samples), *[len(c) for c in components], n_properties)
        block = metatensor.TensorBlock(
            rng.normal(size=shape),
            metatensor.Labels(["system", "atom"], samples.reshape(-1, 2)),
            components,
            properties,
        )
        if gradients:
            rows = np.array(
                [
                    (i, s, a)
                    for i, (s, _) in enumerate(samples)
                    for a in range(3)
                    if rng.random() < 0.4
                ],
                dtype=np.int32,
            ).reshape(-1, 3)
            xyz = metatensor.Labels(["xyz"], np.arange(3, dtype=np.int32)[:, None])
            block.add_gradient(
                "positions",
                metatensor.TensorBlock(
                    rng.normal(size=(len(rows), 3, *shape[1:])),
                    metatensor.Labels(["sample", "system", "atom"], rows),
                    [xyz, *components],
                    properties,
                ),
            )
        blocks.append(block)
    keys = metatensor.Labels(["a", "b"], np.array(key_rows, dtype=np.int32))
    return metatensor.TensorMap(keys, blocks)


# --------------------------------------------------------------------------- Labels
@settings(max_examples=150, deadline=None)
@given(label_pairs())
def test_labels_set_operations_match_metatensor(pair):
    names, first, second = pair
    a, b = Labels(names, _values(first, len(names))), Labels(names, _values(second, len(names)))
    ta = metatensor.Labels(names, _values(first, len(names)))
    tb = metatensor.Labels(names, _values(second, len(names)))

    union, m1, m2 = a.union_and_mapping(b)
    their_union, t1, t2 = ta.union_and_mapping(tb)
    assert_labels_equal(union, their_union)
    np.testing.assert_array_equal(m1, t1)
    np.testing.assert_array_equal(m2, t2)
    assert_labels_equal(a.union(b), ta.union(tb))

    # same entries as metatensor's intersection, and mappings consistent with them (the
    # order is checked by test_labels_intersection_order_matches_metatensor)
    inter, m1, m2 = a.intersection_and_mapping(b)
    their_inter = ta.intersection(tb)
    assert sorted(map(tuple, np.asarray(inter.values))) == sorted(
        map(tuple, np.asarray(their_inter.values))
    )
    for labels, mapping in ((a, m1), (b, m2)):
        for row, position in zip(np.asarray(labels.values), mapping):
            expected = inter.position(row)
            assert position == (-1 if expected is None else expected)

    diff, m1 = a.difference_and_mapping(b)
    their_diff, t1 = ta.difference_and_mapping(tb)
    assert_labels_equal(diff, their_diff)
    np.testing.assert_array_equal(m1, t1)
    assert_labels_equal(a.difference(b), ta.difference(tb))

    # set identities
    assert len(union) == len(a) + len(b) - len(inter)
    assert len(diff) == len(a) - len(inter)


@settings(max_examples=100, deadline=None)
@given(label_pairs())
def test_labels_intersection_order_matches_metatensor(pair):
    names, first, second = pair
    a, b = Labels(names, _values(first, len(names))), Labels(names, _values(second, len(names)))
    ta = metatensor.Labels(names, _values(first, len(names)))
    tb = metatensor.Labels(names, _values(second, len(names)))
    inter, m1, m2 = a.intersection_and_mapping(b)
    their_inter, t1, t2 = ta.intersection_and_mapping(tb)
    assert_labels_equal(inter, their_inter)
    np.testing.assert_array_equal(m1, t1)
    np.testing.assert_array_equal(m2, t2)


@settings(max_examples=50, deadline=None)
@given(label_pairs())
def test_labels_select_with_all_names_matches_metatensor(pair):
    names, first, second = pair
    a = Labels(names, _values(first, len(names)))
    ta = metatensor.Labels(names, _values(first, len(names)))
    selection = _values(second, len(names))
    np.testing.assert_array_equal(
        a.select(Labels(names, selection)), ta.select(metatensor.Labels(names, selection))
    )


@settings(max_examples=100, deadline=None)
@given(label_pairs())
def test_select_as_metatensor_orders_it(pair):
    names, first, second = pair
    a = Labels(names, _values(first, len(names)))
    ta = metatensor.Labels(names, _values(first, len(names)))
    rows = _values(second, len(names))
    for order in (names, names[::-1]):
        selected = np.ascontiguousarray(rows[:, [names.index(n) for n in order]])
        np.testing.assert_array_equal(
            a.select(Labels(order, selected)), ta.select(metatensor.Labels(order, selected))
        )


@settings(max_examples=100, deadline=None)
@given(label_pairs())
def test_labels_select_and_positions_match_metatensor(pair):
    names, first, second = pair
    a = Labels(names, _values(first, len(names)))
    ta = metatensor.Labels(names, _values(first, len(names)))
    if len(names) > 1:
        # select on the last dimension only (with all names, see the test above)
        selection = np.unique(_values(second, len(names))[:, -1:], axis=0)
        np.testing.assert_array_equal(
            a.select(Labels(names[-1:], selection)),
            ta.select(metatensor.Labels(names[-1:], selection.astype(np.int32))),
        )
    b = Labels(names, _values(second, len(names)))
    positions = a.positions(b)
    for row, position in zip(_values(second, len(names)), positions):
        expected = ta.position(row)
        assert (expected is None and position == -1) or position == expected


# --------------------------------------------------------------------------- keys_to_samples
@TENSOR_SETTINGS
@given(random_tensors(), st.sampled_from([["b"], ["a"], ["a", "b"]]), st.booleans())
def test_keys_to_samples_matches_metatensor(theirs, moved, sort_samples):
    ours = from_metatensor(theirs)
    result = ours.keys_to_samples(moved, sort_samples=sort_samples)
    reference = theirs.keys_to_samples(moved, sort_samples=sort_samples)
    assert_tensor_equal(result, reference)


# --------------------------------------------------------------------------- join
@TENSOR_SETTINGS
@given(random_tensors(), st.sampled_from(["samples", "properties"]))
def test_join_matches_metatensor(theirs, axis):
    doubled = metatensor.multiply(theirs, 2.0)
    ours = [from_metatensor(theirs), from_metatensor(doubled)]
    result = eqt.join(ours, axis, add_dimension="tensor")
    reference = metatensor.join([theirs, doubled], axis, add_dimension="tensor")
    assert_tensor_equal(result, reference)


@TENSOR_SETTINGS
@given(random_tensors(), st.integers(0, 2**16))
def test_split_then_join_samples_restores_the_tensor(theirs, seed):
    """Splitting the systems into two groups and joining back gives the same tensor once
    samples are sorted; and split / slice match metatensor on the way."""
    ours = from_metatensor(theirs)
    rng = np.random.default_rng(seed)
    systems = rng.permutation(3)
    cut = int(rng.integers(0, 4))
    groups = [systems[:cut], systems[cut:]]
    selections = [Labels(["system"], g.reshape(-1, 1)) for g in groups]
    their_selections = [
        metatensor.Labels(["system"], g.reshape(-1, 1).astype(np.int32)) for g in groups
    ]
    parts = eqt.split(ours, "samples", selections)
    their_parts = metatensor.split(theirs, "samples", their_selections)
    for part, their_part in zip(parts, their_parts):
        assert_tensor_equal(part, their_part)
    for selection, their_selection in zip(selections, their_selections):
        assert_tensor_equal(
            eqt.slice(ours, "samples", selection),
            metatensor.slice(theirs, "samples", their_selection),
        )
    # (metatensor.sort fails on empty gradient blocks, so compare with our own sort)
    joined = eqt.sort(eqt.join(parts, "samples"), "samples")
    expected = eqt.sort(ours, "samples")
    assert joined.keys == expected.keys
    for block, reference in zip(joined, expected):
        assert block.samples == reference.samples
        np.testing.assert_array_equal(block.values, reference.values)
        gradient, ref_gradient = block.gradient("positions"), reference.gradient("positions")
        assert gradient.samples == ref_gradient.samples
        np.testing.assert_array_equal(gradient.values, ref_gradient.values)


@TENSOR_SETTINGS
@given(random_tensors(gradients=True), st.lists(st.integers(0, 2), unique=True))
def test_slice_properties_by_positions_matches_metatensor(theirs, positions):
    ours = from_metatensor(theirs)
    n_properties = len(theirs.block(0).properties)
    positions = [p for p in positions if p < n_properties]
    for block, their_block in zip(ours, theirs.blocks()):
        result = eqt.slice_block(block, "properties", positions)
        reference = metatensor.slice_block(
            their_block, "properties", np.array(positions, dtype=np.int64)
        )
        assert_labels_equal(result.properties, reference.properties)
        np.testing.assert_allclose(result.values, reference.values, atol=1e-14)
        for parameter in reference.gradients_list():
            np.testing.assert_allclose(
                result.gradient(parameter).values, reference.gradient(parameter).values
            )
