"""metatensor's Python API on our classes, checked against metatensor-core/-operations directly.

Indexing, comparison and arithmetic operators, ``copy``/``to``/``len``/printing, the file
functions and methods (bytes identical to metatensor's), gradients of gradients,
``keys_to_samples`` with ``fill_value``, ``components_to_properties``, ``info``, the checks
switch, exact divisions and means, the float64 warning and error messages.
"""

from __future__ import annotations

import copy
import importlib
import inspect
import io
import warnings
import zipfile

import jax
import jax.numpy as jnp
import metatensor
import metatensor.operations as mto
import numpy as np
import optax
import pytest
from conftest import data_path
from helpers import (
    X64,
    assert_close,
    assert_tensor_equal,
    from_metatensor,
    labels_from_metatensor,
    user_jit,
)

import eqx_tensor as eqt
from eqx_tensor import Labels, TensorBlock, TensorMap

FILES = [
    "radial-spectrum.mts",
    "spherical-expansion.mts",
    "core-data.mts",
    "qm7-power-spectrum.mts",
    "qm7-spherical-expansion.mts",
]

# the dtype JAX computes in during this run (NumPy data stays float64 either way)
FLOAT = np.float64 if X64 else np.float32


def _no_downcast_warning() -> warnings.catch_warnings:
    """Silence our float64 -> float32 warning (the float32 run) where it is not the subject."""
    context = warnings.catch_warnings()
    context.__enter__()
    warnings.filterwarnings("ignore", message="eqx_tensor: float64 NumPy data")
    return context


@pytest.fixture(autouse=True)
def _quiet_downcasts():
    context = _no_downcast_warning()
    yield
    context.__exit__(None, None, None)


def _mts_tensor(dtype=np.float64, seed: int = 0, n_blocks: int = 3) -> metatensor.TensorMap:
    """Three blocks (keys a, b) with a component and 'positions' gradients (extra xyz);
    ``n_blocks`` keeps the first ones (fewer programs to compile under jit)."""
    rng = np.random.default_rng(seed)
    blocks = []
    for i in range(n_blocks):
        n = 2 + i
        samples = metatensor.Labels(
            ["system", "atom"], np.stack([np.zeros(n, int), np.arange(n)], 1)
        )
        components = [metatensor.Labels.range("o3_mu", 3)]
        properties = metatensor.Labels(["n"], np.arange(2 + i)[:, None])
        values = rng.uniform(0.5, 2.0, (n, 3, 2 + i)).astype(dtype)
        block = metatensor.TensorBlock(values, samples, components, properties)
        rows = np.array([[0, 0, 1], [n - 1, 0, 0]])
        gradient = metatensor.TensorBlock(
            rng.normal(size=(2, 3, 3, 2 + i)).astype(dtype),
            metatensor.Labels(["sample", "system", "atom"], rows),
            [metatensor.Labels.range("xyz", 3), *components],
            properties,
        )
        block.add_gradient("positions", gradient)
        blocks.append(block)
    keys = metatensor.Labels(["a", "b"], np.array([[0, 0], [1, 0], [2, 1]])[:n_blocks])
    return metatensor.TensorMap(keys, blocks)


def _both(
    dtype=np.float64, seed: int = 0, n_blocks: int = 3
) -> tuple[metatensor.TensorMap, TensorMap]:
    theirs = _mts_tensor(dtype, seed, n_blocks)
    return theirs, from_metatensor(theirs)


def _outcome(function, *args, **kwargs):
    """``("ok", result)`` or ``(exception type, message)`` of a call."""
    try:
        return "ok", function(*args, **kwargs)
    except Exception as error:  # the point is to compare errors
        return type(error), str(error)


# --------------------------------------------------------------------------- 1. indexing
def test_getitem_selects_like_metatensor():
    theirs, ours = _both()
    for selection in (0, 2, {"a": 1}, {"a": 2, "b": 1}, True):
        assert np.array_equal(ours[selection].values, theirs[selection].values), selection
    assert np.array_equal(ours[ours.keys[1]].values, theirs[theirs.keys[1]].values)
    selection = Labels(["a"], np.array([[2]]))
    assert np.array_equal(
        ours[selection].values, theirs[metatensor.Labels(["a"], np.array([[2]]))].values
    )
    # iteration through __getitem__ stops on IndexError in both
    assert len(list(ours)) == len(list(theirs)) == 3
    assert ours.block(a=1, b=0) is ours[1]


@pytest.mark.parametrize(
    "selection",
    [5, "a", 1.0, (0,), {"a": 1.5}, {"a": np.float64(1)}, {"b": 0}, {"a": 7}],
)
def test_getitem_errors_like_metatensor(selection):
    theirs, ours = _both()
    kind, message = _outcome(lambda: theirs[selection])
    our_kind, our_message = _outcome(lambda: ours[selection])
    assert our_kind is kind, (selection, our_message)
    # metatensor's message first, then (for some) ours adds what it found
    if kind is IndexError:
        assert our_message == message
    else:
        assert our_message.startswith(message.split(",")[0].split(":")[0]), (message, our_message)


def test_block_selection_edge_cases_like_metatensor():
    theirs, ours = _both()
    # unknown dimension: metatensor raises its MetatensorError, we a ValueError naming it
    with pytest.raises(ValueError, match="'c' in selection is not part of these Labels"):
        ours[{"c": 0}]
    with pytest.raises(ValueError, match="more than one block matched"):
        ours.block()
    assert [b.values.shape for b in ours.blocks()] == [b.values.shape for b in theirs.blocks()]
    assert len(ours.blocks(b=0)) == len(theirs.blocks(b=0)) == 2
    with pytest.raises(ValueError, match="Couldn't find any block matching '\\(a=5\\)'"):
        ours.blocks(a=5)
    with pytest.raises(ValueError, match="Couldn't find any block matching"):
        theirs.blocks(a=5)
    empty = TensorMap(Labels(["a"], np.zeros((0, 1), np.int32)), [])
    assert empty.blocks() == [] and empty.blocks(a=1) == []
    with pytest.raises(ValueError, match="there are no blocks in this TensorMap"):
        empty.block()
    single = TensorMap(Labels.range("k", 1), [ours.block(0).copy()])
    assert single.block() is single[0]


