"""Reading and writing metatensor's ``.mts`` files, with NumPy and ``zipfile`` only.

Format (the same bytes metatensor-core reads and writes):

* a **Labels** file is one bare ``.npy`` array: 1-D, structured, one little-endian int32
  field (``'<i4'``) per dimension name, one element per entry;
* a **TensorBlock** file is a zip archive of ``.npy`` members: ``values.npy``,
  ``samples.npy``, ``components/{j}.npy`` (one per middle axis of the values),
  ``properties.npy``, and for each gradient parameter the same under
  ``gradients/{parameter}/`` without ``properties.npy`` (gradients share the values'
  properties), recursively for gradients of gradients
  (``gradients/positions/gradients/cell/values.npy``);
* a **TensorMap** file is a zip archive with ``keys.npy``, one block per key under
  ``blocks/{i}/`` (layout as above), and ``info.json`` (a JSON object of strings) when the
  tensor has info.

Writing reproduces metatensor-core's bytes exactly: the members in its order (gradient
parameters sorted, as metatensor keeps them), its ``.npy`` headers (version 1.0, ``{ 'descr':
'<f8', 'fortran_order': False, 'shape': (3, 2, ) }`` padded to 64 bytes, little-endian
descriptors everywhere: ``'<i1'``, ``'<b1'``, not NumPy's ``'|i1'``, which metatensor
refuses), its zip headers (see :class:`_ZipWriter`), ``info.json`` with sorted keys, so
that saving is deterministic and ``save(load(f))`` equals metatensor's
``save(load(f))`` byte for byte. ``compress=True`` writes deflated members, which
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

Gradient parameters are read in the order of the archive entries and written sorted.
metatensor-core itself loads gradients in an unspecified (hash) order.

``save_buffer`` returns a ``memoryview``, as metatensor's. The ``use_numpy`` arguments of
metatensor's functions and methods are accepted: metatensor then goes through
``numpy.load``/``numpy.savez``; here one implementation reads what both write, always
writes the native format, and always loads values as NumPy arrays.
"""

from __future__ import annotations

import ast
import io
import json
import math
import os
import pathlib
import struct
import types
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
# metatensor-core's zip layout (Rust `zip` 0.6, stored members with `large_file`): the
# fixed member date 2000-01-01 (time 00:00) as a DOS date, made by 4.6 on Unix (3),
# needing 2.0, regular files with mode 0o644, names flagged UTF-8 when not ASCII
_ZIP_DATE = ((2000 - 1980) << 9) | (1 << 5) | 1
_ZIP_VERSION_MADE_BY = (3 << 8) | 46
_ZIP_VERSION_NEEDED = 20
_ZIP_EXTERNAL_ATTRIBUTES = 0o100644 << 16
_ZIP_UTF8_FLAG = 1 << 11
_ZIP64_LIMIT = 0xFFFFFFFF
_NPY_ALIGN = 64
# kind -> allowed item sizes, the dtypes metatensor-core can hold in its arrays
_VALUE_DTYPES = {"f": (2, 4, 8), "i": (1, 2, 4, 8), "u": (1, 2, 4, 8), "b": (1,), "c": (8, 16)}
_HEADER_KEYS = {"descr", "fortran_order", "shape"}


# --------------------------------------------------------------------------- writing .npy
def _npy_header(descr: str, shape: tuple[int, ...]) -> bytes:
    """A ``.npy`` header written exactly as metatensor-core writes it.

    ``descr`` is the literal of the dtype (``'<f8'`` or ``[('a', '<i4'), ]``). metatensor
    formats the dict as ``{ 'descr': ..., 'fortran_order': False, 'shape': (3, 2, ) }``,
    pads it with spaces and a newline to a multiple of 64 bytes (always adding at least
    one byte, so a full 64-byte block when it already fits), and uses version 1.0 unless
    the header length does not fit in 16 bits (then 2.0).
    """
    literal = "{ 'descr': " + descr + ", 'fortran_order': False, 'shape': ("
    literal += "".join(f"{int(n)}, " for n in shape) + ") }"
    text = literal.encode("utf-8")
    for version, length_format in ((1, "<H"), (2, "<I")):
        prefix = len(_MAGIC) + 2 + struct.calcsize(length_format)
        unpadded = prefix + len(text) + 1
        total = unpadded + (_NPY_ALIGN - unpadded % _NPY_ALIGN)
        header_length = total - prefix
        if header_length < 1 << (8 * struct.calcsize(length_format)):
            padding = b" " * (total - 1 - prefix - len(text))
            return (
                _MAGIC
                + bytes([version, 0])
                + struct.pack(length_format, header_length)
                + text
                + padding
                + b"\n"
            )
    raise ValueError(f"the .npy header for shape {shape} is too long")


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
    return _npy_header(f"'{_little_endian_descr(array.dtype)}'", array.shape), data


