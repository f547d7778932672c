"""Reading and writing metatensor's ``.mts`` files, with NumPy and ``zipfile`` only.

Format (the same bytes metatensor-core reads and writes):

* a **Labels** file is one bare ``.npy`` array: 1-D, structured, one little-endian int32
  field (``'<i4'``) per dimension name, one element per entry;
* a **TensorBlock** file is a zip archive of ``.npy`` members: ``values.npy``,
  ``samples.npy``, ``components/{j}.npy`` (one per middle axis of the values),
  ``properties.npy``, and for each gradient parameter the same under
  ``gradients/{parameter}/`` without ``properties.npy`` (gradients share the values'
  properties);
* a **TensorMap** file is a zip archive with ``keys.npy``, one block per key under
  ``blocks/{i}/`` (layout as above), and ``info.json`` (a JSON object of strings) when the
  tensor has info.

Writing follows metatensor: ``.npy`` format version 1.0 (2.0 only if a header does not fit),
C order, little-endian descriptors everywhere (``'<i1'``, ``'<u1'``, ``'<b1'``, not NumPy's
``'|i1'``, which metatensor refuses), stored (uncompressed) zip members with a fixed
timestamp so that saving is deterministic. ``compress=True`` writes deflated members, which
metatensor also reads. Value dtypes are the ones metatensor-core handles: float16/32/64,
int8/16/32/64, uint8/16/32/64, bool, complex64/128.

Reading accepts stored and deflated archives, ``.npy`` versions 1.0, 2.0 and 3.0, any byte
order, and Fortran-ordered arrays (made C-contiguous). It never unpickles: object dtypes are
refused, headers are parsed with :func:`ast.literal_eval` and ``info.json`` with
:func:`json.loads`. Every problem with the file content raises :class:`FileFormatError` (a
``ValueError``) naming the archive entry. Loaded arrays are writable NumPy arrays; convert
them with ``jax.numpy.asarray`` (or ``jax.device_put``) when needed.

Labels with zero dimensions: metatensor-core writes them with ``'descr': []`` and shape
``(0,)`` whatever their length, and cannot read them back. We write ``'descr': []`` with
the real number of entries as the shape (and no data bytes), and read that back.

Gradient parameters are written and read in the block's order (the order of the archive
entries). Note that metatensor-core itself loads gradients in an unspecified order.
"""

from __future__ import annotations

import ast
import io
import json
import math
import os
import struct
import warnings
import zipfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO, Any, BinaryIO

import numpy as np

from ._backend import TRACER_ERRORS
from .block import TensorBlock
from .labels import Labels
from .tensormap import TensorMap

__all__ = [
    "FileFormatError",
    "load",
    "load_block",
    "load_block_buffer",
    "load_buffer",
    "load_labels",
    "load_labels_buffer",
    "save",
    "save_block",
    "save_block_buffer",
    "save_buffer",
    "save_labels",
    "save_labels_buffer",
]

PathOrFile = str | os.PathLike | BinaryIO
Buffer = bytes | bytearray | memoryview


class FileFormatError(ValueError):
    """The content of an ``.mts`` file (or buffer) is invalid, corrupt or unsupported."""


_MAGIC = b"\x93NUMPY"
_ZIP_MAGIC = b"PK"
# literal_eval of a flat header is cheap, but an absurd header length signals corruption
_MAX_HEADER_LEN = 1 << 20
# fixed member timestamp (metatensor uses the same) so that saving is deterministic
_ZIP_DATE = (2000, 1, 1, 0, 0, 0)
# kind -> allowed item sizes, the dtypes metatensor-core can hold in its arrays
_VALUE_DTYPES = {"f": (2, 4, 8), "i": (1, 2, 4, 8), "u": (1, 2, 4, 8), "b": (1,), "c": (8, 16)}
_HEADER_KEYS = {"descr", "fortran_order", "shape"}


# --------------------------------------------------------------------------- writing .npy
def _npy_header(descr: Any, shape: tuple[int, ...]) -> bytes:
    """A ``.npy`` header (version 1.0 if it fits, else 2.0) for C-ordered data."""
    header = {"descr": descr, "fortran_order": False, "shape": tuple(int(s) for s in shape)}
    out = io.BytesIO()
    try:
        np.lib.format.write_array_header_1_0(out, header)
    except ValueError:  # header longer than 65535 bytes: only fits version 2.0
        out = io.BytesIO()
        np.lib.format.write_array_header_2_0(out, header)
    return out.getvalue()