# --------------------------------------------------------------------------- 1. operators
def _variants(theirs: metatensor.TensorMap) -> dict[str, metatensor.TensorMap]:
    return {
        "same": theirs,
        "copy": theirs.copy(),
        "values": mto.add(theirs, 1.0),
        "gradients": mto.remove_gradients(theirs),
        "keys": mto.drop_blocks(theirs, metatensor.Labels(["a"], np.array([[0]]))),
    }


def test_eq_and_ne_are_equal_like_metatensor():
    theirs, ours = _both()
    for name, other in _variants(theirs).items():
        other_ours = from_metatensor(other)
        assert (ours == other_ours) is (theirs == other) is mto.equal(theirs, other), name
        assert (ours != other_ours) is (theirs != other), name
        for block, theirs_block, b_ours, b_theirs in zip(ours, theirs, other_ours, other):
            assert (block == b_ours) is (theirs_block == b_theirs), name
            assert (block != b_ours) is (theirs_block != b_theirs), name
    # neither class is hashable once it defines __eq__, as in metatensor
    for value in (ours, ours.block(0), theirs, theirs.block(0)):
        with pytest.raises(TypeError, match="unhashable"):
            hash(value)


def test_arithmetic_operators_forward_like_metatensor():
    theirs, ours = _both(n_blocks=1)
    other_theirs, other = _both(seed=1, n_blocks=1)
    weights_theirs = mto.remove_gradients(
        metatensor.TensorMap(
            theirs.keys,
            [
                metatensor.TensorBlock(
                    np.random.default_rng(i).normal(size=(4, len(b.properties))),
                    metatensor.Labels.range("w", 4),
                    [],
                    b.properties,
                )
                for i, b in enumerate(theirs)
            ],
        )
    )
    weights = from_metatensor(weights_theirs)
    cases = [
        (ours + other, theirs + other_theirs),
        (ours + 2, theirs + 2),
        (ours - other, theirs - other_theirs),
        (ours - 0.5, theirs - 0.5),
        (ours * other, theirs * other_theirs),
        (ours * 3, theirs * 3),
        (ours / other, theirs / other_theirs),
        (ours / 3.0, theirs / 3.0),
        (ours**2, theirs**2),
        (ours**0.5, theirs**0.5),
        (ours @ weights, theirs @ weights_theirs),
        (-ours, -theirs),
    ]
    for result, expected in cases:
        assert isinstance(result, TensorMap)
        assert_tensor_equal(result, expected, 1e-12)
    assert +ours is ours
    # the same set of operators as metatensor: no reflected forms, none on blocks
    for tensor in (ours, theirs):
        with pytest.raises(TypeError, match="unsupported operand"):
            2 + tensor
        with pytest.raises(TypeError, match="unsupported operand"):
            tensor.block(0) + 1
    for name in ("__radd__", "__rsub__", "__rmul__", "__rtruediv__", "__rpow__", "__rmatmul__"):
        assert not hasattr(TensorMap, name) and not hasattr(metatensor.TensorMap, name), name
    for name in ("__add__", "__mul__", "__neg__"):
        assert not hasattr(TensorBlock, name) and not hasattr(metatensor.TensorBlock, name), name
    with pytest.raises(TypeError, match="`B` in 'add' must be a TensorMap or a scalar"):
        ours + ours.block(0)
    with pytest.raises(TypeError, match="must be a metatensor TensorMap or a scalar"):
        theirs + theirs.block(0)


def test_operators_under_jit_and_grad():
    _, ours = _both(n_blocks=1)
    tensor = ours.to(arrays="jax")

    def combine(a: TensorMap, b: TensorMap) -> TensorMap:
        return -(a + b) / 3.0 + a**2

    eager = combine(tensor, tensor)
    jitted = jax.jit(combine)(tensor, tensor)
    for a, b in zip(jax.tree_util.tree_leaves(eager), jax.tree_util.tree_leaves(jitted)):
        assert_close(a, b, rtol=1e-14, x32=1e-6)
    grad = jax.grad(lambda t: sum(jnp.sum(b.values) for b in combine(t, t)))(tensor)
    for g, block in zip(grad, tensor):
        # d/da of -2a/3 + a^2 (per element), on the values only
        assert_close(g.values, -2.0 / 3.0 + 2.0 * block.values, rtol=1e-12, x32=1e-5)
    # comparisons need concrete values, like eqx_tensor.equal
    with pytest.raises(ValueError, match="'equal' needs the concrete values"):
        jax.jit(lambda a: a == a)(tensor)


# --------------------------------------------------------------------------- 2. files
@pytest.mark.parametrize(
    "name", ["core-block.mts", "core-keys.mts", "core-data.mts", *FILES[:2], *FILES[3:]]
)
def test_resaving_is_byte_identical_to_metatensor(name):
    path = str(data_path(name))
    if name == "core-keys.mts":
        ours, theirs = eqt.load_labels(path), metatensor.load_labels(path)
    elif name == "core-block.mts":
        ours, theirs = eqt.load_block(path), metatensor.load_block(path)
    else:
        ours, theirs = eqt.load(path), metatensor.load(path)
    expected = bytes(metatensor.io.save_buffer(theirs))
    data = eqt.save_buffer(ours)
    assert isinstance(data, memoryview) and type(metatensor.io.save_buffer(theirs)) is memoryview
    assert bytes(data) == expected
    assert bytes(ours.save_buffer()) == expected
    buffer = io.BytesIO()
    ours.save(buffer)
    assert buffer.getvalue() == expected


