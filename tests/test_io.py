"""Reading and writing metatensor's .mts files, cross-checked against metatensor-core."""

from __future__ import annotations

import io
import pickle
import struct
import warnings
import zipfile

import jax
import jax.numpy as jnp
import metatensor
import metatensor.io
import numpy as np
import pytest
from conftest import data_path
from helpers import assert_block_equal, assert_labels_equal

import eqx_tensor as eqt
from eqx_tensor.io import (
    FileFormatError,
    load,
    load_block,
    load_block_buffer,
    load_buffer,
    load_labels,
    load_labels_buffer,
    save,
    save_block,
    save_block_buffer,
    save_buffer,
    save_labels,
    save_labels_buffer,
)

# bytes, NumPy arrays and metadata: JAX arrays are only converted to NumPy on save, so the
# float32 run (which would test the same bytes) skips this module
pytestmark = pytest.mark.x64_only

TENSOR_FILES = [
    "spherical-expansion.mts",
    "radial-spectrum.mts",
    "qm7-spherical-expansion.mts",
    "qm7-power-spectrum.mts",
    "core-data.mts",
]

ALL_DTYPES = [
    np.float64,
    np.float32,
    np.float16,
    np.int8,
    np.int16,
    np.int32,
    np.int64,
    np.uint8,
    np.uint16,
    np.uint32,
    np.uint64,
    np.bool_,
    np.complex64,
    np.complex128,
]


# --------------------------------------------------------------------------- comparisons
def _assert_block_same(ours: eqt.TensorBlock, theirs, what: str = "block") -> None:
    """Metadata, dtype and values exactly equal; gradients compared by parameter.

    metatensor-core loads gradients in an unspecified (hash set) order, so the parameter
    lists are compared as sets here; our own order is checked against the file separately.
    """
    assert_labels_equal(ours.samples, theirs.samples, f"{what} samples")
    assert len(ours.components) == len(theirs.components), f"{what} number of components"
    for i, (a, b) in enumerate(zip(ours.components, theirs.components)):
        assert_labels_equal(a, b, f"{what} components[{i}]")
    assert_labels_equal(ours.properties, theirs.properties, f"{what} properties")
    assert isinstance(ours.values, np.ndarray), f"{what} values are {type(ours.values)}"
    assert ours.values.dtype == np.asarray(theirs.values).dtype, f"{what} dtype"
    np.testing.assert_array_equal(ours.values, np.asarray(theirs.values), err_msg=what)
    assert sorted(ours.gradients_list()) == sorted(theirs.gradients_list()), what
    for parameter in theirs.gradients_list():
        gradient = ours.gradient(parameter)
        assert isinstance(gradient.values, np.ndarray)
        assert gradient.values.dtype == np.asarray(theirs.gradient(parameter).values).dtype
        assert_block_equal(gradient, theirs.gradient(parameter), 0, f"{what} gradient {parameter}")


def _assert_tensor_same(ours: eqt.TensorMap, theirs) -> None:
    assert_labels_equal(ours.keys, theirs.keys, "keys")
    assert len(ours) == len(theirs)
    for i, (a, b) in enumerate(zip(ours.blocks(), theirs.blocks())):
        _assert_block_same(a, b, f"block {i}")
    assert ours.info() == dict(theirs.info())


def _assert_ours_equal(a: eqt.TensorMap, b: eqt.TensorMap, gradient_order: bool = False) -> None:
    """Two of our TensorMaps are identical (gradient order too if asked: files keep them sorted,
    as metatensor writes them)."""
    assert a.keys == b.keys
    assert a.info() == b.info()
    for block_a, block_b in zip(a.blocks(), b.blocks()):
        if gradient_order:
            assert block_a.gradients_list() == block_b.gradients_list()
        else:
            assert sorted(block_a.gradients_list()) == sorted(block_b.gradients_list())
        for x, y in [(block_a, block_b)] + [
            (block_a.gradient(p), block_b.gradient(p)) for p in block_a.gradients_list()
        ]:
            assert x.samples == y.samples and x.components == y.components
            assert x.properties == y.properties
            assert np.asarray(x.values).dtype == np.asarray(y.values).dtype
            np.testing.assert_array_equal(np.asarray(x.values), np.asarray(y.values))


# --------------------------------------------------------------------------- builders
def _labels(names, n, rng, start=0) -> eqt.Labels:
    first = np.arange(start, start + n)
    rest = rng.integers(-5, 5, size=(n, len(names) - 1))
    return eqt.Labels(names, np.column_stack([first, rest]).astype(np.int32))