def _little_endian_descr(dtype: np.dtype) -> str:
    # numpy spells single-byte types '|i1'; metatensor only reads '<i1'
    return "<" + dtype.newbyteorder("<").str[1:]


def _values_to_numpy(values: Any, what: str) -> np.ndarray:
    try:
        array = np.asarray(values)
    except TRACER_ERRORS:
        raise TypeError(
            f"cannot save {what}: its values are traced by a JAX transformation; save outside "
            "jax.jit / grad / vmap"
        ) from None
    sizes = _VALUE_DTYPES.get(array.dtype.kind, ())
    if array.dtype.itemsize not in sizes or array.dtype.fields is not None:
        raise TypeError(
            f"cannot save {what} with dtype {array.dtype}: .mts files hold float16/32/64, "
            "(u)int8/16/32/64, bool and complex64/128 values"
        )
    return array


def _array_npy_parts(array: np.ndarray) -> tuple[bytes, np.ndarray]:
    """Header and C-contiguous little-endian data of a values array."""
    data = np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<"))
    return _npy_header(_little_endian_descr(array.dtype), array.shape), data


def _labels_npy_bytes(labels: Labels) -> bytes:
    """A Labels as metatensor stores it: a 1-D structured array of ``'<i4'`` fields."""
    labels = labels.to_static()
    values = np.ascontiguousarray(labels.values, dtype="<i4")
    descr = [(name, "<i4") for name in labels.names]
    return _npy_header(descr, (len(labels),)) + values.tobytes()


# --------------------------------------------------------------------------- writing zips
class _ZipWriter:
    """Adds ``.npy`` members to a zip archive with fixed timestamps and one compression."""

    def __init__(self, archive: zipfile.ZipFile, compress: bool):
        self._archive = archive
        self._compression = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED

    def _info(self, name: str, size: int) -> zipfile.ZipInfo:
        info = zipfile.ZipInfo(name, date_time=_ZIP_DATE)
        info.compress_type = self._compression
        info.external_attr = 0o644 << 16
        # a known size lets zipfile decide on ZIP64 up front, for members over 2 GiB
        info.file_size = size
        return info

    def write_bytes(self, name: str, data: bytes) -> None:
        with self._archive.open(self._info(name, len(data)), "w") as member:
            member.write(data)

    def write_array(self, name: str, array: np.ndarray) -> None:
        header, data = _array_npy_parts(array)
        with self._archive.open(self._info(name, len(header) + data.nbytes), "w") as member:
            member.write(header)
            if data.size:
                # a flat byte view avoids copying large arrays into a bytes object
                member.write(data.reshape(-1).view(np.uint8))

    def write_block(self, prefix: str, block: TensorBlock, with_properties: bool = True) -> None:
        what = f"block '{prefix or '<root>'}'"
        self.write_array(f"{prefix}values.npy", _values_to_numpy(block.values, what))
        self.write_bytes(f"{prefix}samples.npy", _labels_npy_bytes(block.samples))
        for j, component in enumerate(block.components):
            self.write_bytes(f"{prefix}components/{j}.npy", _labels_npy_bytes(component))
        if with_properties:
            self.write_bytes(f"{prefix}properties.npy", _labels_npy_bytes(block.properties))
        for parameter, gradient in block.gradients():
            self.write_block(f"{prefix}gradients/{parameter}/", gradient, with_properties=False)


def _check_info(info: dict[str, str]) -> None:
    for key, value in info.items():
        if "\0" in key or "\0" in value:
            raise ValueError(
                f"TensorMap info {key!r} contains a NUL character, which .mts files can not hold"
            )


def _write_tensor(file: BinaryIO, tensor: TensorMap, compress: bool) -> None:
    info = tensor.info()
    _check_info(info)
    with zipfile.ZipFile(file, "w") as archive:
        writer = _ZipWriter(archive, compress)
        writer.write_bytes("keys.npy", _labels_npy_bytes(tensor.keys))
        for i, block in enumerate(tensor.blocks()):
            writer.write_block(f"blocks/{i}/", block)
        if info:
            writer.write_bytes("info.json", json.dumps(info, indent=2).encode("utf-8"))