def test_zip_layout_fields_are_metatensors(tmp_path):
    theirs, ours = _both()
    theirs.set_info("zeta", "1")
    theirs.set_info("alpha", 'é"\n\t')
    ours.set_info("zeta", "1")
    ours.set_info("alpha", 'é"\n\t')
    block = ours.block(0).copy()
    block.add_gradient(
        "strain",
        TensorBlock(
            np.ones((1, 3, 2)),
            Labels(["sample"], np.array([[1]])),
            [Labels.range("o3_mu", 3)],
            block.properties,
        ),
    )
    expected = bytes(metatensor.io.save_buffer(theirs))
    assert bytes(eqt.save_buffer(ours)) == expected
    eqt.save(str(tmp_path / "ours.mts"), ours)
    metatensor.save(str(tmp_path / "theirs.mts"), theirs)
    assert (tmp_path / "ours.mts").read_bytes() == (tmp_path / "theirs.mts").read_bytes()
    with (
        zipfile.ZipFile(io.BytesIO(expected)) as a,
        zipfile.ZipFile(io.BytesIO(eqt.save_buffer(ours))) as b,
    ):
        for x, y in zip(a.infolist(), b.infolist()):
            for field in ("filename", "date_time", "create_version", "extract_version"):
                assert getattr(x, field) == getattr(y, field)
            assert (x.external_attr, x.extra, x.flag_bits) == (
                y.external_attr,
                y.extra,
                y.flag_bits,
            )
    # gradients are written sorted (metatensor keeps them in a sorted map), whatever the order
    names = zipfile.ZipFile(io.BytesIO(bytes(eqt.save_buffer(block)))).namelist()
    assert names.index("gradients/positions/values.npy") < names.index(
        "gradients/strain/values.npy"
    )


def test_use_numpy_and_signatures_are_metatensors(tmp_path):
    theirs, ours = _both()
    for ours_f, theirs_f in [
        (eqt.load, metatensor.io.load),
        (eqt.load_block, metatensor.io.load_block),
        (eqt.load_labels, metatensor.io.load_labels),
        (eqt.load_buffer, metatensor.io.load_buffer),
        (eqt.load_block_buffer, metatensor.io.load_block_buffer),
        (eqt.load_labels_buffer, metatensor.io.load_labels_buffer),
        (eqt.TensorMap.load, metatensor.TensorMap.load),
        (eqt.TensorMap.save, metatensor.TensorMap.save),
        (eqt.TensorMap.save_buffer, metatensor.TensorMap.save_buffer),
        (eqt.TensorBlock.load_buffer, metatensor.TensorBlock.load_buffer),
        (eqt.Labels.load, metatensor.Labels.load),
        (eqt.Labels.save_buffer, metatensor.Labels.save_buffer),
    ]:
        mine = [p for p in inspect.signature(ours_f).parameters if p != "compress"]
        assert mine == list(inspect.signature(theirs_f).parameters), ours_f
    for name in ("save", "save_buffer"):
        theirs_parameters = list(inspect.signature(getattr(metatensor.io, name)).parameters)
        ours_parameters = list(inspect.signature(getattr(eqt, name)).parameters)
        assert ours_parameters == [*theirs_parameters, "compress"]
    # use_numpy changes nothing here: one reader and one (native) writer
    path = tmp_path / "t.mts"
    ours.save(path, use_numpy=True)
    assert path.read_bytes() == bytes(eqt.save_buffer(ours, use_numpy=True))
    assert path.read_bytes() == bytes(metatensor.io.save_buffer(theirs))
    theirs.save(str(tmp_path / "numpy.mts"), use_numpy=True)  # numpy.savez: other bytes
    for use_numpy in (False, True):
        loaded = eqt.load(tmp_path / "numpy.mts", use_numpy=use_numpy)
        assert isinstance(loaded.block(0).values, np.ndarray)
        assert_tensor_equal(loaded, theirs, 0)
        assert eqt.TensorMap.load_buffer(path.read_bytes(), use_numpy=use_numpy) == loaded
    block = eqt.TensorBlock.load_buffer(bytes(ours.block(0).save_buffer(use_numpy=True)), True)
    assert block == ours.block(0)


def test_save_appends_the_extension_like_metatensor(tmp_path):
    labels = Labels.range("a", 2)
    with pytest.warns(UserWarning, match="will be saved at 'plain.mts'$"):
        eqt.save(tmp_path / "plain", labels)
    with pytest.warns(UserWarning, match=f"will be saved at '{tmp_path / 'text.mts'}'"):
        eqt.save(str(tmp_path / "text"), labels)
    with pytest.warns(UserWarning, match="will be saved at 'theirs.mts'$"):
        metatensor.save(tmp_path / "theirs", metatensor.Labels.range("a", 2))
    assert (tmp_path / "plain.mts").read_bytes() == (tmp_path / "theirs.mts").read_bytes()


# --------------------------------------------------------------------------- 3. checks
@pytest.fixture
def checks_state():
    from eqx_tensor.operations import _checks

    original = _checks._CHECKS_ENABLED
    yield _checks
    _checks._CHECKS_ENABLED = original
    mto._checks._CHECKS_ENABLED = True


@pytest.mark.parametrize("initial", [True, False])
def test_checks_switch_behaves_like_metatensors(checks_state, initial):
    for module, lib in ((checks_state, eqt), (mto._checks, mto)):
        module._CHECKS_ENABLED = initial
        assert lib.checks_enabled() is initial
        with lib.unsafe_disable_checks():
            assert lib.checks_enabled() is False
            with lib.unsafe_enable_checks() as enabled:
                assert lib.checks_enabled() is True and repr(enabled) == "checks enabled"
            assert lib.checks_enabled() is False
        assert lib.checks_enabled() is initial
        assert repr(lib.unsafe_disable_checks()) == "checks disabled"
        assert lib.checks_enabled() is False
        lib.unsafe_enable_checks()
        assert lib.checks_enabled() is True