def _labels_npy_bytes(labels: Labels) -> bytes:
    """A Labels as metatensor stores it: a 1-D structured array of ``'<i4'`` fields."""
    labels = labels.to_static()
    values = np.ascontiguousarray(labels.values, dtype="<i4")
    descr = "[" + "".join(f"('{name}', '<i4'), " for name in labels.names) + "]"
    return _npy_header(descr, (len(labels),)) + values.tobytes()


# --------------------------------------------------------------------------- writing zips
class _ZipWriter:
    """Writes a zip archive byte for byte as metatensor-core does (Rust ``zip`` 0.6).

    Every member is written with ``large_file`` on: its local header holds ``0xFFFFFFFF``
    sizes and a 20-byte ZIP64 extra field with the real sizes; the central directory holds
    the real sizes (ZIP64 fields there, and the ZIP64 end records, only when the sizes,
    offsets or number of members need them), "version made by" 4.6 on Unix, "version
    needed" 2.0, external attributes ``0o100644``, and the fixed time 2000-01-01 00:00.
    Members are stored, or deflated with ``compress=True`` (which metatensor never
    writes, but reads). No seeking: the output may be any binary stream.
    """

    def __init__(self, stream: BinaryIO, compress: bool):
        self._stream = stream
        self._compress = compress
        try:
            self._position = stream.tell()
        except (AttributeError, OSError, ValueError):
            self._position = 0
        self._members: list[tuple[bytes, int, int, int, int, int, int]] = []
        self._names: set[str] = set()

    def _write(self, data: Any) -> None:
        self._stream.write(data)
        self._position += memoryview(data).nbytes

    def write_member(self, name: str, parts: list[Any]) -> None:
        """Add the member ``name`` with the concatenation of the buffers in ``parts``."""
        if name in self._names:
            raise ValueError(f"the archive already has an entry '{name}'")
        self._names.add(name)
        size = sum(memoryview(part).nbytes for part in parts)
        crc = 0
        for part in parts:
            crc = zlib.crc32(part, crc)
        if self._compress:
            compressor = zlib.compressobj(6, zlib.DEFLATED, -15)
            parts = [b"".join(compressor.compress(part) for part in parts) + compressor.flush()]
            method = 8
        else:
            method = 0
        compressed_size = sum(memoryview(part).nbytes for part in parts)
        encoded = name.encode("utf-8")
        flags = 0 if name.isascii() else _ZIP_UTF8_FLAG
        offset = self._position
        self._write(
            struct.pack(
                "<IHHHHHIIIHH",
                0x04034B50,
                _ZIP_VERSION_NEEDED,
                flags,
                method,
                0,
                _ZIP_DATE,
                crc,
                _ZIP64_LIMIT,
                _ZIP64_LIMIT,
                len(encoded),
                20,
            )
            + encoded
            + struct.pack("<HHQQ", 0x0001, 16, size, compressed_size)
        )
        for part in parts:
            if memoryview(part).nbytes:
                self._write(part)
        self._members.append((encoded, flags, method, crc, compressed_size, size, offset))

    def finish(self) -> None:
        """Write the central directory and the end records."""
        central_start = self._position
        for encoded, flags, method, crc, compressed_size, size, offset in self._members:
            extra = b""
            for value in (size, compressed_size, offset):
                if value > _ZIP64_LIMIT:
                    extra += struct.pack("<Q", value)
            if extra:
                extra = struct.pack("<HH", 0x0001, len(extra)) + extra
            self._write(
                struct.pack(
                    "<IHHHHHHIIIHHHHHII",
                    0x02014B50,
                    _ZIP_VERSION_MADE_BY,
                    _ZIP_VERSION_NEEDED,
                    flags,
                    method,
                    0,
                    _ZIP_DATE,
                    crc,
                    min(compressed_size, _ZIP64_LIMIT),
                    min(size, _ZIP64_LIMIT),
                    len(encoded),
                    len(extra),
                    0,
                    0,
                    0,
                    _ZIP_EXTERNAL_ATTRIBUTES,
                    min(offset, _ZIP64_LIMIT),
                )
                + encoded
                + extra
            )
        central_size = self._position - central_start
        count = len(self._members)
        if count > 0xFFFF or max(central_size, central_start) > _ZIP64_LIMIT:
            zip64_start = self._position
            self._write(
                struct.pack(
                    "<IQHHIIQQQQ",
                    0x06064B50,
                    44,
                    46,
                    46,
                    0,
                    0,
                    count,
                    count,
                    central_size,
                    central_start,
                )
            )
            self._write(struct.pack("<IIQI", 0x07064B50, 0, zip64_start, 1))
        self._write(
            struct.pack(
                "<IHHHHIIH",
                0x06054B50,
                0,
                0,
                min(count, 0xFFFF),
                min(count, 0xFFFF),
                min(central_size, _ZIP64_LIMIT),
                min(central_start, _ZIP64_LIMIT),
                0,
            )
        )

    def write_bytes(self, name: str, data: bytes) -> None:
        self.write_member(name, [data])

    def write_array(self, name: str, array: np.ndarray) -> None:
        header, data = _array_npy_parts(array)
        # a flat byte view avoids copying large arrays into a bytes object
        self.write_member(name, [header, data.reshape(-1).view(np.uint8)])

    def write_block(self, prefix: str, block: TensorBlock, with_properties: bool = True) -> None:
        """The members of ``block`` under ``prefix``, in metatensor's order.

        Gradients (and gradients of gradients) go under ``{prefix}gradients/{parameter}/``
        without ``properties.npy``, sorted by parameter, as metatensor-core keeps them.
        """
        what = f"block '{prefix or '<root>'}'"
        self.write_array(f"{prefix}values.npy", _values_to_numpy(block.values, what))
        self.write_bytes(f"{prefix}samples.npy", _labels_npy_bytes(block.samples))
        for j, component in enumerate(block.components):
            self.write_bytes(f"{prefix}components/{j}.npy", _labels_npy_bytes(component))
        if with_properties:
            self.write_bytes(f"{prefix}properties.npy", _labels_npy_bytes(block.properties))
        for parameter in sorted(block.gradients_list()):
            gradient = block.gradient(parameter)
            self.write_block(f"{prefix}gradients/{parameter}/", gradient, with_properties=False)