def _random_tensor(dtype=np.float64, seed=0, info=True) -> eqt.TensorMap:
    """Three blocks with one component axis, gradients in differing orders, and info."""
    rng = np.random.default_rng(seed)
    keys = eqt.Labels(["o3_lambda", "center_type"], np.array([[0, 1], [1, 1], [1, 6]]))
    blocks = []
    for i, (l, _) in enumerate(keys.values):
        n_samples = int(rng.integers(2, 6))
        samples = _labels(["system", "atom"], n_samples, rng)
        components = [eqt.Labels.range("o3_mu", 2 * int(l) + 1)]
        properties = _labels(["n"], 4, rng)
        shape = (n_samples, 2 * int(l) + 1, 4)
        block = eqt.TensorBlock(
            rng.normal(size=shape).astype(dtype), samples, components, properties
        )
        parameters = ["positions", "strain"] if i % 2 == 0 else ["strain", "positions"]
        for parameter in parameters:
            n_extra = 3 if parameter == "positions" else 6
            rows = np.sort(rng.integers(0, n_samples, size=5))
            gradient_samples = eqt.Labels(
                ["sample", "system", "atom"],
                np.column_stack([rows, np.zeros(5, int), np.arange(5)]).astype(np.int32),
            )
            values = rng.normal(size=(5, n_extra, *shape[1:])).astype(dtype)
            xyz = eqt.Labels.range("xyz" if n_extra == 3 else "voigt", n_extra)
            block.add_gradient(
                parameter, eqt.TensorBlock(values, gradient_samples, [xyz, *components], properties)
            )
        blocks.append(block)
    tensor = eqt.TensorMap(keys, blocks)
    if info:
        tensor.set_info("creator", "eqx_tensor tests")
        tensor.set_info("units", "eV, Å")
    return tensor


def _small_block(dtype=np.float64) -> eqt.TensorBlock:
    values = (np.arange(12).reshape(3, 2, 2) % 3).astype(dtype)
    return eqt.TensorBlock(
        values, eqt.Labels.range("s", 3), [eqt.Labels.range("c", 2)], eqt.Labels.range("p", 2)
    )


def _to_metatensor_block(block: eqt.TensorBlock):
    def labels(l):
        return metatensor.Labels(l.names, np.asarray(l.values))

    def convert(b):
        return metatensor.TensorBlock(
            np.asarray(b.values).copy(),
            labels(b.samples),
            [labels(c) for c in b.components],
            labels(b.properties),
        )

    result = convert(block)
    for parameter, gradient in block.gradients():
        result.add_gradient(parameter, convert(gradient))
    return result


def _to_metatensor(tensor: eqt.TensorMap):
    keys = metatensor.Labels(tensor.keys.names, np.asarray(tensor.keys.values))
    result = metatensor.TensorMap(keys, [_to_metatensor_block(b) for b in tensor.blocks()])
    for key, value in tensor.info().items():
        result.set_info(key, value)
    return result


# --------------------------------------------------------------------------- crafting files
def _npy(descr, shape, data: bytes = b"", version=(1, 0), fortran=False, header=None) -> bytes:
    """A hand-made .npy member, so tests can write what a good writer never would."""
    if header is None:
        header = f"{{'descr': {descr!r}, 'fortran_order': {fortran}, 'shape': {shape!r}, }}"
    text = header.encode("utf-8" if version == (3, 0) else "latin1")
    length_format = "<H" if version == (1, 0) else "<I"
    prefix_length = 8 + struct.calcsize(length_format)
    padding = 64 - (prefix_length + len(text) + 1) % 64
    text = text + b" " * padding + b"\n"
    return b"\x93NUMPY" + bytes(version) + struct.pack(length_format, len(text)) + text + data


def _labels_npy(names, values) -> bytes:
    values = np.asarray(values, dtype="<i4").reshape(-1, len(names))
    return _npy([(n, "<i4") for n in names], (len(values),), values.tobytes())