def test_checks_switch_reads_the_environment_and_switches_no_check_off(checks_state, monkeypatch):
    monkeypatch.setenv("METATENSOR_UNSAFE_DISABLE_CHECKS", "yes")
    reloaded = importlib.reload(checks_state)
    assert reloaded.checks_enabled() is False
    monkeypatch.setenv("METATENSOR_UNSAFE_DISABLE_CHECKS", "0")
    assert importlib.reload(checks_state).checks_enabled() is True
    # as in metatensor-operations 0.5, the operations keep checking their inputs
    theirs, ours = _both()
    smaller = eqt.drop_blocks(ours, Labels(["a"], np.array([[0]])))
    with eqt.unsafe_disable_checks(), pytest.raises(eqt.NotEqualError, match="number of blocks"):
        eqt.add(ours, smaller)
    with mto.unsafe_disable_checks(), pytest.raises(mto.NotEqualError, match="number of blocks"):
        mto.add(theirs, mto.drop_blocks(theirs, metatensor.Labels(["a"], np.array([[0]]))))


# --------------------------------------------------------------------------- 4. block API
def test_len_copy_and_to_like_metatensor():
    theirs, ours = _both()
    block, theirs_block = ours.block(1), theirs.block(1)
    assert len(block) == len(theirs_block) == 3
    assert len(block.gradient("positions")) == len(theirs_block.gradient("positions")) == 2
    deep, shallow = block.copy(), block.copy(deep=False)
    assert deep.values is not block.values and np.array_equal(deep.values, block.values)
    assert shallow.values is block.values
    assert shallow.gradient("positions").values is block.gradient("positions").values
    assert (
        copy.copy(block).values is block.values and copy.deepcopy(block).values is not block.values
    )
    # copies are new blocks: modifiable, and a gradient's copy is a regular block
    deep.add_gradient(
        "strain",
        TensorBlock(
            np.zeros((1, 3, 3)),
            Labels(["sample"], np.array([[0]])),
            [Labels.range("o3_mu", 3)],
            block.properties,
        ),
    )
    regular = block.gradient("positions").copy()
    assert not regular.is_gradient and len(TensorMap(Labels.range("k", 1), [regular])) == 1
    jax_block = block.to(arrays="jax")
    assert jax_block.copy().values is jax_block.values  # immutable: shared, documented
    ours.set_info("origin", "test")
    assert ours.copy(deep=False).info() == ours.copy().info() == {"origin": "test"}
    assert ours.copy(deep=False).block(0).values is ours.block(0).values

    # to(): metatensor's positional and keyword forms
    for args, kwargs in [
        ((np.float32,), {}),
        ((), {"dtype": np.float32}),
        (("cpu", np.float32), {}),
    ]:
        converted, expected = block.to(*args, **kwargs), theirs_block.to(*args, **kwargs)
        assert isinstance(converted.values, np.ndarray) and converted.values.dtype == np.float32
        assert np.array_equal(converted.values, expected.values)
        assert converted.gradient("positions").values.dtype == np.float32
    assert isinstance(block.to("cpu").values, np.ndarray)  # NumPy stays on the host
    assert isinstance(block.to(arrays="numpy", device="cpu", non_blocking=True).values, np.ndarray)
    moved = block.to(jax.devices("cpu")[0])
    assert isinstance(moved.values, jax.Array) and moved.device == jax.devices("cpu")[0]
    assert ours.to(np.float32).get_info("origin") == "test"
    assert ours.to(device="cpu", arrays="jax").block(0).gradient("positions").values.dtype == FLOAT
    for bad, error in [
        ((np.float32, np.float64), ValueError),
        (("cpu", "cpu"), ValueError),
        ((3.0,), TypeError),
        ((np.bool_,), TypeError),
    ]:
        with pytest.raises(error):
            block.to(*bad)
        with pytest.raises(error):
            theirs_block.to(*bad)
    with pytest.raises(ValueError, match="can not move numpy array to non-cpu device"):
        block.to(arrays="numpy", device=jax.devices("cpu")[0])
    with pytest.raises(TypeError, match="unexpected keyword arguments"):
        block.to(dtyp=np.float32)


def test_printing_is_metatensors():
    for name in ("radial-spectrum.mts", "core-data.mts", "spherical-expansion.mts"):
        theirs = metatensor.load(str(data_path(name)))
        ours = eqt.load(data_path(name))
        assert repr(ours) == repr(theirs) and str(ours) == str(theirs)
        for max_keys in (0, 1, 3, 100):
            assert ours.print(max_keys) == theirs.print(max_keys)
        for block, theirs_block in zip(ours, theirs):
            assert repr(block) == repr(theirs_block) and str(block) == str(theirs_block)
            for parameter in theirs_block.gradients_list():
                assert repr(block.gradient(parameter)) == repr(theirs_block.gradient(parameter))
    # several gradients (same insertion order) and keys of several widths
    theirs, ours = _both()
    assert repr(ours) == repr(theirs) and ours.print(2) == theirs.print(2)
    empty = metatensor.TensorMap(metatensor.Labels(["a"], np.zeros((0, 1), np.int32)), [])
    assert repr(TensorMap(Labels(["a"], np.zeros((0, 1), np.int32)), [])) == repr(empty)