def _check_info(info: dict[str, str]) -> None:
    for key, value in info.items():
        if "\0" in key or "\0" in value:
            raise ValueError(
                f"TensorMap info {key!r} contains a NUL character, which .mts files can not hold"
            )


def _info_json(info: dict[str, str]) -> bytes:
    # metatensor-core keeps the info sorted by key and writes raw UTF-8 with 2-space indents
    return json.dumps(dict(sorted(info.items())), indent=2, ensure_ascii=False).encode("utf-8")


def _write_tensor(file: BinaryIO, tensor: TensorMap, compress: bool) -> None:
    info = tensor.info()
    _check_info(info)
    writer = _ZipWriter(file, compress)
    writer.write_bytes("keys.npy", _labels_npy_bytes(tensor.keys))
    for i, block in enumerate(tensor.blocks()):
        writer.write_block(f"blocks/{i}/", block)
    if info:
        writer.write_bytes("info.json", _info_json(info))
    writer.finish()


def _write_block(file: BinaryIO, block: TensorBlock, compress: bool) -> None:
    writer = _ZipWriter(file, compress)
    writer.write_block("", block)
    writer.finish()


def _check_type(value: Any, expected: type, function: str) -> None:
    if not isinstance(value, expected):
        raise TypeError(f"{function} expects a {expected.__name__}, got {type(value).__name__}")


def _output_path(path: str | os.PathLike[str]) -> str:
    """``path`` with ``.mts`` appended (and metatensor's warning) when it does not end so."""
    if isinstance(path, str):
        if not path.endswith(".mts"):
            path += ".mts"
            warnings.warn(
                f"adding '.mts' extension, the file will be saved at '{path}'", stacklevel=4
            )
        return path
    path = pathlib.Path(os.fsdecode(os.fspath(path)))
    if not path.name.endswith(".mts"):
        path = path.with_name(path.name + ".mts")
        # metatensor names only the file in this case
        warnings.warn(
            f"adding '.mts' extension, the file will be saved at '{path.name}'", stacklevel=4
        )
    return str(path)


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


def save_block(
    file: PathOrFile, block: TensorBlock, *, compress: bool = False, use_numpy: bool = False
) -> None:
    """Save ``block`` (with its gradients) as a zip of ``.npy`` members.

    Args:
        file: path (``.mts`` is appended when the name does not end with it, with a
            warning, as metatensor does) or binary file object.
        block: the block to save; JAX values are copied to host memory.
        compress: deflate the members (metatensor writes them uncompressed).
        use_numpy: see :func:`save`.
    """
    del use_numpy  # one writer, metatensor's native format
    _check_type(block, TensorBlock, "save_block")
    _save_with(file, lambda output: _write_block(output, block, compress))