def _write_block(file: BinaryIO, block: TensorBlock, compress: bool) -> None:
    with zipfile.ZipFile(file, "w") as archive:
        _ZipWriter(archive, compress).write_block("", block)


def _check_type(value: Any, expected: type, function: str) -> None:
    if not isinstance(value, expected):
        raise TypeError(f"{function} expects a {expected.__name__}, got {type(value).__name__}")


def _output_path(path: str | os.PathLike[str]) -> str:
    """``path`` with ``.mts`` appended (and a warning) when it does not end so, like metatensor."""
    path = os.fsdecode(os.fspath(path))
    if not path.endswith(".mts"):
        path += ".mts"
        warnings.warn(f"adding '.mts' extension, the file will be saved at '{path}'", stacklevel=3)
    return path


def _save_with(file: PathOrFile, write: Any) -> None:
    if hasattr(file, "write"):
        write(file)
        return
    if not isinstance(file, (str, os.PathLike)):
        raise TypeError(
            f"file must be a path (str or os.PathLike) or a binary file object, got "
            f"{type(file).__name__}"
        )
    path = _output_path(file)
    try:
        with open(path, "wb") as output:
            write(output)
    except BaseException:
        # an unsupported dtype or traced value found midway must not leave half a file
        if os.path.exists(path):
            os.remove(path)
        raise


def save_labels(file: PathOrFile, labels: Labels) -> None:
    """Save ``labels`` as a bare ``.npy`` file (``.mts`` is appended to paths without it)."""
    _check_type(labels, Labels, "save_labels")
    data = _labels_npy_bytes(labels)
    _save_with(file, lambda output: output.write(data))


def save_block(file: PathOrFile, block: TensorBlock, *, compress: bool = False) -> None:
    """Save ``block`` (with its gradients) as a zip of ``.npy`` members.

    Args:
        file: path (``.mts`` is appended when the name does not end with it, with a
            warning, as metatensor does) or binary file object.
        block: the block to save; JAX values are copied to host memory.
        compress: deflate the members (metatensor writes them uncompressed).
    """
    _check_type(block, TensorBlock, "save_block")
    _save_with(file, lambda output: _write_block(output, block, compress))


def save(
    file: PathOrFile, data: TensorMap | TensorBlock | Labels, *, compress: bool = False
) -> None:
    """Save a TensorMap, TensorBlock or Labels in metatensor's ``.mts`` format.

    Args:
        file: path (``.mts`` is appended when the name does not end with it, with a
            warning, as metatensor does) or binary file object.
        data: what to save; the file layout depends on its type (see the module docstring).
        compress: deflate the zip members of TensorMap and TensorBlock files.
    """
    if isinstance(data, TensorMap):
        _save_with(file, lambda output: _write_tensor(output, data, compress))
    elif isinstance(data, TensorBlock):
        save_block(file, data, compress=compress)
    elif isinstance(data, Labels):
        save_labels(file, data)
    else:
        raise TypeError(
            f"save expects a TensorMap, TensorBlock or Labels, got {type(data).__name__}"
        )


def save_labels_buffer(labels: Labels) -> bytes:
    """The bytes of the ``.npy`` file :func:`save_labels` writes."""
    _check_type(labels, Labels, "save_labels_buffer")
    return _labels_npy_bytes(labels)


def save_block_buffer(block: TensorBlock, *, compress: bool = False) -> bytes:
    """The bytes of the file :func:`save_block` writes."""
    _check_type(block, TensorBlock, "save_block_buffer")
    output = io.BytesIO()
    _write_block(output, block, compress)
    return output.getvalue()


def save_buffer(data: TensorMap | TensorBlock | Labels, *, compress: bool = False) -> bytes:
    """The bytes of the file :func:`save` writes for ``data``."""
    if isinstance(data, Labels):
        return save_labels_buffer(data)
    if isinstance(data, TensorBlock):
        return save_block_buffer(data, compress=compress)
    if isinstance(data, TensorMap):
        output = io.BytesIO()
        _write_tensor(output, data, compress)
        return output.getvalue()
    raise TypeError(
        f"save_buffer expects a TensorMap, TensorBlock or Labels, got {type(data).__name__}"
    )