# --------------------------------------------------------------------------- 5. nested gradients
def _nested_mts() -> metatensor.TensorBlock:
    block = metatensor.TensorBlock(
        np.arange(6.0).reshape(3, 2),
        metatensor.Labels.range("s", 3),
        [],
        metatensor.Labels.range("p", 2),
    )
    positions = metatensor.TensorBlock(
        np.arange(12.0).reshape(2, 3, 2),
        metatensor.Labels(["sample", "atom"], np.array([[0, 0], [2, 1]])),
        [metatensor.Labels.range("xyz", 3)],
        metatensor.Labels.range("p", 2),
    )
    cell = metatensor.TensorBlock(
        np.arange(72.0).reshape(2, 2, 3, 3, 2) / 7,
        metatensor.Labels(["sample", "k"], np.array([[0, 0], [1, 1]])),
        [
            metatensor.Labels.range("c", 2),
            metatensor.Labels.range("x2", 3),
            metatensor.Labels.range("xyz", 3),
        ],
        metatensor.Labels.range("p", 2),
    )
    positions.add_gradient("cell", cell)
    block.add_gradient("positions", positions)
    return block


def _convert_nested(block) -> TensorBlock:
    result = TensorBlock(
        np.array(block.values),
        labels_from_metatensor(block.samples),
        [labels_from_metatensor(c) for c in block.components],
        labels_from_metatensor(block.properties),
    )
    for parameter, gradient in block.gradients():
        result.add_gradient(parameter, _convert_nested(gradient))
    return result


def test_gradients_of_gradients_like_metatensor(tmp_path):
    theirs = _nested_mts()
    ours = _convert_nested(theirs)
    nested = ours.gradient("positions").gradient("cell")
    assert nested.is_gradient and nested.values.shape == (2, 2, 3, 3, 2)
    assert repr(ours) == repr(theirs)
    assert repr(ours.gradient("positions")) == repr(theirs.gradient("positions"))
    assert repr(nested) == repr(theirs.gradient("positions").gradient("cell"))
    # files: same members and bytes both ways
    data = bytes(eqt.save_buffer(ours))
    assert data == bytes(metatensor.io.save_buffer(theirs))
    assert (
        "gradients/positions/gradients/cell/components/2.npy"
        in zipfile.ZipFile(io.BytesIO(data)).namelist()
    )
    back = eqt.load_block_buffer(metatensor.io.save_buffer(theirs))
    assert back == ours and np.array_equal(
        back.gradient("positions").gradient("cell").values, nested.values
    )
    tensor = TensorMap(Labels.range("k", 1), [ours])
    tensor.save(tmp_path / "nested.mts")
    loaded = metatensor.load(str(tmp_path / "nested.mts"))
    assert np.array_equal(
        loaded.block(0).gradient("positions").gradient("cell").values, nested.values
    )
    # pytrees: every level is a leaf, jit and tree_map keep the structure
    assert len(jax.tree_util.tree_leaves(tensor)) == 3
    doubled = jax.tree.map(lambda x: 2 * x, tensor)
    assert_close(doubled.block(0).gradient("positions").gradient("cell").values, 2 * nested.values)
    jitted = jax.jit(lambda t: t)(tensor)
    assert repr(jitted.block(0).gradient("positions").gradient("cell")) == repr(nested)
    copied = ours.copy()
    assert copied.gradient("positions").gradient("cell").values is not nested.values
    # a view can not be changed; operations that can not propagate them refuse them
    with pytest.raises(ValueError, match="gradients of gradients must be added"):
        ours.gradient("positions").add_gradient("x", ours.gradient("positions").copy())
    with pytest.raises(
        NotImplementedError, match="gradients of gradients are not supported in 'add'"
    ):
        eqt.add(tensor, 1.0)
    with pytest.raises(NotImplementedError, match="gradients of gradients are not supported"):
        mto.add(metatensor.TensorMap(metatensor.Labels.range("k", 1), [_nested_mts()]), 1.0)


# --------------------------------------------------------------------------- 6. moving
def _merge_case() -> metatensor.TensorMap:
    def block(properties, samples, offset, gradient_rows):
        properties = metatensor.Labels(["p"], np.array(properties)[:, None])
        result = metatensor.TensorBlock(
            np.arange(len(samples) * 2 * len(properties), dtype=float).reshape(len(samples), 2, -1)
            + offset,
            metatensor.Labels(["s"], np.array(samples)[:, None]),
            [metatensor.Labels.range("c", 2)],
            properties,
        )
        result.add_gradient(
            "g",
            metatensor.TensorBlock(
                np.arange(len(gradient_rows) * 6 * len(properties), dtype=float).reshape(
                    len(gradient_rows), 3, 2, -1
                )
                * offset,
                metatensor.Labels(["sample", "atom"], np.array(gradient_rows)),
                [metatensor.Labels.range("x", 3), metatensor.Labels.range("c", 2)],
                properties,
            ),
        )
        return result

    keys = metatensor.Labels(["k", "j"], np.array([[1, 0], [0, 0], [2, 1], [3, 1]]))
    return metatensor.TensorMap(
        keys,
        [
            block([3, 1], [5, 1], 1.0, [[1, 1], [0, 2], [0, 0]]),
            block([1, 5, 0], [1, 2], 2.0, [[1, 0], [0, 3]]),
            block([3], [0], 3.0, [[0, 0]]),
            block([2, 3], [0, 4], 5.0, [[1, 0]]),
        ],
    )


