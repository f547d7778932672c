"""Reductions over samples and properties, cross-checked with metatensor-operations.

Where metatensor is wrong (mean/var/std over samples with sparse gradient rows; mean/var/std
over properties on blocks with components) the explicit gradients are checked against
``jax.jvp`` of the same operation and against a hand computation instead.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import metatensor
import numpy as np
import pytest
from conftest import data_path
from helpers import (
    assert_block_equal,
    assert_close,
    assert_labels_equal,
    assert_tensor_equal,
    block_from_metatensor,
    from_metatensor,
)

import eqx_tensor as eqt
from eqx_tensor import Labels, TensorBlock, TensorMap

FILES = [
    "qm7-power-spectrum.mts",
    "qm7-spherical-expansion.mts",
    "spherical-expansion.mts",
    "radial-spectrum.mts",
    "core-data.mts",
]
# the largest files are cut to a few blocks in the default (fast) runs (compilation time grows
# with the number of blocks); the whole files are checked by the tests marked slow. For the
# power spectrum: blocks where metatensor's mean/var/std gradients are wrong (0, 7, 9) and
# right (2, 14), large and small.
SUBSETS = {
    "qm7-spherical-expansion.mts": [0, 9, 17, 26, 38],
    "core-data.mts": [0, 5, 13, 26],
    "qm7-power-spectrum.mts": [0, 2, 7, 9, 14],
}
REDUCTIONS = ["sum", "mean", "var", "std"]
# The shared files have groups of symmetry-equivalent atoms whose values differ by about
# float32's rounding (std / |x| ~ 1e-7): there float32 var/std have no significant digits
# left (and std's gradients divide by std), so these run in float64 only; float32 var/std
# are checked on random tensors (test_sample_reductions_on_random_tensors, _in_float32).
REDUCTIONS_ON_FILES = [
    "sum",
    "mean",
    pytest.param("var", marks=pytest.mark.x64_only),
    pytest.param("std", marks=pytest.mark.x64_only),
]
SAMPLE_NAMES = [["atom"], ["system"], ["system", "atom"]]


# --------------------------------------------------------------------------- data
_CACHE: dict = {}


def load(name: str, full: bool = False):
    """(metatensor TensorMap, our TensorMap) for a shared data file, loaded once."""
    key = (name, full or name not in SUBSETS)
    if key not in _CACHE:
        theirs = metatensor.load(str(data_path(name)))
        if not key[1]:
            keys = metatensor.Labels(theirs.keys.names, theirs.keys.values[SUBSETS[name]])
            theirs = metatensor.filter_blocks(theirs, keys)
        _CACHE[key] = (theirs, from_metatensor(theirs))
    return _CACHE[key]


def jit_apply(function, tensor, *args, **kwargs):
    """``function(tensor, *args)`` under ``jax.jit`` (metadata static, arrays traced)."""
    return jax.jit(lambda t: function(t, *args, **kwargs))(tensor)


def random_mts_tensor(
    seed: int,
    n_blocks: int = 3,
    components: bool = True,
    gradients: bool = True,
    n_systems: int = 3,
) -> metatensor.TensorMap:
    """A random metatensor TensorMap: shuffled unique samples (system, atom), optional
    o3_mu components, properties (n, l), sparse ``positions`` and dense ``strain``
    gradients."""
    rng = np.random.default_rng(seed)
    blocks = []
    for k in range(n_blocks):
        pairs = [(s, a) for s in range(n_systems) for a in range(int(rng.integers(1, 5)))]
        n_samples = int(rng.integers(1, len(pairs) + 1))
        chosen = rng.choice(len(pairs), size=n_samples, replace=False)
        samples = np.array([pairs[i] for i in chosen], dtype=np.int32)
        comps = []
        if components:
            comps = [metatensor.Labels(["o3_mu"], np.arange(-k, k + 1, dtype=np.int32)[:, None])]
        props = np.array([(n, l) for n in range(3) for l in range(2)], dtype=np.int32)
        props = props[rng.permutation(len(props))[: int(rng.integers(2, len(props) + 1))]]
        shape = (n_samples, *[len(c) for c in comps], len(props))
        block = metatensor.TensorBlock(
            rng.normal(size=shape),
            metatensor.Labels(["system", "atom"], samples),
            comps,
            metatensor.Labels(["n", "l"], props),
        )
        if gradients:
            rows = []
            for i, (system, _) in enumerate(samples):
                for atom in range(4):
                    if rng.random() < 0.5:
                        rows.append((i, system, atom))
            rows = np.array(rows, dtype=np.int32).reshape(-1, 3)
            rows = rows[rng.permutation(len(rows))]
            xyz = metatensor.Labels(["xyz"], np.arange(3, dtype=np.int32)[:, None])
            block.add_gradient(
                "positions",
                metatensor.TensorBlock(
                    rng.normal(size=(len(rows), 3, *shape[1:])),
                    metatensor.Labels(["sample", "system", "atom"], rows),
                    [xyz, *comps],
                    block.properties,
                ),
            )
            strain_rows = np.arange(n_samples, dtype=np.int32)[:, None]
            block.add_gradient(
                "strain",
                metatensor.TensorBlock(
                    rng.normal(size=(n_samples, 3, 3, *shape[1:])),
                    metatensor.Labels(["sample"], strain_rows),
                    [
                        metatensor.Labels(["xyz_1"], np.arange(3, dtype=np.int32)[:, None]),
                        metatensor.Labels(["xyz_2"], np.arange(3, dtype=np.int32)[:, None]),
                        *comps,
                    ],
                    block.properties,
                ),
            )
        blocks.append(block)
    keys = metatensor.Labels(["key"], np.arange(n_blocks, dtype=np.int32)[:, None])
    return metatensor.TensorMap(keys, blocks)


# --------------------------------------------------------------------------- gradient checks
def _group_ids(samples: np.ndarray, names: list[str], reduced: list[str]) -> np.ndarray:
    columns = [i for i, n in enumerate(names) if n not in reduced]
    if not columns:
        return np.zeros(len(samples), dtype=np.int64)
    return np.unique(samples[:, columns], axis=0, return_inverse=True)[1].reshape(-1)


def metatensor_gradients_are_right(block, reduced: list[str]) -> bool:
    """metatensor's mean/var/std over samples are right iff every output gradient row
    merges one gradient row per sample of its group."""
    samples = np.asarray(block.samples.values)
    ids = _group_ids(samples, list(block.samples.names), reduced)
    sizes = np.bincount(ids)
    for _, gradient in block.gradients():
        rows = np.array(gradient.samples.values)
        if len(rows) == 0:
            continue
        rows[:, 0] = ids[rows[:, 0]]
        unique, counts = np.unique(rows, axis=0, return_counts=True)
        if not np.all(counts == sizes[unique[:, 0]]):
            return False
    return True


def _dense_gradient(gradient: TensorBlock, n_samples: int, entries: np.ndarray) -> np.ndarray:
    """Gradient rows scattered to ``(n_samples, n_entries, *gradient.values.shape[1:])``."""
    rows = np.asarray(gradient.samples.values)
    lookup = {tuple(e): i for i, e in enumerate(entries)}
    dense = np.zeros((n_samples, len(entries), *gradient.values.shape[1:]))
    for r, row in enumerate(rows):
        dense[row[0], lookup[tuple(row[1:])]] += np.asarray(gradient.values[r])
    return dense


def assert_gradients_match_jvp(operation, block: TensorBlock, atol: float = 1e-10) -> None:
    """Explicit gradients of ``operation(block)`` equal the chain rule through ``jax.jvp``.

    ``operation`` maps a block to a block. For every gradient parameter, the input gradient
    is densified over its parameter entries and pushed through ``jax.jvp`` of the values
    function; the result must equal the densified output gradient.
    """
    result = jax.jit(operation)(block)
    values = jnp.asarray(block.values)

    def values_function(v):
        plain = TensorBlock(v, block.samples, block.components, block.properties)
        return operation(plain).values

    n_value_axes = values.ndim - 1
    for parameter, gradient in block.gradients():
        entries = np.unique(np.asarray(gradient.samples.values)[:, 1:], axis=0)
        dense_in = _dense_gradient(gradient, len(block.samples), entries)
        n_extra = dense_in.ndim - 2 - n_value_axes
        # one tangent direction per (entry, extra gradient components)
        direction_shape = dense_in.shape[1 : 2 + n_extra]
        tangents = np.moveaxis(dense_in.reshape(dense_in.shape[0], -1, *values.shape[1:]), 1, 0)
        pushed = jax.jit(jax.vmap(lambda t: jax.jvp(values_function, (values,), (t,))[1]))(
            jnp.asarray(tangents)
        )
        expected = np.moveaxis(np.asarray(pushed), 0, 1)
        expected = expected.reshape(expected.shape[0], *direction_shape, *expected.shape[2:])
        expected = np.nan_to_num(expected, nan=0.0, posinf=0.0, neginf=0.0)
        actual = _dense_gradient(result.gradient(parameter), len(result.samples), entries)
        assert_close(actual, expected, atol=atol, rtol=0, err_msg=parameter)


# --------------------------------------------------------------------------- samples
# the default run: "atom" on the power spectrum (metatensor's sparse-gradient bug) and on the
# spherical expansion (components), every sample-name choice on the spherical expansion; the
# other files and choices in the slow step
_SLOW_CASES = [("radial-spectrum.mts", names) for names in SAMPLE_NAMES] + [
    ("qm7-spherical-expansion.mts", ["atom"]),
    ("core-data.mts", ["atom"]),
    ("qm7-power-spectrum.mts", ["system"]),
]
CASES = [
    ("qm7-power-spectrum.mts", ["atom"]),
    *[("spherical-expansion.mts", names) for names in SAMPLE_NAMES],
    *[pytest.param(case, marks=pytest.mark.slow) for case in _SLOW_CASES],
]


def _case_id(case):
    return f"{case[0]}-{'+'.join(case[1])}"


def check_against_metatensor(reduction: str, file: str, names: list[str], full: bool = False):
    """Our (jitted) reduction against metatensor's: everything equal where metatensor is
    right; values and metadata everywhere."""
    theirs, ours = load(file, full)
    result = jit_apply(getattr(eqt, f"{reduction}_over_samples"), ours, names)
    reference = getattr(metatensor, f"{reduction}_over_samples")(theirs, names)
    assert_labels_equal(result.keys, reference.keys)
    for i, (a, b) in enumerate(zip(result, reference.blocks())):
        if reduction == "sum" or metatensor_gradients_are_right(theirs.block(i), names):
            # the values summed have both signs: float32 rounding scales with the inputs
            assert_block_equal(a, b, atol=1e-12, what=f"block {i}", x32_scale=theirs.block(i))
        else:
            # values and all metadata still agree; only gradient values differ
            assert_labels_equal(a.samples, b.samples)
            scale = np.abs(theirs.block(i).values).max(initial=0.0)
            assert_close(a.values, b.values, atol=1e-12, rtol=0, x32_scale=scale)
            for parameter in b.gradients_list():
                assert_labels_equal(a.gradient(parameter).samples, b.gradient(parameter).samples)


def _rotated_cases() -> list:
    """Every (reduction, case) pair; in the default run each case with two of the reductions,
    rotating, so that each reduction meets half of the cases (the rest in the slow step)."""
    params = []
    for i, case in enumerate(CASES):
        slow_case = hasattr(case, "marks")
        value = case.values[0] if slow_case else case
        for j, reduction in enumerate(REDUCTIONS_ON_FILES):
            marks = list(case.marks) if slow_case else []
            name = reduction
            if hasattr(reduction, "marks"):
                marks += list(reduction.marks)
                name = reduction.values[0]
            if (i + j) % 2:
                marks.append(pytest.mark.slow)
            params.append(pytest.param(name, value, marks=marks, id=f"{name}-{_case_id(value)}"))
    return params


@pytest.mark.parametrize(("reduction", "case"), _rotated_cases())
def test_sample_reductions_match_metatensor(reduction, case):
    check_against_metatensor(reduction, *case)


@pytest.mark.slow
@pytest.mark.parametrize("reduction", REDUCTIONS_ON_FILES)
@pytest.mark.parametrize("file", sorted(SUBSETS))
@pytest.mark.parametrize("names", SAMPLE_NAMES, ids=lambda n: "+".join(n))
def test_sample_reductions_match_metatensor_whole_files(reduction, file, names):
    check_against_metatensor(reduction, file, names, full=True)


def test_metatensor_mean_gradient_bug_is_where_the_issue_says():
    theirs, _ = load("qm7-power-spectrum.mts", full=True)
    wrong = [not metatensor_gradients_are_right(b, ["atom"]) for b in theirs.blocks()]
    assert sum(wrong) == 9 and len(wrong) == 17


def test_mean_over_samples_gradients_are_sum_over_n():
    _, ours = load("qm7-power-spectrum.mts")
    total = jit_apply(eqt.sum_over_samples, ours, "atom")
    mean = jit_apply(eqt.mean_over_samples, ours, "atom")
    for i, (block, reference) in enumerate(zip(mean, total)):
        ids = _group_ids(np.asarray(ours.block(i).samples.values), ["system", "atom"], ["atom"])
        sizes = np.bincount(ids).astype(float)
        assert_close(block.values, reference.values / sizes[:, None], atol=1e-12, rtol=0)
        for parameter, gradient in block.gradients():
            expected = reference.gradient(parameter)
            assert gradient.samples == expected.samples
            n = sizes[np.asarray(gradient.samples.column("sample"))]
            n = n.reshape((-1,) + (1,) * (gradient.values.ndim - 1))
            assert_close(gradient.values, expected.values / n, atol=1e-12, rtol=0)


@pytest.mark.parametrize("reduction", REDUCTIONS_ON_FILES)
@pytest.mark.parametrize(
    "names",
    [["atom"], pytest.param(["system", "atom"], marks=pytest.mark.slow)],
    ids=lambda n: "+".join(n),
)
def test_sample_reduction_gradients_match_jvp_on_sparse_blocks(reduction, names):
    theirs, _ = load("qm7-power-spectrum.mts")
    function = getattr(eqt, f"{reduction}_over_samples_block")
    checked = 0
    for block in theirs.blocks():
        if metatensor_gradients_are_right(block, names) or len(block.samples) > 20:
            continue
        assert_gradients_match_jvp(lambda b: function(b, names), block_from_metatensor(block))
        checked += 1
        if checked == 2:
            break
    assert checked > 0


@pytest.mark.parametrize("seed", [0, pytest.param(1, marks=pytest.mark.slow)])
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_sample_reductions_on_random_tensors(seed, reduction):
    theirs = random_mts_tensor(seed)
    ours = from_metatensor(theirs)
    names = [["atom"], ["system"]][seed]
    result = jit_apply(getattr(eqt, f"{reduction}_over_samples"), ours, names)
    reference = getattr(metatensor, f"{reduction}_over_samples")(theirs, names)
    function = getattr(eqt, f"{reduction}_over_samples_block")
    for i, (a, b) in enumerate(zip(result, reference.blocks())):
        if reduction == "sum" or metatensor_gradients_are_right(theirs.block(i), names):
            assert_block_equal(a, b, atol=1e-12)
        else:
            assert_close(a.values, b.values, atol=1e-12, rtol=0)
        assert_gradients_match_jvp(lambda b, f=function: f(b, names), ours.block(i))


def test_reduce_block_without_samples_keeps_it():
    block = TensorBlock(
        np.zeros((0, 2)), Labels.empty(["system", "atom"]), [], Labels.range("p", 2)
    )
    for reduction in REDUCTIONS:
        result = getattr(eqt, f"{reduction}_over_samples_block")(block, "atom")
        assert result.samples.names == ["system"] and len(result.samples) == 0
        assert result.values.shape == (0, 2)


def test_reduce_every_sample_dimension_gives_single_sample():
    _, ours = load("radial-spectrum.mts")
    result = eqt.mean_over_samples(ours, ["system", "atom"])
    for block in result:
        assert block.samples == Labels.single()


def test_sample_reductions_in_float32():
    theirs = random_mts_tensor(3, gradients=False)
    ours = from_metatensor(theirs)
    ours32 = TensorMap(
        ours.keys,
        [
            TensorBlock(b.values.astype(np.float32), b.samples, b.components, b.properties)
            for b in ours
        ],
    )
    for reduction in REDUCTIONS:
        result = getattr(eqt, f"{reduction}_over_samples")(ours32, "atom")
        reference = getattr(metatensor, f"{reduction}_over_samples")(theirs, "atom")
        for a, b in zip(result, reference.blocks()):
            assert a.values.dtype == jnp.float32
            assert_close(a.values, b.values, atol=1e-5, rtol=1e-5)


def test_sample_reduction_errors():
    _, ours = load("radial-spectrum.mts")
    with pytest.raises(ValueError, match=r"'atoms'.*not part of this TensorMap"):
        eqt.sum_over_samples(ours, "atoms")
    with pytest.raises(ValueError, match="'atoms' in 'mean_over_samples_block' is not a sample"):
        eqt.mean_over_samples_block(ours.block(0), ["atoms"])
    with pytest.raises(TypeError, match="`sample_names` in 'sum_over_samples' must be str"):
        eqt.sum_over_samples(ours, 3)
    with pytest.raises(TypeError, match="`property_names` in 'std_over_properties' must be"):
        eqt.std_over_properties(ours, None)
    with pytest.raises(TypeError, match="must be a TensorMap"):
        eqt.sum_over_samples(ours.block(0), "atom")
    with pytest.raises(TypeError, match="must be a TensorBlock"):
        eqt.sum_over_samples_block(ours, "atom")
    with pytest.raises(ValueError, match="names of the remaining sample dimensions"):
        eqt.sum_over_samples(ours, "atom", groups=Labels.range("structure", 2))
    with pytest.raises(ValueError, match="exactly one remaining sample dimension"):
        eqt.sum_over_samples(ours, [], groups=3)


# --------------------------------------------------------------------------- jit, grad, vmap
def test_sample_reductions_under_jit_equal_eager():
    _, ours = load("radial-spectrum.mts")
    # the two blocks with several atoms: every eager operation compiles once per shape
    ours = TensorMap(ours.keys[[2, 4]], [ours.block(2).copy(), ours.block(4).copy()])
    for reduction in REDUCTIONS:
        function = getattr(eqt, f"{reduction}_over_samples")
        eager = function(ours, "atom")
        jitted = jit_apply(function, ours, "atom")
        for a, b in zip(jitted, eager):
            # XLA may fuse the var/std gradient formula differently: 1e-12 relative
            assert_close(a.values, b.values, atol=1e-13, rtol=1e-12)
            assert a.samples == b.samples
            for parameter, gradient in a.gradients():
                assert_close(gradient.values, b.gradient(parameter).values, atol=1e-12, rtol=1e-9)


def test_grad_through_mean_over_samples():
    block = block_from_metatensor(load("qm7-power-spectrum.mts")[0].block(0))
    block = eqt.remove_gradients_block(block)
    sizes = np.bincount(_group_ids(np.asarray(block.samples.values), block.samples.names, ["atom"]))

    def loss(values):
        plain = TensorBlock(values, block.samples, block.components, block.properties)
        return jnp.sum(eqt.mean_over_samples_block(plain, "atom").values)

    grad = jax.grad(loss)(jnp.asarray(block.values))
    ids = _group_ids(np.asarray(block.samples.values), block.samples.names, ["atom"])
    assert_close(grad, np.broadcast_to(1.0 / sizes[ids][:, None], grad.shape))


def test_vmap_over_sample_reductions():
    _, ours = load("radial-spectrum.mts")
    block = eqt.remove_gradients_block(ours.block(0))
    stacked = jnp.stack([jnp.asarray(block.values) * (i + 1) for i in range(3)])

    def reduce(values):
        plain = TensorBlock(values, block.samples, block.components, block.properties)
        return eqt.std_over_samples_block(plain, "atom").values

    batched = jax.vmap(reduce)(stacked)
    for i in range(3):
        assert_close(batched[i], reduce(stacked[i]), atol=1e-13)


# --------------------------------------------------------------------------- dynamic samples
def _padded_batch(rng, n_systems: int, capacity: int, n_properties: int = 4):
    """A block with dynamic samples (system, atom) padded to ``capacity`` rows (system -1)."""
    atoms = rng.integers(1, 5, size=n_systems)
    rows = [(s, a) for s in range(n_systems) for a in range(atoms[s])]
    assert len(rows) <= capacity
    rows += [(-1, i) for i in range(capacity - len(rows))]
    samples = np.array(rows, dtype=np.int32)
    values = rng.normal(size=(capacity, n_properties))
    values[samples[:, 0] < 0] = 0.0
    block = TensorBlock(
        jnp.asarray(values),
        Labels(["system", "atom"], jnp.asarray(samples)),
        [],
        Labels.range("p", n_properties),
    )
    return block, samples, values


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_dynamic_samples_reduce_to_groups(reduction):
    rng = np.random.default_rng(0)
    block, samples, values = _padded_batch(rng, n_systems=4, capacity=24)
    assert block.samples.is_dynamic
    result = getattr(eqt, f"{reduction}_over_samples_block")(block, "atom", groups=4)
    assert result.samples == Labels.range("system", 4)
    real = samples[:, 0] >= 0
    static = TensorBlock(
        values[real], Labels(["system", "atom"], samples[real]), [], Labels.range("p", 4)
    )
    expected = getattr(eqt, f"{reduction}_over_samples_block")(static, "atom")
    assert_close(result.values, expected.values, atol=1e-12)


def test_dynamic_sum_over_samples_compiles_once_per_size():
    traces = []

    @jax.jit
    def energy(tensor):
        traces.append(1)
        return eqt.sum_over_samples(tensor, "atom", groups=4)

    rng = np.random.default_rng(1)
    results = []
    for _ in range(3):
        block, samples, values = _padded_batch(rng, n_systems=4, capacity=24)
        tensor = TensorMap(Labels.single(), [block])
        results.append((energy(tensor).block().values, samples, values))
    assert len(traces) == 1
    for got, samples, values in results:
        expected = np.zeros((4, 4))
        for row, (system, _) in enumerate(samples):
            if system >= 0:
                expected[system] += values[row]
        assert_close(got, expected, atol=1e-12)


def test_dynamic_groups_with_several_dimensions_and_gaps():
    samples = np.array([[3, 0, 1], [1, 5, 0], [3, 0, 2], [7, 7, 7], [1, 5, 3]], dtype=np.int32)
    values = np.arange(10.0).reshape(5, 2)
    dynamic = TensorBlock(
        jnp.asarray(values), Labels(["a", "b", "c"], jnp.asarray(samples)), [], Labels.range("p", 2)
    )
    groups = Labels(["a", "b"], np.array([[3, 0], [1, 5], [2, 2]]))
    result = jax.jit(lambda b: eqt.sum_over_samples_block(b, "c", groups=groups))(dynamic)
    expected = np.array([values[0] + values[2], values[1] + values[4], [0.0, 0.0]])
    assert_close(result.values, expected)
    assert result.samples == groups
    # static labels: the row outside the groups is refused, not dropped
    static = TensorBlock(values, Labels(["a", "b", "c"], samples), [], Labels.range("p", 2))
    with pytest.raises(ValueError, match="a=7, b=7"):
        eqt.sum_over_samples_block(static, "c", groups=groups)
    kept = [0, 1, 2, 4]
    static = TensorBlock(
        values[kept], Labels(["a", "b", "c"], samples[kept]), [], Labels.range("p", 2)
    )
    assert_close(eqt.sum_over_samples_block(static, "c", groups=groups).values, expected)
    mean = eqt.mean_over_samples_block(dynamic, "c", groups=groups)
    assert_close(mean.values, expected / np.array([[2.0], [2.0], [1.0]]))


def test_static_groups_drop_and_fill_and_propagate_gradients():
    _, ours = load("qm7-power-spectrum.mts")
    groups = Labels(["system"], np.array([[4], [0], [11]]))
    # static labels: samples of other systems would be dropped, so they are refused
    with pytest.raises(ValueError, match="has no entry for"):
        jit_apply(eqt.sum_over_samples, ours, "atom", groups=groups)
    full = jit_apply(eqt.sum_over_samples, ours, "atom")
    ours = eqt.slice(ours, "samples", Labels(["system"], np.array([[0], [4]])))
    result = jit_apply(eqt.sum_over_samples, ours, "atom", groups=groups)
    for block, reference in zip(result, full):
        assert block.samples == groups
        for row, (system,) in enumerate(groups.values):
            position = reference.samples.position([system])
            expected = 0.0 if position is None else reference.values[position]
            assert_close(block.values[row], expected, atol=1e-12)
        for parameter, gradient in block.gradients():
            rows = np.asarray(gradient.samples.values)
            assert set(rows[:, 0]) <= {0, 1}
            ref_gradient = reference.gradient(parameter)
            for row, value in zip(rows, np.asarray(gradient.values)):
                ref_row = [reference.samples.position([groups.values[row[0], 0]]), *row[1:]]
                position = ref_gradient.samples.position(ref_row)
                assert_close(value, ref_gradient.values[position], atol=1e-12)


def test_dynamic_samples_errors_name_the_operation():
    rng = np.random.default_rng(2)
    block, _, _ = _padded_batch(rng, n_systems=2, capacity=12)
    with pytest.raises(ValueError, match=r"sum_over_samples_block.*dynamic.*groups"):
        eqt.sum_over_samples_block(block, "atom")
    with_gradient = TensorBlock(block.values, block.samples, [], block.properties)
    with_gradient.add_gradient(
        "positions",
        TensorBlock(
            np.zeros((1, 4), block.values.dtype),
            Labels(["sample"], np.array([[0]])),
            [],
            block.properties,
        ),
    )
    with pytest.raises(ValueError, match=r"explicit 'positions' gradients.*dynamic"):
        eqt.mean_over_samples_block(with_gradient, "atom", groups=2)
    with pytest.raises(ValueError, match="cannot use `groups` when reducing over every"):
        eqt.sum_over_samples_block(block, ["system", "atom"], groups=2)


# --------------------------------------------------------------------------- properties
def _metatensor_property_reduction_works(tensor, reduction: str, names) -> bool:
    """metatensor is right when blocks have no components, or for sums, or when every
    property is reduced (then the misplaced group-size axis has length 1)."""
    if reduction == "sum" or not tensor.block(0).components:
        return True
    remaining = [n for n in tensor.property_names if n not in names]
    return reduction == "mean" and not remaining


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize(
    "file, names",
    [
        # with components (metatensor wrong for var/std); blocks without components are
        # compared with metatensor by default on random tensors (..._without_components)
        ("qm7-spherical-expansion.mts", ["n"]),
        pytest.param("radial-spectrum.mts", ["n"], marks=pytest.mark.slow),
        pytest.param("qm7-power-spectrum.mts", ["n_1"], marks=pytest.mark.slow),
        pytest.param("qm7-power-spectrum.mts", ["l", "n_2"], marks=pytest.mark.slow),
        pytest.param("core-data.mts", ["n"], marks=pytest.mark.slow),
    ],
)
def test_property_reductions_match_metatensor(reduction, file, names):
    theirs, ours = load(file)
    result = jit_apply(getattr(eqt, f"{reduction}_over_properties"), ours, names)
    if _metatensor_property_reduction_works(theirs, reduction, names):
        reference = getattr(metatensor, f"{reduction}_over_properties")(theirs, names)
        assert_tensor_equal(result, reference)
    else:
        # metatensor fails here (see the module docstring): check against NumPy directly
        for block, source in zip(result, ours):
            assert block.properties == Labels.single()
            values = np.asarray(source.values)
            expected = {"var": values.var(axis=-1), "std": values.std(axis=-1)}[reduction]
            assert_close(block.values[..., 0], expected, atol=1e-12)


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_property_reductions_with_components_match_numpy_and_jvp(reduction):
    theirs = random_mts_tensor(5, n_blocks=2, components=True)
    ours = from_metatensor(theirs)
    result = jit_apply(getattr(eqt, f"{reduction}_over_properties"), ours, "n")
    numpy_reduction = {"sum": np.sum, "mean": np.mean, "var": np.var, "std": np.std}[reduction]
    for block, source in zip(result, ours):
        properties = np.asarray(source.properties.values)
        assert block.properties == Labels(["l"], np.unique(properties[:, 1])[:, None])
        for j, (l,) in enumerate(block.properties.values):
            selected = np.asarray(source.values)[..., properties[:, 1] == l]
            assert_close(block.values[..., j], numpy_reduction(selected, axis=-1), atol=1e-12)
        function = getattr(eqt, f"{reduction}_over_properties_block")
        assert_gradients_match_jvp(lambda b, f=function: f(b, "n"), source)


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_property_reductions_on_random_tensors_without_components(reduction):
    theirs = random_mts_tensor(6, n_blocks=3, components=False)
    ours = from_metatensor(theirs)
    for names in (["n"], ["n", "l"]):
        result = jit_apply(getattr(eqt, f"{reduction}_over_properties"), ours, names)
        reference = getattr(metatensor, f"{reduction}_over_properties")(theirs, names)
        assert_tensor_equal(result, reference)


def test_property_reductions_accept_dynamic_samples_and_jit():
    rng = np.random.default_rng(4)
    block, _, values = _padded_batch(rng, n_systems=3, capacity=16)
    tensor = TensorMap(Labels.single(), [block])
    result = jax.jit(lambda t: eqt.mean_over_properties(t, "p"))(tensor)
    assert result.block().samples.is_dynamic
    assert_close(result.block().values[:, 0], values.mean(axis=1), atol=1e-12)


def test_property_reduction_errors():
    _, ours = load("radial-spectrum.mts")
    with pytest.raises(ValueError, match=r"'m'.*not part of this TensorMap"):
        eqt.sum_over_properties(ours, "m")
    with pytest.raises(ValueError, match="'m' in 'var_over_properties_block' is not a property"):
        eqt.var_over_properties_block(ours.block(0), ["m"])