# --------------------------------------------------------------------------- reading .npy
def _read_exact(stream: IO[bytes], size: int, what: str, entry: str) -> bytes:
    data = stream.read(size)
    if len(data) != size:
        raise FileFormatError(
            f"{entry} is truncated: expected {size} bytes of {what}, found {len(data)}"
        )
    return data


def _parse_header(stream: IO[bytes], entry: str) -> tuple[tuple[int, ...], bool, Any, int]:
    """Read a ``.npy`` header: shape, fortran order, raw ``descr`` and header length."""
    magic = _read_exact(stream, 8, "header", entry)
    if magic[:6] != _MAGIC:
        raise FileFormatError(
            f"{entry} is not a .npy array: it starts with {magic[:6]!r} instead of {_MAGIC!r}"
        )
    version = (magic[6], magic[7])
    if version == (1, 0):
        length_format, encoding = "<H", "latin1"
    elif version in ((2, 0), (3, 0)):
        length_format, encoding = "<I", "latin1" if version == (2, 0) else "utf-8"
    else:
        raise FileFormatError(
            f"{entry} uses .npy format version {version[0]}.{version[1]}; only versions "
            "1.0, 2.0 and 3.0 exist"
        )
    length_size = struct.calcsize(length_format)
    (length,) = struct.unpack(length_format, _read_exact(stream, length_size, "header", entry))
    if length > _MAX_HEADER_LEN:
        raise FileFormatError(f"{entry} has an implausible .npy header length {length}")
    text = _read_exact(stream, length, "header", entry).decode(encoding)
    try:
        header = ast.literal_eval(text)
    except (SyntaxError, ValueError, TypeError, MemoryError, RecursionError):
        raise FileFormatError(f"{entry} has an unparsable .npy header {text.strip()!r}") from None
    if not isinstance(header, dict) or set(header) != _HEADER_KEYS:
        raise FileFormatError(
            f"{entry} has an invalid .npy header {text.strip()!r}: expected a dict with the "
            "keys 'descr', 'fortran_order' and 'shape'"
        )
    shape, fortran_order = header["shape"], header["fortran_order"]
    if not isinstance(shape, tuple) or not all(type(s) is int and s >= 0 for s in shape):
        raise FileFormatError(f"{entry} has an invalid shape {shape!r} in its .npy header")
    if not isinstance(fortran_order, bool):
        raise FileFormatError(f"{entry} has an invalid fortran_order {fortran_order!r}")
    return shape, fortran_order, header["descr"], len(magic) + length_size + length


def _values_dtype(descr: Any, entry: str) -> np.dtype:
    if not isinstance(descr, str):
        raise FileFormatError(
            f"{entry} holds a structured array ({descr!r}); values must be a plain numeric array"
        )
    try:
        dtype = np.dtype(descr)
    except (TypeError, ValueError):
        raise FileFormatError(f"{entry} has an unknown dtype {descr!r}") from None
    if dtype.hasobject:
        raise FileFormatError(
            f"{entry} holds Python objects (dtype {descr!r}), which would need pickle to "
            "load; .mts files only hold numeric arrays and loading never unpickles"
        )
    if dtype.itemsize not in _VALUE_DTYPES.get(dtype.kind, ()) or dtype.fields is not None:
        raise FileFormatError(
            f"{entry} has unsupported dtype {descr!r}: .mts values are float16/32/64, "
            "(u)int8/16/32/64, bool or complex64/128"
        )
    return dtype


def _labels_dtype(descr: Any, entry: str) -> np.dtype:
    if isinstance(descr, str):
        try:
            hasobject = np.dtype(descr).hasobject
        except (TypeError, ValueError):
            hasobject = False
        if hasobject:
            raise FileFormatError(
                f"{entry} holds Python objects (dtype {descr!r}), which would need pickle "
                "to load; labels are int32 structured arrays and loading never unpickles"
            )
        raise FileFormatError(
            f"{entry} has dtype {descr!r}; labels must be a structured array with one int32 "
            "field per dimension"
        )
    if not isinstance(descr, list):
        raise FileFormatError(f"{entry} has an invalid labels dtype {descr!r}")
    fields = []
    for field in descr:
        if (
            not isinstance(field, tuple)
            or len(field) != 2
            or not all(isinstance(part, str) for part in field)
        ):
            raise FileFormatError(f"{entry} has an invalid labels field {field!r}")
        name, kind = field
        if kind not in ("<i4", ">i4"):
            raise FileFormatError(
                f"{entry}: labels dimension '{name}' has dtype {kind!r}, expected int32 "
                "('<i4' or '>i4')"
            )
        fields.append((name, kind))
    try:
        return np.dtype(fields)
    except (TypeError, ValueError) as error:
        raise FileFormatError(f"{entry} has invalid labels dimensions: {error}") from None