@pytest.mark.parametrize("sort_samples", [True, False])
@pytest.mark.parametrize("fill_value", [0.0, -7.0, np.nan])
def test_keys_to_samples_fills_different_properties_like_metatensor(sort_samples, fill_value):
    theirs = _merge_case()
    theirs.set_info("origin", "test")
    ours = from_metatensor(theirs)
    ours.set_info("origin", "test")
    expected = theirs.keys_to_samples("k", fill_value=fill_value, sort_samples=sort_samples)
    result = ours.keys_to_samples("k", fill_value=fill_value, sort_samples=sort_samples)
    assert result.info() == expected.info() == {"origin": "test"}
    convert = labels_from_metatensor
    assert result.keys == convert(expected.keys)
    for block, theirs_block in zip(result, expected):
        assert block.samples == convert(theirs_block.samples)
        assert block.properties == convert(theirs_block.properties)
        assert np.array_equal(block.values, theirs_block.values, equal_nan=True)
        gradient, theirs_gradient = block.gradient("g"), theirs_block.gradient("g")
        assert gradient.samples == convert(theirs_gradient.samples)
        assert np.array_equal(gradient.values, theirs_gradient.values, equal_nan=True)
    expected = theirs.keys_to_properties("k", fill_value=fill_value, sort_samples=sort_samples)
    result = ours.keys_to_properties("k", fill_value=fill_value, sort_samples=sort_samples)
    assert result.info() == {"origin": "test"}
    for block, theirs_block in zip(result, expected):
        assert block.properties == convert(theirs_block.properties)
        assert np.array_equal(block.values, theirs_block.values, equal_nan=True)
        # metatensor fills missing gradient entries with fill_value too
        assert np.array_equal(
            block.gradient("g").values, theirs_block.gradient("g").values, equal_nan=True
        )


@pytest.mark.slow
def test_keys_to_samples_under_jit():
    ours = from_metatensor(_merge_case()).to(arrays="jax")
    eager = ours.keys_to_samples("k", fill_value=-1.0)
    jitted = jax.jit(lambda t: t.keys_to_samples("k", fill_value=-1.0))(ours)
    for a, b in zip(jax.tree_util.tree_leaves(eager), jax.tree_util.tree_leaves(jitted)):
        assert np.array_equal(a, b)


def _components_block() -> metatensor.TensorMap:
    values = np.arange(2 * 3 * 4 * 5 * 2, dtype=float).reshape(2, 3, 4, 5, 2)
    components = [
        metatensor.Labels(["a"], np.array([[1], [0], [2]])),
        metatensor.Labels(["b"], np.array([[4], [3], [2], [1]])),
        metatensor.Labels.range("c", 5),
    ]
    block = metatensor.TensorBlock(
        values,
        metatensor.Labels.range("s", 2),
        components,
        metatensor.Labels(["p"], np.array([[7], [3]])),
    )
    block.add_gradient(
        "g",
        metatensor.TensorBlock(
            np.arange(3 * 2 * 3 * 4 * 5 * 2, dtype=float).reshape(3, 2, 3, 4, 5, 2),
            metatensor.Labels(["sample", "z"], np.array([[0, 0], [1, 0], [1, 1]])),
            [metatensor.Labels.range("x", 2), *components],
            block.properties,
        ),
    )
    tensor = metatensor.TensorMap(metatensor.Labels.range("k", 1), [block])
    tensor.set_info("origin", "test")
    return tensor


def _moved_by_numpy(values, names, components, properties, moving):
    """Move each component of ``moving`` in turn to the front of the properties."""
    for name in moving:
        axis = 1 + names.index(name)
        last = values.ndim - 1
        kept = [a for a in range(last) if a != axis]
        values = np.transpose(values, [*kept, axis, last]).reshape(
            *[values.shape[a] for a in kept], -1
        )
        entries = components[axis - 1]
        properties = np.array([[e, *p] for e in entries for p in properties])
        components = [c for i, c in enumerate(components) if i != axis - 1]
        names = [n for n in names if n != name]
    return values, properties


@pytest.mark.parametrize("moving", [["c"], "b", ["b", "a"], ["c", "a", "b"], ["a"], ["a", "c"]])
def test_components_to_properties_order_like_metatensor(moving):
    theirs = _components_block()
    ours = from_metatensor(theirs)
    ours.set_info("origin", "test")
    result, expected = (
        ours.components_to_properties(moving),
        theirs.components_to_properties(moving),
    )
    block, theirs_block = result.block(0), expected.block(0)
    assert result.info() == expected.info() == {"origin": "test"}
    # metatensor's property order: each moved dimension goes to the front, in turn
    assert block.properties == labels_from_metatensor(theirs_block.properties)
    assert [c.names for c in block.components] == [c.names for c in theirs_block.components]
    names = ["a", "b", "c"]
    components = [np.asarray(c.values)[:, 0] for c in theirs.block(0).components]
    source = theirs.block(0)
    moving_list = [moving] if isinstance(moving, str) else moving
    values, properties = _moved_by_numpy(
        np.asarray(source.values),
        names,
        components,
        np.asarray(source.properties.values),
        moving_list,
    )
    assert np.array_equal(block.values, values) and np.array_equal(
        block.properties.values, properties
    )
    g_values, _ = _moved_by_numpy(
        np.asarray(source.gradient("g").values).reshape(3 * 2, 3, 4, 5, 2),
        names,
        components,
        np.asarray(source.properties.values),
        moving_list,
    )
    assert np.array_equal(block.gradient("g").values, g_values.reshape(3, 2, *g_values.shape[1:]))
    if moving_list in (["c"], ["b"], ["b", "a"], ["c", "a", "b"]):
        # where metatensor-core places the values right (see components_to_properties)
        assert np.array_equal(block.values, theirs_block.values)
        assert np.array_equal(block.gradient("g").values, theirs_block.gradient("g").values)


def test_info_is_kept_where_metatensor_keeps_it():
    theirs, ours = _both()
    theirs.set_info("origin", "test")
    ours.set_info("origin", "test")
    kept = {
        "copy": (ours.copy(), theirs.copy()),
        "to": (ours.to(dtype=np.float32), theirs.to(dtype=np.float32)),
        "keys_to_samples": (ours.keys_to_samples("a"), theirs.keys_to_samples("a")),
        "keys_to_properties": (ours.keys_to_properties("a"), theirs.keys_to_properties("a")),
        "components_to_properties": (
            ours.components_to_properties("o3_mu"),
            theirs.components_to_properties("o3_mu"),
        ),
    }
    for name, (a, b) in kept.items():
        assert a.info() == b.info() == {"origin": "test"}, name
    # metatensor-operations 0.5 returns new TensorMaps without info, whatever the keys
    dropped = {
        "add": (eqt.add(ours, 1.0), mto.add(theirs, 1.0)),
        "slice": (
            eqt.slice(ours, "samples", Labels(["atom"], np.array([[0]]))),
            mto.slice(theirs, "samples", metatensor.Labels(["atom"], np.array([[0]]))),
        ),
        "remove_gradients": (eqt.remove_gradients(ours), mto.remove_gradients(theirs)),
    }
    for name, (a, b) in dropped.items():
        assert a.info() == b.info() == {}, name