def save(
    file: PathOrFile,
    data: TensorMap | TensorBlock | Labels,
    use_numpy: bool = False,
    *,
    compress: bool = False,
) -> None:
    """Save a TensorMap, TensorBlock or Labels in metatensor's ``.mts`` format.

    The file has the bytes metatensor-core writes for the same data (same zip members,
    order, headers and timestamps): ``save(path, load(path_written_by_metatensor))``
    reproduces metatensor's own re-saving byte for byte.

    Args:
        file: path (``.mts`` is appended when the name does not end with it, with a
            warning, as metatensor does) or binary file object.
        data: what to save; the file layout depends on its type (see the module docstring).
        use_numpy: accepted for metatensor's signature (metatensor then writes with
            ``numpy.savez``, whose timestamps change the bytes); the native format is
            always written here.
        compress: deflate the zip members of TensorMap and TensorBlock files (not a
            metatensor option; metatensor reads such files).
    """
    del use_numpy
    if isinstance(data, TensorMap):
        _save_with(file, lambda output: _write_tensor(output, data, compress))
    elif isinstance(data, TensorBlock):
        _check_type(data, TensorBlock, "save_block")
        _save_with(file, lambda output: _write_block(output, data, compress))
    elif isinstance(data, Labels):
        save_labels(file, data)
    else:
        raise TypeError(
            f"save expects a TensorMap, TensorBlock or Labels: `data` must be one of "
            f"'Labels', 'TensorBlock' or 'TensorMap', not {type(data)}"
        )


def _as_memoryview(write: Any) -> memoryview:
    output = io.BytesIO()
    write(output)
    # metatensor returns a memoryview of the written bytes; a writable 'B' view of a
    # bytearray also compares equal to the same bytes
    return memoryview(bytearray(output.getbuffer()))


def save_labels_buffer(labels: Labels) -> bytes:
    """The bytes of the ``.npy`` file :func:`save_labels` writes (not a metatensor function:
    metatensor's :func:`save_buffer` returns a ``memoryview`` of the same bytes)."""
    _check_type(labels, Labels, "save_labels_buffer")
    return _labels_npy_bytes(labels)


def save_block_buffer(block: TensorBlock, *, compress: bool = False) -> bytes:
    """The bytes of the file :func:`save_block` writes (not a metatensor function:
    metatensor's :func:`save_buffer` returns a ``memoryview`` of the same bytes)."""
    _check_type(block, TensorBlock, "save_block_buffer")
    output = io.BytesIO()
    _write_block(output, block, compress)
    return output.getvalue()