def _members(data: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def _zip(members: dict[str, bytes], compression=zipfile.ZIP_STORED) -> bytes:
    output = io.BytesIO()
    with zipfile.ZipFile(output, "w", compression=compression) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return output.getvalue()


def _simple_members() -> dict[str, bytes]:
    """A valid two-block TensorMap file, as members to tamper with."""
    block = eqt.TensorBlock(
        np.arange(6.0).reshape(3, 2), eqt.Labels.range("s", 3), [], eqt.Labels.range("p", 2)
    )
    gradient = eqt.TensorBlock(
        np.ones((2, 3, 2)),
        eqt.Labels(["sample", "atom"], np.array([[0, 0], [2, 1]])),
        [eqt.Labels.range("xyz", 3)],
        eqt.Labels.range("p", 2),
    )
    block.add_gradient("positions", gradient)
    other = eqt.TensorBlock(
        np.zeros((1, 2)), eqt.Labels.range("s", 1), [], eqt.Labels.range("p", 2)
    )
    tensor = eqt.TensorMap(eqt.Labels.range("key", 2), [block, other])
    return _members(save_buffer(tensor))


def _npy_data(member: bytes) -> bytes:
    """The data bytes of a version 1.0 .npy member (after its header)."""
    (length,) = struct.unpack("<H", member[8:10])
    return member[10 + length :]


def _evil_object_npy(flag_path) -> bytes:
    """An object-array .npy whose unpickling would create ``flag_path``."""

    class Evil:
        def __reduce__(self):
            return (open, (str(flag_path), "w"))

    array = np.empty(1, dtype=object)
    array[0] = Evil()
    output = io.BytesIO()
    np.lib.format.write_array(output, array, allow_pickle=True)
    return output.getvalue()


# --------------------------------------------------------------------------- shared files
@pytest.mark.parametrize("name", TENSOR_FILES)
def test_shared_tensor_files_match_metatensor(name):
    path = data_path(name)
    ours = load(path)
    _assert_tensor_same(ours, metatensor.load(str(path)))
    # gradient parameters come in the order of the archive entries
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
    for i, block in enumerate(ours.blocks()):
        prefix = f"blocks/{i}/gradients/"
        in_file = list(
            dict.fromkeys(n[len(prefix) :].split("/")[0] for n in names if n.startswith(prefix))
        )
        assert block.gradients_list() == in_file
        assert block.values.flags.writeable and block.values.flags.c_contiguous


def test_shared_files_use_both_zip_compressions():
    # the loader tests above only cover both methods if the data really has both
    methods = {}
    for name in TENSOR_FILES:
        with zipfile.ZipFile(data_path(name)) as archive:
            methods[name] = {info.compress_type for info in archive.infolist()}
    assert methods["qm7-spherical-expansion.mts"] == {zipfile.ZIP_DEFLATED}
    assert methods["core-data.mts"] == {zipfile.ZIP_STORED}


def test_qm7_gradient_order_differs_between_blocks():
    tensor = load(data_path("qm7-spherical-expansion.mts"))
    orders = {tuple(block.gradients_list()) for block in tensor.blocks()}
    assert orders == {("strain", "positions"), ("positions", "strain")}
    again = load_buffer(save_buffer(tensor))
    # written in sorted order, as metatensor writes them (the files stay byte-identical)
    assert [b.gradients_list() for b in again] == [sorted(b.gradients_list()) for b in tensor]


def test_shared_block_file_matches_metatensor():
    path = data_path("core-block.mts")
    ours = load_block(path)
    _assert_block_same(ours, metatensor.load_block(str(path)))
    assert ours.gradients_list() == ["positions"]


def test_shared_labels_file_matches_metatensor():
    path = data_path("core-keys.mts")
    ours = load_labels(path)
    assert_labels_equal(ours, metatensor.load_labels(str(path)))
    assert ours.names == ["o3_lambda", "o3_sigma", "center_type", "neighbor_type"]
    assert len(ours) == 27


@pytest.mark.parametrize("name", TENSOR_FILES)
@pytest.mark.parametrize("compress", [False, True])
def test_resaved_shared_files_load_in_metatensor(name, compress):
    original = metatensor.load(str(data_path(name)))
    data = save_buffer(load(data_path(name)), compress=compress)
    _assert_tensor_same(load_buffer(data), original)
    theirs = metatensor.io.load_buffer(data)
    assert metatensor.equal(theirs, original)
    expected = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        assert {info.compress_type for info in archive.infolist()} == {expected}


def test_resaved_shared_block_and_labels_load_in_metatensor():
    block = load_block(data_path("core-block.mts"))
    for compress in (False, True):
        data = save_block_buffer(block, compress=compress)
        _assert_block_same(
            load_block_buffer(data), metatensor.load_block(str(data_path("core-block.mts")))
        )
        theirs = metatensor.io.load_block_buffer(data)
        _assert_block_same(block, theirs)
    labels = load_labels(data_path("core-keys.mts"))
    data = save_labels_buffer(labels)
    assert_labels_equal(labels, metatensor.io.load_labels_buffer(data))
    assert load_labels_buffer(data) == labels
    # labels files are bare .npy arrays; ours is the same array as metatensor's
    assert np.array_equal(
        np.load(io.BytesIO(data), allow_pickle=False),
        np.load(data_path("core-keys.mts"), allow_pickle=False),
    )


# --------------------------------------------------------------------------- round trips
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_random_tensor_round_trips(tmp_path, dtype):
    tensor = _random_tensor(dtype)
    path = tmp_path / "random.mts"
    save(path, tensor)
    # ours -> metatensor
    theirs = metatensor.load(str(path))
    _assert_tensor_same(tensor, theirs)
    assert dict(theirs.info()) == {"creator": "eqx_tensor tests", "units": "eV, Å"}
    # ours -> ours, from the path and from the bytes
    _assert_ours_equal(load(path), tensor)
    _assert_ours_equal(load_buffer(path.read_bytes()), tensor)
    assert save_buffer(tensor) == path.read_bytes()
    # metatensor -> ours (metatensor writes gradients in its own order)
    from_theirs = bytes(metatensor.io.save_buffer(_to_metatensor(tensor)))
    _assert_ours_equal(load_buffer(from_theirs), tensor, gradient_order=False)
    _assert_tensor_same(load_buffer(from_theirs), metatensor.io.load_buffer(from_theirs))


def test_round_trip_without_info_writes_no_info_entry():
    tensor = _random_tensor(info=False)
    data = save_buffer(tensor)
    assert "info.json" not in _members(data)
    assert load_buffer(data).info() == {}
    tensor.set_info("note", "x")
    assert "info.json" in _members(save_buffer(tensor))


@pytest.mark.parametrize("dtype", ALL_DTYPES, ids=lambda d: np.dtype(d).name)
def test_every_metatensor_dtype_round_trips(dtype):
    block = _small_block(dtype)
    data = save_block_buffer(block)
    ours = load_block_buffer(data)
    theirs = metatensor.io.load_block_buffer(data)
    for values in (ours.values, np.asarray(theirs.values)):
        assert values.dtype == dtype
        np.testing.assert_array_equal(values, block.values)
    mts_block = metatensor.TensorBlock(
        np.asarray(block.values),
        metatensor.Labels.range("s", 3),
        [metatensor.Labels.range("c", 2)],
        metatensor.Labels.range("p", 2),
    )
    from_theirs = load_block_buffer(bytes(metatensor.io.save_buffer(mts_block)))
    assert from_theirs.values.dtype == dtype
    np.testing.assert_array_equal(from_theirs.values, block.values)


def test_npy_headers_are_what_metatensor_reads():
    block = _small_block(np.int8)
    block.add_gradient(
        "g",
        eqt.TensorBlock(
            np.zeros((1, 3, 2, 2), np.int8),
            eqt.Labels(["sample"], np.array([[0]])),
            [eqt.Labels.range("x", 3), eqt.Labels.range("c", 2)],
            eqt.Labels.range("p", 2),
        ),
    )
    members = _members(save_block_buffer(block))
    assert list(members) == [
        "values.npy",
        "samples.npy",
        "components/0.npy",
        "properties.npy",
        "gradients/g/values.npy",
        "gradients/g/samples.npy",
        "gradients/g/components/0.npy",
        "gradients/g/components/1.npy",
    ]
    for name, data in members.items():
        assert data[:8] == b"\x93NUMPY\x01\x00", name
        (length,) = struct.unpack("<H", data[8:10])
        assert (10 + length) % 64 == 0, name
        header = data[10 : 10 + length].decode("latin1")
        assert "'fortran_order': False" in header and "|" not in header, header
    assert "'descr': '<i1'" in members["values.npy"][:128].decode("latin1")
    assert "[('s', '<i4'), ]" in members["samples.npy"][:128].decode("latin1")


def test_save_is_deterministic_and_uses_fixed_timestamps():
    tensor = _random_tensor()
    assert save_buffer(tensor) == save_buffer(tensor)
    with zipfile.ZipFile(io.BytesIO(save_buffer(tensor))) as archive:
        assert {info.date_time for info in archive.infolist()} == {(2000, 1, 1, 0, 0, 0)}


def test_save_dispatches_on_type(tmp_path):
    tensor = _random_tensor()
    block = tensor.block(0)
    labels = tensor.keys
    save(tmp_path / "t.mts", tensor)
    save(tmp_path / "b.mts", block)
    save(tmp_path / "l.mts", labels)
    _assert_tensor_same(tensor, metatensor.load(str(tmp_path / "t.mts")))
    _assert_block_same(block, metatensor.load_block(str(tmp_path / "b.mts")))
    assert_labels_equal(labels, metatensor.load_labels(str(tmp_path / "l.mts")))
    assert save_buffer(block) == save_block_buffer(block) == (tmp_path / "b.mts").read_bytes()
    assert save_buffer(labels) == save_labels_buffer(labels) == (tmp_path / "l.mts").read_bytes()
    save_block(tmp_path / "b2.mts", block)
    save_labels(str(tmp_path / "l2.mts"), labels)
    assert (tmp_path / "b2.mts").read_bytes() == (tmp_path / "b.mts").read_bytes()
    assert load_labels(tmp_path / "l2.mts") == labels
    with pytest.raises(TypeError, match="TensorMap, TensorBlock or Labels"):
        save(tmp_path / "x.mts", np.zeros(3))
    with pytest.raises(TypeError, match="TensorMap, TensorBlock or Labels"):
        save_buffer({"a": 1})
    with pytest.raises(TypeError, match="save_block expects a TensorBlock"):
        save_block(tmp_path / "x.mts", tensor)
    with pytest.raises(TypeError, match="save_labels expects a Labels"):
        save_labels(tmp_path / "x.mts", block)


def test_save_and_load_methods_like_metatensor(tmp_path):
    tensor = _random_tensor()
    block = tensor.block(0)
    labels = tensor.keys
    tensor.save(tmp_path / "t.mts")
    block.save(tmp_path / "b.mts", compress=True)
    labels.save(tmp_path / "l.mts")
    # the methods write what metatensor reads, and read it back as the right type
    _assert_tensor_same(tensor, metatensor.TensorMap.load(str(tmp_path / "t.mts")))
    _assert_block_same(block, metatensor.TensorBlock.load(str(tmp_path / "b.mts")))
    assert_labels_equal(labels, metatensor.Labels.load(str(tmp_path / "l.mts")))
    assert eqt.equal(eqt.TensorMap.load(tmp_path / "t.mts"), tensor)
    assert eqt.equal_block(eqt.TensorBlock.load(tmp_path / "b.mts"), block)
    assert eqt.Labels.load(tmp_path / "l.mts") == labels
    assert tensor.save_buffer() == save_buffer(tensor)
    assert eqt.equal(eqt.TensorMap.load_buffer(tensor.save_buffer()), tensor)
    assert eqt.equal_block(eqt.TensorBlock.load_buffer(block.save_buffer()), block)
    assert eqt.Labels.load_buffer(labels.save_buffer()) == labels
    with pytest.raises(ValueError):
        eqt.TensorMap.load(tmp_path / "l.mts")  # a labels file is not a TensorMap


@pytest.mark.parametrize("kind", ["str", "path"])
def test_mts_extension_is_appended_like_metatensor(tmp_path, kind):
    labels = eqt.Labels.range("a", 2)
    for stem in ["plain", "other.npz"]:
        target = tmp_path / stem
        with pytest.warns(UserWarning, match=r"adding '\.mts' extension"):
            save(str(target) if kind == "str" else target, labels)
        assert not target.exists()
        assert load_labels(tmp_path / f"{stem}.mts") == labels
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        save(tmp_path / "kept.mts", labels)
    assert (tmp_path / "kept.mts").exists()
    # metatensor itself does the same
    with pytest.warns(UserWarning, match=r"adding '\.mts' extension"):
        metatensor.save(str(tmp_path / "theirs"), metatensor.Labels.range("a", 2))
    assert (tmp_path / "theirs.mts").exists()


def test_file_objects(tmp_path):
    tensor = _random_tensor()
    output = io.BytesIO()
    save(output, tensor)
    assert output.getvalue() == save_buffer(tensor)
    output.seek(0)
    _assert_ours_equal(load(output), tensor)
    with open(tmp_path / "f.mts", "wb") as f:
        save_block(f, tensor.block(1))
    with open(tmp_path / "f.mts", "rb") as f:
        block = load_block(f)
    assert block.gradients_list() == sorted(tensor.block(1).gradients_list())
    output = io.BytesIO()
    save_labels(output, tensor.keys)
    assert load_labels(io.BytesIO(output.getvalue())) == tensor.keys
    with pytest.raises(TypeError, match="path"):
        load(12)
    with pytest.raises(TypeError, match="bytes"):
        load_buffer(str(tmp_path / "f.mts"))


def test_jax_values_and_dynamic_samples_are_saved_as_numpy():
    tensor = _random_tensor()
    as_jax = jax.tree_util.tree_map(jnp.asarray, tensor)
    assert isinstance(as_jax.block(0).values, jax.Array)
    loaded = load_buffer(save_buffer(as_jax))
    assert isinstance(loaded.block(0).values, np.ndarray)
    _assert_ours_equal(loaded, tensor)

    block = _small_block()
    dynamic = eqt.TensorBlock(
        block.values, block.samples.to_dynamic(), block.components, block.properties
    )
    assert dynamic.samples.is_dynamic
    loaded = load_block_buffer(save_block_buffer(dynamic))
    assert not loaded.samples.is_dynamic and loaded.samples == block.samples


def test_saving_traced_values_is_refused():
    tensor = _random_tensor()

    @jax.jit
    def save_inside(t):
        save_buffer(t)
        return t

    with pytest.raises(TypeError, match="traced"):
        save_inside(tensor)


def test_unsupported_dtypes_are_refused_on_save():
    block = eqt.TensorBlock(
        jnp.ones((3, 2), jnp.bfloat16), eqt.Labels.range("s", 3), [], eqt.Labels.range("p", 2)
    )
    with pytest.raises(TypeError, match="bfloat16"):
        save_block_buffer(block)


def test_info_with_nul_is_refused():
    tensor = _random_tensor(info=False)
    tensor.set_info("bad", "a\0b")
    with pytest.raises(ValueError, match="NUL"):
        save_buffer(tensor)


def test_zero_dimension_labels():
    for count in (0, 1, 3):
        labels = eqt.Labels([], np.zeros((count, 0), dtype=np.int32))
        data = save_labels_buffer(labels)
        # metatensor's layout ('descr': []) with the real count as the shape
        assert b"'descr': []" in data and f"'shape': ({count}, )".encode() in data
        assert data.endswith(b"\n") and len(data) == 64 * ((len(data) + 63) // 64)
        back = load_labels_buffer(data)
        assert back.names == [] and back.values.shape == (count, 0)
    # metatensor writes the same descr, with shape (0,) whatever the count; we read it too
    theirs = bytes(metatensor.io.save_buffer(metatensor.Labels([], np.zeros((0, 0), np.int32))))
    assert load_labels_buffer(theirs).values.shape == (0, 0)


def test_empty_tensor_and_empty_labels():
    tensor = eqt.TensorMap(eqt.Labels.empty(["a", "b"]), [])
    data = save_buffer(tensor)
    assert list(_members(data)) == ["keys.npy"]
    assert len(load_buffer(data)) == 0 and load_buffer(data).keys.names == ["a", "b"]
    assert len(metatensor.io.load_buffer(data)) == 0
    block = eqt.TensorBlock(np.zeros((0, 2)), eqt.Labels.empty(["s"]), [], eqt.Labels.range("p", 2))
    _assert_block_same(
        load_block_buffer(save_block_buffer(block)),
        metatensor.io.load_block_buffer(save_block_buffer(block)),
    )


# --------------------------------------------------------------------------- lenient reading
def test_reads_big_endian_fortran_and_newer_npy_versions():
    values = np.arange(24.0).reshape(3, 4, 2)
    members = {
        "values.npy": _npy(
            ">f8", (3, 4, 2), values.astype(">f8").tobytes(order="F"), fortran=True, version=(2, 0)
        ),
        "samples.npy": _npy(
            [("s", ">i4")], (3,), np.arange(3, dtype=">i4").tobytes(), version=(3, 0)
        ),
        "components/0.npy": _labels_npy(["c"], np.arange(4)),
        "properties.npy": _labels_npy(["p"], [5, 7]),
    }
    block = load_block_buffer(_zip(members))
    assert block.values.dtype == np.float64 and block.values.dtype.isnative
    assert block.values.flags.c_contiguous
    np.testing.assert_array_equal(block.values, values)
    assert block.samples == eqt.Labels.range("s", 3)
    assert np.array_equal(block.properties.values, [[5], [7]])

    members["values.npy"] = _npy("|i1", (3, 4, 2), np.ones(24, np.int8).tobytes())
    block = load_block_buffer(_zip(members, zipfile.ZIP_DEFLATED))
    assert block.values.dtype == np.int8 and block.values.sum() == 24


# --------------------------------------------------------------------------- bad files
def test_truncated_files_raise():
    data = data_path("core-data.mts").read_bytes()
    for cut in (10, len(data) // 2, len(data) - 10):
        with pytest.raises(FileFormatError, match="not a valid zip archive"):
            load_buffer(data[:cut])
    with pytest.raises(FileFormatError, match="not a valid zip archive"):
        load_buffer(b"")
    labels = data_path("core-keys.mts").read_bytes()
    for cut in (5, 100, len(labels) - 3):
        with pytest.raises(FileFormatError, match="truncated"):
            load_labels_buffer(labels[:cut])


def test_truncated_and_oversized_members_raise():
    members = _simple_members()
    good = members["blocks/0/values.npy"]
    members["blocks/0/values.npy"] = good[:-8]
    with pytest.raises(FileFormatError, match=r"'blocks/0/values.npy' is truncated"):
        load_buffer(_zip(members))
    members["blocks/0/values.npy"] = good + b"\0" * 8
    with pytest.raises(FileFormatError, match=r"'blocks/0/values.npy' has 8 extra bytes"):
        load_buffer(_zip(members))
    # a shape far larger than the entry is refused before allocating memory for it
    members["blocks/0/values.npy"] = _npy("<f8", (10**12, 10**6), b"\0" * 16)
    with pytest.raises(FileFormatError, match="truncated"):
        load_buffer(_zip(members))


def test_corrupt_archives_raise():
    data = bytearray(data_path("core-data.mts").read_bytes())
    with zipfile.ZipFile(io.BytesIO(bytes(data))) as archive:
        info = archive.getinfo("blocks/3/values.npy")
    # past the local header and the .npy header, into the stored array data
    offset = info.header_offset + 30 + len(info.filename) + len(info.extra) + 200
    data[offset] ^= 0xFF
    with pytest.raises(FileFormatError, match="CRC"):
        load_buffer(bytes(data))

    deflated = bytearray(data_path("qm7-power-spectrum.mts").read_bytes())
    with zipfile.ZipFile(io.BytesIO(bytes(deflated))) as archive:
        info = archive.getinfo("blocks/0/values.npy")
    start = info.header_offset + 30 + len(info.filename) + len(info.extra)
    deflated[start + 100 : start + 400] = bytes(300)
    with pytest.raises(FileFormatError, match=r"cannot read|CRC|truncated"):
        load_buffer(bytes(deflated))

    with pytest.raises(FileFormatError, match="not a valid zip"):
        load_buffer(np.random.default_rng(0).bytes(5000))


def test_bad_npy_headers_raise():
    members = _simple_members()
    good_values = members["blocks/0/values.npy"]
    cases = {
        "not a .npy array": b"\x93NOTPY" + good_values[6:],
        r"version 4\.0": good_values[:6] + b"\x04\x00" + good_values[8:],
        "unparsable": _npy(None, None, header="{'descr': '<f8', 'shape': (3, 2"),
        "invalid .npy header": _npy(None, None, header="{'descr': '<f8', 'shape': (3, 2)}"),
        "invalid shape": _npy("<f8", (3, -2)),
        "invalid fortran_order": _npy(
            None, None, header=("{'descr': '<f8', 'fortran_order': 1, 'shape': (3, 2)}")
        ),
        "unknown dtype": _npy("<q9", (3, 2)),
        "unsupported dtype": _npy("<U3", (3, 2), b"\0" * 72),
        "structured array": _npy([("a", "<f8")], (3, 2), b"\0" * 48),
        "2 axes": _npy("<f8", (3,), b"\0" * 24),
    }
    for message, member in cases.items():
        members["blocks/0/values.npy"] = member
        with pytest.raises(FileFormatError, match=message):
            load_buffer(_zip(members))
        with pytest.raises(ValueError):  # FileFormatError is a ValueError
            load_buffer(_zip(members))


def test_wrong_labels_dtypes_raise():
    members = _simple_members()
    cases = {
        r"dimension 's' has dtype '<f8', expected int32": _npy([("s", "<f8")], (3,), b"\0" * 24),
        r"dimension 's' has dtype '<i8'": _npy([("s", "<i8")], (3,), b"\0" * 24),
        r"dimension 's' has dtype '<u4'": _npy([("s", "<u4")], (3,), b"\0" * 12),
        "one int32 field per dimension": _npy("<i4", (3,), b"\0" * 12),
        "must be a 1-D array": _npy([("s", "<i4")], (3, 1), b"\0" * 12),
        "invalid labels field": _npy([("s", "<i4", (2,))], (3,), b"\0" * 24),
        "not a valid identifier": _labels_npy(["1s"], [0, 1, 2]),
        "unique": _labels_npy(["s"], [0, 1, 1]),
    }
    for message, member in cases.items():
        members["blocks/0/samples.npy"] = member
        with pytest.raises(FileFormatError, match=message):
            load_buffer(_zip(members))
    with pytest.raises(FileFormatError, match="expected int32"):
        load_labels_buffer(_npy([("a", "<i4"), ("b", "<f4")], (1,), b"\0" * 8))


def test_object_arrays_never_unpickle(tmp_path):
    # the payload is live: plain unpickling really does create its file
    control = tmp_path / "control"
    pickle.loads(_npy_data(_evil_object_npy(control)))
    assert control.exists()

    flag = tmp_path / "flag"
    evil = _evil_object_npy(flag)
    members = _simple_members()
    for entry in [
        "blocks/0/values.npy",
        "blocks/0/samples.npy",
        "keys.npy",
        "blocks/0/gradients/positions/values.npy",
    ]:
        tampered = dict(members)
        tampered[entry] = evil
        with pytest.raises(FileFormatError, match="pickle"):
            load_buffer(_zip(tampered))
    with pytest.raises(FileFormatError, match="pickle"):
        load_labels_buffer(evil)
    (tmp_path / "evil.mts").write_bytes(evil)
    with pytest.raises(FileFormatError, match="pickle"):
        load_labels(tmp_path / "evil.mts")
    with pytest.raises(FileFormatError, match="pickle"):
        load_block_buffer(_zip({"values.npy": evil}))
    with pytest.raises(FileFormatError, match="int32"):
        load_labels_buffer(_npy([("a", "|O")], (1,), _npy_data(evil)))
    assert not flag.exists()


@pytest.mark.parametrize(
    "missing",
    [
        "keys.npy",
        "blocks/0/values.npy",
        "blocks/0/samples.npy",
        "blocks/0/properties.npy",
        "blocks/1/values.npy",
        "blocks/0/gradients/positions/samples.npy",
        "blocks/0/gradients/positions/components/0.npy",
    ],
)
def test_missing_entries_raise(missing):
    members = _simple_members()
    assert missing in members
    del members[missing]
    with pytest.raises(FileFormatError, match=f"has no entry '{missing}'"):
        load_buffer(_zip(members))


def test_missing_component_entry_in_block_file():
    members = _members(save_block_buffer(_small_block()))
    del members["components/0.npy"]
    with pytest.raises(FileFormatError, match=r"has no entry 'components/0.npy'"):
        load_block_buffer(_zip(members))


def test_wrong_loader_gives_a_hint():
    with pytest.raises(FileFormatError, match="TensorBlock file, use load_block"):
        load(data_path("core-block.mts"))
    with pytest.raises(FileFormatError, match="TensorMap file, use load"):
        load_block(data_path("core-data.mts"))
    with pytest.raises(FileFormatError, match=r"Labels file.*use load_labels"):
        load(data_path("core-keys.mts"))
    with pytest.raises(FileFormatError, match=r"zip archive.*use load or load_block"):
        load_labels(data_path("core-data.mts"))


def test_bad_info_json_raises():
    members = _simple_members()
    for text, message in [
        (b"{not json", "not valid JSON"),
        (b"[1, 2]", "JSON object of strings"),
        (b'{"a": 1}', "JSON object of strings"),
        (b"\xff\xfe", "cannot read"),
    ]:
        members["info.json"] = text
        with pytest.raises(FileFormatError, match=message):
            load_buffer(_zip(members))
    members["info.json"] = b'{"a": "b", "c": "\\u00e9"}'
    assert load_buffer(_zip(members)).info() == {"a": "b", "c": "é"}


def test_duplicate_entries_raise():
    members = _simple_members()
    output = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns about the duplicate name
        with zipfile.ZipFile(output, "w") as archive:
            for name, data in members.items():
                archive.writestr(name, data)
            archive.writestr("keys.npy", members["keys.npy"])
    with pytest.raises(FileFormatError, match=r"entry 'keys.npy' twice"):
        load_buffer(output.getvalue())


def test_loaded_metadata_is_validated():
    members = _simple_members()
    cases = [
        (
            "blocks/0/samples.npy",
            _labels_npy(["s"], [0, 1, 2, 3]),
            r"invalid block 'blocks/0/'.*axis 0 \(samples\) has size 3 but the labels have 4",
        ),
        ("blocks/0/properties.npy", _labels_npy(["p"], [0]), r"axis 1 \(properties\)"),
        (
            "blocks/0/gradients/positions/samples.npy",
            _labels_npy(["sample", "atom"], [[0, 0], [5, 1]]),
            r"invalid gradient 'blocks/0/gradients/positions/'.*points to row 5",
        ),
        (
            "blocks/0/gradients/positions/samples.npy",
            _labels_npy(["atom", "x"], [[0, 0], [2, 1]]),
            "must start with a 'sample' dimension",
        ),
        (
            "blocks/0/gradients/positions/components/0.npy",
            _labels_npy(["xyz"], [0, 1]),
            r"axis 1 \(component 'xyz'\)",
        ),
        ("blocks/1/samples.npy", _labels_npy(["t"], [0]), "same sample names"),
        ("blocks/1/properties.npy", _labels_npy(["q"], [0, 1]), "same property names"),
        (
            "blocks/0/components/0.npy",
            _labels_npy(["c"], [0]),
            "0 component axes but the archive also has",
        ),
        (
            # gradients of gradients are read (as metatensor does), so an incomplete one fails
            "blocks/0/gradients/positions/gradients/x/values.npy",
            _npy("<f8", (2, 3, 2), b"\0" * 96),
            "has no entry 'blocks/0/gradients/positions/gradients/x/samples.npy'",
        ),
        ("keys.npy", _labels_npy(["key"], [0]), None),  # fewer keys: extra block ignored
        ("keys.npy", _labels_npy(["key"], [0, 1, 2]), "has no entry 'blocks/2/values.npy'"),
    ]
    for entry, data, message in cases:
        tampered = dict(members)
        tampered[entry] = data
        if message is None:
            assert len(load_buffer(_zip(tampered))) == 1
            continue
        with pytest.raises(FileFormatError, match=message):
            load_buffer(_zip(tampered))


def test_values_dtype_mismatch_with_gradients_raises():
    members = _simple_members()
    members["blocks/0/gradients/positions/values.npy"] = _npy("<f4", (2, 3, 2), b"\0" * 48)
    with pytest.raises(FileFormatError, match="dtype"):
        load_buffer(_zip(members))


def test_failed_save_leaves_no_file(tmp_path):
    good = _small_block()
    bad = eqt.TensorBlock(
        jnp.ones((3, 2, 2), jnp.bfloat16), good.samples, good.components, good.properties
    )
    tensor = eqt.TensorMap(eqt.Labels.range("k", 2), [good, bad])
    with pytest.raises(TypeError, match="bfloat16"):
        save(tmp_path / "partial.mts", tensor)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("n_names", [600, 4000])
def test_labels_with_long_headers(n_names):
    # 600 names exceed numpy's default 10000-character header limit; 4000 need .npy v2.0
    names = [f"dimension_{i}" for i in range(n_names)]
    labels = eqt.Labels(names, np.arange(2 * n_names).reshape(2, n_names))
    data = save_labels_buffer(labels)
    assert data[6:8] == (b"\x01\x00" if n_names == 600 else b"\x02\x00")
    assert load_labels_buffer(data) == labels
    assert_labels_equal(labels, metatensor.io.load_labels_buffer(data))