# --------------------------------------------------------------------------- 7. set_info
def test_set_info_after_jax_transformations():
    _, ours = _both(n_blocks=1)
    tensor = ours.to(arrays="jax")
    tensor.set_info("origin", "test")
    optimizer = optax.sgd(0.1)
    gradients = jax.grad(lambda t: sum(jnp.sum(b.values**2) for b in t))(tensor)
    updates, _ = optimizer.update(gradients, optimizer.init(tensor), tensor)
    results = {
        "jit": jax.jit(lambda t: t)(tensor),
        "tree.map": jax.tree.map(lambda x: x + 1, tensor),
        "grad": gradients,
        "optax": optax.apply_updates(tensor, updates),
    }
    for name, result in results.items():
        result.set_info("step", name)
        assert result.info() == {"origin": "test", "step": name}, name
        # the next accesses work: blocks, printing, flattening, jit, files
        assert [b.values.shape for b in result] == [b.values.shape for b in tensor], name
        assert result.block(a=0).gradient("positions").values.shape == (2, 3, 3, 2)
        assert eqt.equal_metadata(result, tensor)
        assert repr(result) == repr(tensor)
        again = jax.jit(lambda t: t)(result)
        assert again.info() == {"origin": "test", "step": name}
        assert eqt.load_buffer(eqt.save_buffer(result)).info() == result.info()
        assert jax.tree_util.tree_structure(result) != jax.tree_util.tree_structure(tensor)


# --------------------------------------------------------------------------- 8. exact divisions
def _numpy_tensor(dtype) -> tuple[metatensor.TensorMap, TensorMap]:
    theirs = _mts_tensor(dtype, seed=3)
    return theirs, from_metatensor(theirs)


def _bit_equal(ours: TensorMap, theirs: metatensor.TensorMap) -> None:
    for block, theirs_block in zip(ours, theirs):
        assert np.array_equal(np.asarray(block.values), theirs_block.values)
        for parameter, gradient in block.gradients():
            assert np.array_equal(
                np.asarray(gradient.values), theirs_block.gradient(parameter).values
            ), parameter


@pytest.mark.parametrize("divisor", [3.0, 7, 0.1])
def test_divide_by_a_scalar_is_numpys_division(divisor):
    theirs, ours = _numpy_tensor(FLOAT)
    expected = mto.divide(theirs, divisor)
    _bit_equal(eqt.divide(ours, divisor), expected)
    _bit_equal(ours / divisor, expected)
    _bit_equal(user_jit(lambda t: t / divisor)(ours.to(arrays="jax")), expected)
    # a traced divisor too
    _bit_equal(user_jit(eqt.divide)(ours, jnp.asarray(divisor, FLOAT)), expected)


def test_divide_tensors_with_gradients_is_numpys():
    theirs, ours = _numpy_tensor(FLOAT)
    other_theirs = mto.add(mto.abs(_mts_tensor(FLOAT, seed=4)), 1.0)
    other = from_metatensor(other_theirs)
    expected = mto.divide(theirs, other_theirs)
    _bit_equal(eqt.divide(ours, other), expected)
    _bit_equal(user_jit(lambda a, b: a / b)(ours, other), expected)


@pytest.mark.parametrize("reduction", ["mean", "var", "sum"])
def test_means_over_properties_are_numpys(reduction):
    # no components: metatensor-operations 0.5 is right there (see reduce_over_properties)
    theirs = mto.remove_gradients(metatensor.load(str(data_path("radial-spectrum.mts"))))
    keys = metatensor.Labels(theirs.keys.names, np.asarray(theirs.keys.values)[2:4])
    theirs = metatensor.TensorMap(keys, [theirs.block(i).to(dtype=FLOAT) for i in (2, 3)])
    ours = from_metatensor(theirs)
    name = theirs.property_names[0]
    function = getattr(eqt, f"{reduction}_over_properties")
    expected = getattr(mto, f"{reduction}_over_properties")(theirs, name)
    _bit_equal(function(ours, name), expected)
    _bit_equal(user_jit(lambda t: function(t, name))(ours), expected)


@pytest.mark.parametrize("jit", [False, True])
def test_means_are_numpys_mean(jit):
    # groups of 3 and 5 properties (NumPy sums fewer than 8 numbers in order), and
    # components, where the counts are broadcast along several axes
    rng = np.random.default_rng(7)
    values = rng.normal(size=(4, 3, 15)).astype(FLOAT)
    grid = np.array([[i, j] for i in range(3) for j in range(5)])
    block = TensorBlock(
        values, Labels.range("s", 4), [Labels.range("c", 3)], Labels(["i", "j"], grid)
    )
    tensor = TensorMap(Labels.range("k", 1), [block])
    for name, axis in (("j", -1), ("i", -2)):

        def function(t: TensorMap, name: str = name) -> TensorMap:
            return eqt.mean_over_properties(t, name)

        result = (user_jit(function) if jit else function)(tensor).block(0).values
        expected = np.mean(values.reshape(4, 3, 3, 5), axis=axis)
        assert np.array_equal(np.asarray(result), expected), name