def save_buffer(
    data: TensorMap | TensorBlock | Labels, use_numpy: bool = False, *, compress: bool = False
) -> memoryview:
    """The bytes of the file :func:`save` writes for ``data``.

    Returns a ``memoryview`` as metatensor's ``save_buffer`` does (``bytes(view)`` gives
    ``bytes``; it compares equal to them). ``use_numpy`` is accepted and ignored, see
    :func:`save`.
    """
    del use_numpy
    if isinstance(data, Labels):
        return memoryview(bytearray(_labels_npy_bytes(data)))
    if isinstance(data, TensorBlock):
        return _as_memoryview(lambda output: _write_block(output, data, compress))
    if isinstance(data, TensorMap):
        return _as_memoryview(lambda output: _write_tensor(output, data, compress))
    raise TypeError(
        f"save_buffer expects a TensorMap, TensorBlock or Labels: `data` must be one of "
        f"'Labels', 'TensorBlock' or 'TensorMap', not {type(data)}"
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
    Their own gradients (gradients of gradients) are read the same way, recursively.
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
    # gradients of gradients live under '{prefix}gradients/{parameter}/gradients/...'
    for parameter in _gradient_parameters(archive, prefix):
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


def load(file: PathOrFile, use_numpy: bool = False) -> TensorMap:
    """Load a TensorMap saved by :func:`save` or metatensor; values are NumPy arrays.

    ``use_numpy`` is accepted for metatensor's signature and changes nothing: one reader
    handles the files of metatensor's native and NumPy writers alike.
    """
    del use_numpy
    with _input(file) as (stream, source):
        return _read_tensor(stream, source)


def load_block(file: PathOrFile, use_numpy: bool = False) -> TensorBlock:
    """Load a TensorBlock saved by :func:`save_block` or metatensor (``use_numpy``: see
    :func:`load`)."""
    del use_numpy
    with _input(file) as (stream, source):
        return _read_block_file(stream, source)


def load_labels(file: PathOrFile) -> Labels:
    """Load Labels saved by :func:`save_labels` or metatensor."""
    with _input(file) as (stream, source):
        return _read_labels_file(stream.read(), source)


def load_buffer(buffer: Buffer, use_numpy: bool = False) -> TensorMap:
    """Load a TensorMap from the bytes of an ``.mts`` file (``use_numpy``: see :func:`load`)."""
    del use_numpy
    _check_buffer(buffer, "load_buffer")
    return _read_tensor(io.BytesIO(buffer), "the buffer")


def load_block_buffer(buffer: Buffer, use_numpy: bool = False) -> TensorBlock:
    """Load a TensorBlock from the bytes of an ``.mts`` file (``use_numpy``: see
    :func:`load`)."""
    del use_numpy
    _check_buffer(buffer, "load_block_buffer")
    return _read_block_file(io.BytesIO(buffer), "the buffer")


def load_labels_buffer(buffer: Buffer) -> Labels:
    """Load Labels from the bytes of a ``.npy`` labels file."""
    _check_buffer(buffer, "load_labels_buffer")
    return _read_labels_file(buffer, "the buffer")


# --------------------------------------------------------------------------- methods
def _install_file_methods() -> None:
    """Give the data classes metatensor's ``save``/``load`` methods, with its signatures.

    metatensor users write ``tensor.save(path)`` and ``TensorMap.load(path)`` as often as the
    free functions. The data classes know nothing of files (the data model imports nothing
    above it), so this module, which sits above them, adds the methods when it is imported,
    which ``import eqx_tensor`` always does. As in metatensor, the TensorMap and
    TensorBlock methods take ``use_numpy`` (see :func:`load`) and the Labels ones do not.
    """

    def tensor_save(
        self: Any, file: PathOrFile, use_numpy: bool = False, *, compress: bool = False
    ) -> None:
        save(file, self, use_numpy=use_numpy, compress=compress)

    def tensor_save_buffer(
        self: Any, use_numpy: bool = False, *, compress: bool = False
    ) -> memoryview:
        return save_buffer(self, use_numpy=use_numpy, compress=compress)

    def labels_save(self: Labels, file: PathOrFile) -> None:
        save(file, self)

    def labels_save_buffer(self: Labels) -> memoryview:
        return save_buffer(self)

    def tensor_load(file: PathOrFile, use_numpy: bool = False) -> TensorMap:
        return load(file, use_numpy=use_numpy)

    def tensor_load_buffer(buffer: Buffer, use_numpy: bool = False) -> TensorMap:
        return load_buffer(buffer, use_numpy=use_numpy)

    def block_load(file: PathOrFile, use_numpy: bool = False) -> TensorBlock:
        return load_block(file, use_numpy=use_numpy)

    def block_load_buffer(buffer: Buffer, use_numpy: bool = False) -> TensorBlock:
        return load_block_buffer(buffer, use_numpy=use_numpy)

    methods = {
        TensorMap: ("load", tensor_save, tensor_save_buffer, tensor_load, tensor_load_buffer),
        TensorBlock: ("load_block", tensor_save, tensor_save_buffer, block_load, block_load_buffer),
        Labels: ("load_labels", labels_save, labels_save_buffer, load_labels, load_labels_buffer),
    }
    for cls, (
        loader,
        save_method,
        save_buffer_method,
        load_method,
        load_buffer_method,
    ) in methods.items():
        docs = {
            "save": "Save in metatensor's ``.mts`` format: :func:`eqx_tensor.save` "
            "(``compress`` is ours, not metatensor's).",
            "save_buffer": "The bytes :meth:`save` writes, as a ``memoryview``: "
            ":func:`eqx_tensor.save_buffer`.",
            "load": f"Read a ``.mts`` file (no pickle): :func:`eqx_tensor.{loader}`.",
            "load_buffer": "Read from the bytes of a ``.mts`` file.",
        }
        for name, method in (
            ("save", save_method),
            ("save_buffer", save_buffer_method),
            ("load", load_method),
            ("load_buffer", load_buffer_method),
        ):
            # a fresh function per class, so that each one has its own name and docs
            function = types.FunctionType(
                method.__code__, method.__globals__, name, method.__defaults__, method.__closure__
            )
            function.__kwdefaults__ = method.__kwdefaults__
            function.__qualname__ = f"{cls.__name__}.{name}"
            function.__doc__ = docs[name]
            function.__annotations__ = dict(method.__annotations__)
            setattr(cls, name, staticmethod(function) if name.startswith("load") else function)


_install_file_methods()