def _read_npy(stream: IO[bytes], size: int, entry: str, labels: bool) -> np.ndarray:
    """Read a whole ``.npy`` member of ``size`` bytes into a fresh C-contiguous array."""
    shape, fortran_order, descr, header_length = _parse_header(stream, entry)
    dtype = _labels_dtype(descr, entry) if labels else _values_dtype(descr, entry)
    if labels and len(shape) != 1:
        raise FileFormatError(f"{entry} has shape {shape}; labels must be a 1-D array")
    count = math.prod(shape)
    expected = count * dtype.itemsize
    found = size - header_length
    # compare with the entry size before allocating, so a corrupt shape can not exhaust memory
    if found < expected:
        raise FileFormatError(
            f"{entry} is truncated: shape {shape} of {dtype} needs {expected} bytes of data, "
            f"found {found}"
        )
    if found > expected:
        raise FileFormatError(
            f"{entry} has {found - expected} extra bytes after the data of shape {shape}"
        )
    array = np.empty(shape[::-1] if fortran_order else shape, dtype=dtype)
    if expected:
        target = memoryview(array.reshape(-1).view(np.uint8))
        read = 0
        while read < expected:
            n = stream.readinto(target[read:])
            if not n:
                raise FileFormatError(f"{entry} is truncated: the data ends after {read} bytes")
            read += n
    if stream.read(1):
        raise FileFormatError(f"{entry} has extra bytes after the array data")
    if fortran_order:
        array = np.ascontiguousarray(array.T)
    if not dtype.isnative and dtype.fields is None:
        array = array.astype(dtype.newbyteorder("="))
    return array


def _labels_from_array(array: np.ndarray, entry: str) -> Labels:
    names = array.dtype.names or ()
    if names:
        # field by field, which also converts any byte order to native int32
        values = np.stack([array[name].astype(np.int32) for name in names], axis=1)
    else:
        values = np.zeros((len(array), 0), dtype=np.int32)
    try:
        return Labels(list(names), values)
    except (TypeError, ValueError) as error:
        raise FileFormatError(f"{entry} holds invalid labels: {error}") from None


# --------------------------------------------------------------------------- reading zips
# what zipfile, zlib and numpy raise on corrupt input (ValueError covers UnicodeDecodeError)
_CORRUPTION_ERRORS = (
    ValueError,
    zipfile.BadZipFile,
    zipfile.LargeZipFile,
    zlib.error,
    EOFError,
    struct.error,
    NotImplementedError,
    RuntimeError,
    OSError,
)


@contextmanager
def _reading(source: str, entry: str | None = None) -> Iterator[None]:
    """Turn the errors of a corrupt archive or array into ours, naming the entry."""
    where = source if entry is None else f"entry '{entry}' of {source}"
    try:
        yield
    except FileFormatError as error:
        if entry is None:
            raise
        raise FileFormatError(f"{source}: {error}") from None
    except _CORRUPTION_ERRORS as error:
        raise FileFormatError(f"cannot read {where}: {type(error).__name__}: {error}") from error