# --------------------------------------------------------------------------- 9. float64 warning
@pytest.mark.x32_only
def test_float64_data_warns_when_x64_is_off():
    _, ours = _both()
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        with pytest.warns(UserWarning, match="jax_enable_x64 is off") as record:
            result = eqt.add(ours, 1.0)
    assert result.block(0).values.dtype == np.float32
    assert "jax.config.update('jax_enable_x64', True)" in str(record[0].message)
    for convert in (lambda: ours.to(arrays="jax"), lambda: eqt.mean_over_properties(ours, "n")):
        with pytest.warns(UserWarning, match="float64 NumPy data is converted to float32"):
            convert()
    # float32 data, and data already in JAX, convert silently
    single = ours.to(dtype=np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        eqt.add(single, 1.0)
        eqt.multiply(single.to(arrays="jax"), 2.0)


@pytest.mark.x64_only
def test_no_float64_warning_with_x64():
    _, ours = _both()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert eqt.add(ours, 1.0).block(0).values.dtype == np.float64
        ours.to(arrays="jax")


@pytest.mark.x32_only
def test_float64_warning_is_shown_once_per_process():
    # a fixed message issued from one line: the default filter shows it once
    from eqx_tensor import _backend

    array = np.zeros(3)
    with warnings.catch_warnings(record=True) as record:
        warnings.resetwarnings()
        warnings.simplefilter("default")
        registry = getattr(_backend, "__warningregistry__", {})
        registry.clear()
        for _ in range(3):
            _backend.warn_if_downcast(array)
            _backend.warn_if_downcast({"nested": [array]})
        _backend.warn_if_downcast(np.zeros(3, np.float32))
    assert len(record) == 1 and "jax_enable_x64" in str(record[0].message)


# --------------------------------------------------------------------------- 10. errors
def test_error_types_and_messages_name_the_culprit():
    theirs, ours = _both()
    smaller = eqt.drop_blocks(ours, Labels(["a"], np.array([[0]])))
    smaller_theirs = mto.drop_blocks(theirs, metatensor.Labels(["a"], np.array([[0]])))
    sliced = eqt.slice(ours, "samples", Labels(["atom"], np.array([[0]])))
    sliced_theirs = mto.slice(theirs, "samples", metatensor.Labels(["atom"], np.array([[0]])))
    renamed = eqt.rename_dimension(ours, "samples", "atom", "x")
    renamed_theirs = mto.rename_dimension(theirs, "samples", "atom", "x")
    cases = [
        # (ours, metatensor's, what our message must name)
        (
            lambda: eqt.add(ours, smaller),
            lambda: mto.add(theirs, smaller_theirs),
            ["'add'", "blocks"],
        ),
        (
            lambda: eqt.add(ours, sliced),
            lambda: mto.add(theirs, sliced_theirs),
            ["'add'", "samples", "(a=0, b=0)"],
        ),
        (
            lambda: eqt.join([ours, renamed], axis="samples"),
            lambda: mto.join([theirs, renamed_theirs], axis="samples"),
            ["`join`", "'x'"],
        ),
        (
            lambda: eqt.join([ours, ours], axis="foo"),
            lambda: mto.join([theirs, theirs], axis="foo"),
            ["'join'", "'foo'"],
        ),
        (
            lambda: eqt.slice(ours, "samples", Labels(["foo"], np.array([[0]]))),
            lambda: mto.slice(theirs, "samples", metatensor.Labels(["foo"], np.array([[0]]))),
            ["'slice'", "'foo'", "['system', 'atom']"],
        ),
        (
            lambda: eqt.slice(ours, "foo", Labels(["atom"], np.array([[0]]))),
            lambda: mto.slice(theirs, "foo", metatensor.Labels(["atom"], np.array([[0]]))),
            ["'slice'", "'foo'"],
        ),
        (lambda: ours.block(a=9), lambda: theirs.block(a=9), ["(a=9)"]),
        (lambda: ours.block(b=0), lambda: theirs.block(b=0), ["(b=0)", "2 blocks"]),
        (lambda: eqt.pow(ours, ours), lambda: mto.pow(theirs, theirs), ["`B`", "'pow'"]),
        (
            lambda: eqt.sum_over_samples(ours, "foo"),
            lambda: mto.sum_over_samples(theirs, "foo"),
            ["'foo'", "'sum_over_samples'"],
        ),
        (
            lambda: TensorBlock(np.zeros((3, 2)), Labels.range("s", 2), [], Labels.range("p", 2)),
            lambda: metatensor.TensorBlock(
                np.zeros((3, 2)),
                metatensor.Labels.range("s", 2),
                [],
                metatensor.Labels.range("p", 2),
            ),
            ["axis 0", "samples", "3", "2 entries"],
        ),
    ]
    for ours_call, theirs_call, names in cases:
        our_kind, message = _outcome(ours_call)
        kind, theirs_message = _outcome(theirs_call)
        assert our_kind != "ok" and kind != "ok", names
        if kind is metatensor.MetatensorError:
            # metatensor-core's own error for invalid parameters: ours is a ValueError
            assert issubclass(our_kind, ValueError), message
        else:  # the same type (NotEqualError is each library's own)
            assert our_kind.__name__ == kind.__name__, (message, theirs_message)
        for name in names:
            assert name in message, (name, message)
    # the filter and constructor misuses
    with pytest.raises(ValueError, match="'foo' in the keys given to 'filter_blocks'"):
        eqt.filter_blocks(ours, Labels(["foo"], np.array([[0]])))
    with pytest.raises(ValueError, match="TensorMap: got 2 blocks for 3 keys"):
        TensorMap(ours.keys, [b.copy() for b in ours.blocks()[:2]])
    with pytest.raises(TypeError, match="`keys` must be metatensor Labels"):
        TensorMap([0, 1], [])
    with pytest.raises(
        ValueError, match=r"same sample names: block 1 \(.*\) has \['system', 'x'\]"
    ):
        TensorMap(Labels.range("k", 2), [ours.block(0).copy(), renamed.block(1).copy()])