class _Archive:
    """A read-only view of a zip archive: member lookup with clear errors."""

    def __init__(self, stream: IO[bytes], source: str):
        self.source = source
        start = stream.tell()
        head = stream.read(8)
        stream.seek(start)
        if head.startswith(_MAGIC):
            raise FileFormatError(
                f"{source} is a bare .npy array (a Labels file), not a zip archive: use load_labels"
            )
        try:
            self._zip = zipfile.ZipFile(stream)
        except zipfile.BadZipFile as error:
            raise FileFormatError(
                f"{source} is not a valid zip archive (truncated or corrupt?): {error}"
            ) from error
        self.members: dict[str, zipfile.ZipInfo] = {}
        # folder -> its direct children ('name' for entries, 'name/' for folders), in archive
        # order; one pass here keeps finding components and gradients linear in the size
        self._children: dict[str, dict[str, None]] = {}
        for info in self._zip.infolist():
            if info.filename in self.members:
                raise FileFormatError(f"{source} has the entry '{info.filename}' twice")
            self.members[info.filename] = info
            parts = info.filename.split("/")
            for depth in range(len(parts)):
                folder = "".join(part + "/" for part in parts[:depth])
                child = parts[depth] if depth == len(parts) - 1 else parts[depth] + "/"
                self._children.setdefault(folder, {})[child] = None

    def children(self, folder: str) -> list[str]:
        """Direct children of ``folder`` (``''`` or ending with ``/``), in archive order."""
        return list(self._children.get(folder, ()))

    def __contains__(self, name: str) -> bool:
        return name in self.members

    def require(self, name: str, hint: str = "") -> zipfile.ZipInfo:
        info = self.members.get(name)
        if info is None:
            raise FileFormatError(f"{self.source} has no entry '{name}'{hint}")
        return info

    def read_npy(self, name: str, labels: bool) -> np.ndarray:
        info = self.require(name)
        with _reading(self.source, name), self._zip.open(info) as member:
            return _read_npy(member, info.file_size, f"'{name}'", labels)

    def read_labels(self, name: str) -> Labels:
        array = self.read_npy(name, labels=True)
        with _reading(self.source, name):
            return _labels_from_array(array, f"'{name}'")

    def read_text(self, name: str) -> str:
        info = self.require(name)
        with _reading(self.source, name):
            return self._zip.read(info).decode("utf-8")


def _components(archive: _Archive, prefix: str, n_components: int) -> list[Labels]:
    expected = [f"{prefix}components/{j}.npy" for j in range(n_components)]
    present = [f"{prefix}components/{name}" for name in archive.children(f"{prefix}components/")]
    extra = sorted(set(present) - set(expected))
    if extra:
        raise FileFormatError(
            f"{archive.source}: '{prefix}values.npy' has {n_components} component axes but "
            f"the archive also has {extra}"
        )
    return [archive.read_labels(name) for name in expected]


def _gradient_parameters(archive: _Archive, prefix: str) -> list[str]:
    """Gradient parameters under ``prefix``, in the order of the archive entries."""
    return [name[:-1] for name in archive.children(f"{prefix}gradients/") if name.endswith("/")]


def _read_block(archive: _Archive, prefix: str, values_properties: Labels | None) -> TensorBlock:
    """Read the block under ``prefix``; a gradient block when ``values_properties`` is given.

    Gradient blocks have no ``properties.npy``: they use the properties of their values.
    """
    is_gradient = values_properties is not None
    values = archive.read_npy(f"{prefix}values.npy", labels=False)
    if values.ndim < 2:
        raise FileFormatError(
            f"{archive.source}: '{prefix}values.npy' has shape {values.shape}; block values "
            "need at least 2 axes (samples and properties)"
        )
    samples = archive.read_labels(f"{prefix}samples.npy")
    components = _components(archive, prefix, values.ndim - 2)
    if is_gradient:
        properties = values_properties
    else:
        properties = archive.read_labels(f"{prefix}properties.npy")
    where = prefix or "<root>"
    try:
        block = TensorBlock(values, samples, components, properties)
    except (TypeError, ValueError) as error:
        raise FileFormatError(f"{archive.source}: invalid block '{where}': {error}") from None
    parameters = _gradient_parameters(archive, prefix)
    if is_gradient and parameters:
        raise FileFormatError(
            f"{archive.source}: gradient block '{where}' has gradients {parameters} itself; "
            "gradients of gradients are not supported"
        )
    for parameter in parameters:
        gradient_prefix = f"{prefix}gradients/{parameter}/"
        gradient = _read_block(archive, gradient_prefix, properties)
        try:
            block.add_gradient(parameter, gradient)
        except (TypeError, ValueError) as error:
            raise FileFormatError(
                f"{archive.source}: invalid gradient '{gradient_prefix}': {error}"
            ) from None
    return block


def _parse_info(text: str, source: str) -> dict[str, str]:
    try:
        info = json.loads(text)
    except json.JSONDecodeError as error:
        raise FileFormatError(f"{source}: 'info.json' is not valid JSON: {error}") from None
    if not isinstance(info, dict) or not all(isinstance(v, str) for v in info.values()):
        raise FileFormatError(f"{source}: 'info.json' must be a JSON object of strings")
    return info


def _read_tensor(stream: IO[bytes], source: str) -> TensorMap:
    with _reading(source):
        archive = _Archive(stream, source)
        if "keys.npy" not in archive and "values.npy" in archive:
            raise FileFormatError(
                f"{source} has no entry 'keys.npy' but has 'values.npy': it is a TensorBlock "
                "file, use load_block"
            )
        archive.require("keys.npy")
        keys = archive.read_labels("keys.npy")
        blocks = [_read_block(archive, f"blocks/{i}/", None) for i in range(len(keys))]
        try:
            tensor = TensorMap(keys, blocks)
        except (TypeError, ValueError) as error:
            raise FileFormatError(f"{source}: invalid TensorMap: {error}") from None
        if "info.json" in archive:
            for key, value in _parse_info(archive.read_text("info.json"), source).items():
                tensor.set_info(key, value)
        return tensor


def _read_block_file(stream: IO[bytes], source: str) -> TensorBlock:
    with _reading(source):
        archive = _Archive(stream, source)
        hint = ""
        if "keys.npy" in archive:
            hint = " but has 'keys.npy': it is a TensorMap file, use load"
        archive.require("values.npy", hint)
        return _read_block(archive, "", None)


def _read_labels_file(data: Buffer, source: str) -> Labels:
    data = bytes(data)
    if data.startswith(_ZIP_MAGIC):
        raise FileFormatError(
            f"{source} is a zip archive (a TensorMap or TensorBlock file), not a Labels file: "
            "use load or load_block"
        )
    with _reading(source):
        array = _read_npy(io.BytesIO(data), len(data), source, labels=True)
        return _labels_from_array(array, source)


def _check_buffer(buffer: Any, function: str) -> None:
    if not isinstance(buffer, (bytes, bytearray, memoryview)):
        raise TypeError(
            f"{function} expects bytes, bytearray or memoryview, got {type(buffer).__name__}"
        )


@contextmanager
def _input(file: PathOrFile) -> Iterator[tuple[IO[bytes], str]]:
    """A seekable binary stream for ``file`` (path or file object) and a name for errors."""
    if hasattr(file, "read"):
        seekable = getattr(file, "seekable", lambda: False)()
        yield (file if seekable else io.BytesIO(file.read())), "the given file object"
        return
    if not isinstance(file, (str, os.PathLike)):
        raise TypeError(
            f"file must be a path (str or os.PathLike) or a binary file object, got "
            f"{type(file).__name__}"
        )
    path = os.fsdecode(os.fspath(file))
    with open(path, "rb") as stream:
        yield stream, f"'{path}'"


def load(file: PathOrFile) -> TensorMap:
    """Load a TensorMap saved by :func:`save` or metatensor; values are NumPy arrays."""
    with _input(file) as (stream, source):
        return _read_tensor(stream, source)


def load_block(file: PathOrFile) -> TensorBlock:
    """Load a TensorBlock saved by :func:`save_block` or metatensor."""
    with _input(file) as (stream, source):
        return _read_block_file(stream, source)


def load_labels(file: PathOrFile) -> Labels:
    """Load Labels saved by :func:`save_labels` or metatensor."""
    with _input(file) as (stream, source):
        return _read_labels_file(stream.read(), source)


def load_buffer(buffer: Buffer) -> TensorMap:
    """Load a TensorMap from the bytes of an ``.mts`` file."""
    _check_buffer(buffer, "load_buffer")
    return _read_tensor(io.BytesIO(buffer), "the buffer")


def load_block_buffer(buffer: Buffer) -> TensorBlock:
    """Load a TensorBlock from the bytes of an ``.mts`` file."""
    _check_buffer(buffer, "load_block_buffer")
    return _read_block_file(io.BytesIO(buffer), "the buffer")


def load_labels_buffer(buffer: Buffer) -> Labels:
    """Load Labels from the bytes of a ``.npy`` labels file."""
    _check_buffer(buffer, "load_labels_buffer")
    return _read_labels_file(buffer, "the buffer")
