"""Labels: named integer metadata for the rows of samples, components, properties and keys.

A :class:`Labels` has ``names`` (a tuple of str) and ``values`` of shape ``(n, len(names))``.

Two representations share the class:

* **static** labels hold a read-only ``np.int32`` array. They are hashable and enter JAX
  pytrees as auxiliary data, so ``jax.jit`` specialises on them and every shape decision of
  an operation is known at trace time. Rows are unique.
* **dynamic** labels hold a ``jax.Array`` (possibly a tracer). Their names and count are
  static but their values travel as a pytree leaf, so batches with different sample
  values but equal sizes share one compiled function. Operations that need concrete
  values raise a clear error on them (see :func:`Labels.require_static`). Being integer
  leaves, they make ``jax.grad`` with respect to a whole TensorMap ask for
  ``allow_int=True`` (their gradient is then ``float0``); differentiating with respect to
  parameters, or to the values alone, needs nothing.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import jax
import numpy as np

from ._backend import TRACER_ERRORS
from ._file_methods import FileMethods

__all__ = ["Labels", "LabelsEntry"]

_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_INT32 = np.iinfo(np.int32)


def _check_names(names: str | Sequence[str]) -> tuple[str, ...]:
    if isinstance(names, str):
        names = (names,)
    names = tuple(names)
    for name in names:
        if not isinstance(name, str):
            raise TypeError(f"Labels names must be strings, got {type(name).__name__} ({name!r})")
        if not _NAME_RE.match(name):
            raise ValueError(f"Labels name {name!r} is not a valid identifier")
    if len(set(names)) != len(names):
        raise ValueError(f"Labels names must be unique, got {list(names)}")
    return names


def _static_values(values: Any, names: tuple[str, ...]) -> np.ndarray:
    array = np.asarray(values)
    if array.dtype == object:
        raise TypeError("Labels values must be an integer array, got an object array")
    if array.dtype.kind == "b" or array.dtype.kind not in "iu":
        if array.size == 0 and array.dtype.kind == "f":
            array = array.astype(np.int32)
        else:
            raise ValueError(f"Labels values must be integers, got dtype {array.dtype}")
    if array.ndim != 2:
        raise ValueError(
            f"Labels values must be a 2-D array of shape (n, {len(names)}), got shape {array.shape}"
        )
    if array.shape[1] != len(names):
        raise ValueError(
            f"Labels values have {array.shape[1]} columns but there are {len(names)} names "
            f"{list(names)}"
        )
    if array.size and (array.min() < _INT32.min or array.max() > _INT32.max):
        raise ValueError("Labels values must fit in int32")
    array = np.ascontiguousarray(array, dtype=np.int32)
    array.flags.writeable = False
    return array


def _row_view(values: np.ndarray) -> np.ndarray:
    """View each row as one opaque item, so rows can be compared with 1-D numpy set ops."""
    values = np.ascontiguousarray(values, dtype=np.int32)
    return values.view(np.dtype((np.void, 4 * values.shape[1]))).reshape(-1)


class LabelsEntry:
    """One row of a :class:`Labels`: ``names`` and the integer ``values`` of that row."""

    __slots__ = ("_names", "_values")

    def __init__(self, names: tuple[str, ...], values: np.ndarray):
        self._names = names
        self._values = values

    @property
    def names(self) -> list[str]:
        return list(self._names)

    @property
    def values(self) -> np.ndarray:
        """The row, shape ``(len(names),)``."""
        return self._values

    def __len__(self) -> int:
        return len(self._names)

    def __iter__(self) -> Iterator[int]:
        return (int(v) for v in self._values)

    def __getitem__(self, index: int | str) -> int:
        if isinstance(index, str):
            try:
                index = self._names.index(index)
            except ValueError:
                raise ValueError(f"'{index}' is not a name of this entry {self}") from None
        return int(self._values[index])

    def __eq__(self, other: object) -> bool:
        if isinstance(other, LabelsEntry):
            return self._names == other._names and bool(np.all(self._values == other._values))
        if isinstance(other, (tuple, list, np.ndarray)):
            return len(other) == len(self._values) and bool(np.all(self._values == other))
        return NotImplemented

    def __hash__(self) -> int:
        return hash((self._names, tuple(self)))

    def __repr__(self) -> str:
        inner = ", ".join(f"{n}={int(v)}" for n, v in zip(self._names, self._values))
        return f"LabelsEntry({inner})"


class Labels(FileMethods):
    """Named integer metadata, following :py:class:`metatensor.Labels`.

    Args:
        names: one name or a sequence of names, each a valid identifier, all different.
        values: integer array of shape ``(n, len(names))``. A NumPy array (or nested
            lists) gives static labels, which must have unique rows; a ``jax.Array``
            gives dynamic labels (see the module docstring).
    """

    __slots__ = ("__weakref__", "_hash", "_index", "_names", "_values")
    _LOADERS = ("load_labels", "load_labels_buffer")

    def __init__(self, names: str | Sequence[str], values: Any):
        names = _check_names(names)
        self._names = names
        self._hash: int | None = None
        self._index: dict[bytes, int] | None = None
        if isinstance(values, jax.Array):
            if values.ndim != 2 or values.shape[1] != len(names):
                raise ValueError(
                    f"Labels values must have shape (n, {len(names)}), got {values.shape}"
                )
            if not np.issubdtype(values.dtype, np.integer):
                raise ValueError(f"Labels values must be integers, got dtype {values.dtype}")
            self._values = values
            return
        self._values = _static_values(values, names)
        if len(names) > 0 and len(self._values) > 1:
            rows = _row_view(self._values)
            unique, counts = np.unique(rows, return_counts=True)
            if len(unique) != len(rows):
                duplicate = unique[counts > 1][0]
                first = int(np.nonzero(rows == duplicate)[0][0])
                raise ValueError(
                    f"Labels must have unique entries: {self.entry(first)} appears "
                    f"{int(counts[counts > 1][0])} times"
                )

    # ----------------------------------------------------------------- constructors
    @classmethod
    def _unchecked(cls, names: tuple[str, ...], values: Any) -> Labels:
        """Build without validation, for values that are already known to be valid."""
        self = object.__new__(cls)
        self._names = names
        self._values = values
        self._hash = None
        self._index = None
        if isinstance(values, np.ndarray) and values.flags.writeable:
            values.flags.writeable = False
        return self

    @classmethod
    def single(cls) -> Labels:
        """Labels with one dimension ``_`` and a single entry ``0``, for blocks without metadata."""
        return cls(["_"], np.zeros((1, 1), dtype=np.int32))

    @classmethod
    def empty(cls, names: str | Sequence[str]) -> Labels:
        """Labels with the given names and no entries."""
        names = _check_names(names)
        return cls(names, np.zeros((0, len(names)), dtype=np.int32))

    @classmethod
    def range(cls, name: str, end: int) -> Labels:
        """Labels with one dimension ``name`` and the entries ``0, 1, ..., end - 1``."""
        return cls([name], np.arange(end, dtype=np.int32).reshape(-1, 1))

    # ----------------------------------------------------------------- basic properties
    @property
    def names(self) -> list[str]:
        return list(self._names)

    @property
    def values(self) -> Any:
        """The values, shape ``(len(self), len(self.names))``: ``np.ndarray`` or ``jax.Array``."""
        return self._values

    @property
    def is_dynamic(self) -> bool:
        """Whether the values are a JAX array (traced or not) rather than static NumPy."""
        return not isinstance(self._values, np.ndarray)

    def to_dynamic(self) -> Labels:
        """Same labels with values as a ``jax.Array`` leaf (see the module docstring)."""
        if self.is_dynamic:
            return self
        return Labels._unchecked(self._names, jax.numpy.asarray(self._values))

    def to_static(self) -> Labels:
        """Same labels with concrete NumPy values; fails inside ``jax.jit`` for traced values."""
        if not self.is_dynamic:
            return self
        try:
            values = np.asarray(self._values)
        except TRACER_ERRORS:
            raise ValueError(
                f"cannot make dynamic Labels {self._names} static inside a jax transformation"
            ) from None
        return Labels(self._names, values)

    @property
    def device(self) -> Any:
        """``"cpu"`` for static labels (host NumPy), else the device of the JAX values."""
        return _device(self._values)

    def to(self, device: Any = None) -> Labels:
        """Counterpart of metatensor's ``Labels.to(device)``.

        Static labels are host metadata that ``jax.jit`` reads at trace time: they stay as
        they are. The values of dynamic labels are moved with :func:`jax.device_put`.
        """
        if device is None or not self.is_dynamic:
            return self
        return Labels._unchecked(self._names, jax.device_put(self._values, _resolve_device(device)))

    def require_static(self, operation: str) -> Labels:
        """Return ``self`` if static, else raise a ``ValueError`` naming ``operation``."""
        if self.is_dynamic:
            raise ValueError(
                f"{operation} needs the values of the labels {list(self._names)}, but they are "
                "dynamic (a JAX array that is only known at run time); use static labels, or "
                "an operation that only needs names and sizes"
            )
        return self

    def __len__(self) -> int:
        return int(self._values.shape[0])

    def __iter__(self) -> Iterator[LabelsEntry]:
        self.require_static("iterating over Labels")
        return (LabelsEntry(self._names, row) for row in self._values)

    def __getitem__(self, index: Any) -> Any:
        if isinstance(index, str):
            return self.column(index)
        if isinstance(index, (int, np.integer)):
            return self.entry(int(index))
        if isinstance(index, slice) or (
            isinstance(index, (np.ndarray, list)) and not isinstance(index, str)
        ):
            values = self._values[index]
            if self.is_dynamic:
                return Labels._unchecked(self._names, values)
            return Labels._unchecked(self._names, np.ascontiguousarray(values))
        raise TypeError(
            f"Labels can be indexed by a name (str), an entry (int), a slice or an integer "
            f"array, got {type(index).__name__}"
        )

    def entry(self, index: int) -> LabelsEntry:
        """The ``index``-th entry."""
        self.require_static("Labels.entry")
        n = len(self)
        if not -n <= index < n:
            raise IndexError(f"entry index {index} is out of range for Labels with {n} entries")
        return LabelsEntry(self._names, self._values[index])

    def column(self, name: str) -> Any:
        """The values of dimension ``name``, shape ``(len(self),)``."""
        return self._values[:, self._dimension_index(name)]

    def _dimension_index(self, name: str) -> int:
        try:
            return self._names.index(name)
        except ValueError:
            raise ValueError(
                f"'{name}' is not a dimension of these Labels, names are {list(self._names)}"
            ) from None

    # ----------------------------------------------------------------- lookups
    def _lookup(self) -> dict[bytes, int]:
        if self._index is None:
            self._index = {row.tobytes(): i for i, row in enumerate(self._values)}
        return self._index

    def position(self, entry: LabelsEntry | Sequence[int] | np.ndarray) -> int | None:
        """Index of ``entry`` in these labels, or ``None`` if it is not there."""
        self.require_static("Labels.position")
        if isinstance(entry, LabelsEntry):
            if entry._names != self._names:
                raise ValueError(
                    f"entry names {list(entry._names)} differ from labels names {list(self._names)}"
                )
            row = entry.values
        else:
            row = np.asarray(entry)
            if row.shape != (len(self._names),):
                raise ValueError(
                    f"entry must have {len(self._names)} values for names {list(self._names)}, "
                    f"got shape {row.shape}"
                )
        return self._lookup().get(np.asarray(row, dtype=np.int32).tobytes())

    def __contains__(self, entry: Any) -> bool:
        return self.position(entry) is not None

    def positions(self, other: Labels) -> np.ndarray:
        """Index in ``self`` of each entry of ``other`` (same names), -1 where missing."""
        self._check_same_names(other, "positions")
        other.require_static("Labels.positions")
        lookup = self._lookup()
        return np.array([lookup.get(row.tobytes(), -1) for row in other._values], dtype=np.int64)

    def select(self, selection: Labels) -> np.ndarray:
        """Indices of the entries matching ``selection`` on the dimensions it names.

        ``selection`` names a subset of this labels' dimensions; an entry is selected when
        its values on those dimensions equal one of the selection entries.
        """
        self.require_static("Labels.select")
        if not isinstance(selection, Labels):
            raise TypeError(f"selection must be Labels, got {type(selection).__name__}")
        selection.require_static("Labels.select")
        columns = [self._dimension_index(name) for name in selection._names]
        if len(columns) == 0:
            return np.arange(len(self), dtype=np.int64) if len(selection) else np.zeros(0, int)
        if selection._names == self._names:
            # metatensor-core returns full-entry selections in the order of the selection
            positions = self.positions(selection)
            return positions[positions >= 0].astype(np.int64)
        mine = _row_view(self._values[:, columns])
        wanted = _row_view(selection._values)
        return np.nonzero(np.isin(mine, wanted))[0].astype(np.int64)

    # ----------------------------------------------------------------- set operations
    def _check_same_names(self, other: Labels, operation: str) -> None:
        if not isinstance(other, Labels):
            raise TypeError(f"{operation} expects Labels, got {type(other).__name__}")
        if other._names != self._names:
            raise ValueError(
                f"{operation} needs Labels with the same names, got {list(self._names)} and "
                f"{list(other._names)}"
            )
        self.require_static(f"Labels.{operation}")
        other.require_static(f"Labels.{operation}")

    def union(self, other: Labels) -> Labels:
        """Entries of ``self`` followed by the entries of ``other`` not in ``self``."""
        return self.union_and_mapping(other)[0]

    def union_and_mapping(self, other: Labels) -> tuple[Labels, np.ndarray, np.ndarray]:
        """Union, and the position in it of each entry of ``self`` and of ``other``."""
        self._check_same_names(other, "union")
        lookup = dict(self._lookup())
        extra = []
        mapping_2 = np.empty(len(other), dtype=np.int64)
        for i, row in enumerate(other._values):
            key = row.tobytes()
            position = lookup.get(key)
            if position is None:
                position = len(lookup)
                lookup[key] = position
                extra.append(row)
            mapping_2[i] = position
        if extra:
            values = np.concatenate([self._values, np.stack(extra)], axis=0)
        else:
            values = self._values
        mapping_1 = np.arange(len(self), dtype=np.int64)
        return Labels._unchecked(self._names, values), mapping_1, mapping_2

    def intersection(self, other: Labels) -> Labels:
        """Entries both in ``self`` and ``other``.

        As in metatensor-core, the entries come in the order of the shorter of the two
        (of ``self`` when they have the same length).
        """
        return self.intersection_and_mapping(other)[0]

    def intersection_and_mapping(self, other: Labels) -> tuple[Labels, np.ndarray, np.ndarray]:
        """Intersection, and the position in it of each entry of ``self``/``other`` (or -1)."""
        self._check_same_names(other, "intersection")
        if len(other) < len(self):
            result, mapping_2, mapping_1 = other.intersection_and_mapping(self)
            return result, mapping_1, mapping_2
        in_other = other.positions(self) >= 0
        values = self._values[in_other]
        mapping_1 = np.full(len(self), -1, dtype=np.int64)
        mapping_1[in_other] = np.arange(int(in_other.sum()))
        result = Labels._unchecked(self._names, np.ascontiguousarray(values))
        mapping_2 = result.positions(other) if len(other) else np.zeros(0, dtype=np.int64)
        return result, mapping_1, mapping_2

    def difference(self, other: Labels) -> Labels:
        """Entries of ``self`` that are not in ``other``."""
        return self.difference_and_mapping(other)[0]

    def difference_and_mapping(self, other: Labels) -> tuple[Labels, np.ndarray]:
        """Difference, and the position in it of each entry of ``self`` (or -1)."""
        self._check_same_names(other, "difference")
        keep = other.positions(self) < 0
        mapping = np.full(len(self), -1, dtype=np.int64)
        mapping[keep] = np.arange(int(keep.sum()))
        values = np.ascontiguousarray(self._values[keep])
        return Labels._unchecked(self._names, values), mapping

    # ----------------------------------------------------------------- dimension edits
    def _new_column(self, name: str, values: Any) -> Any:
        if name in self._names:
            raise ValueError(f"'{name}' is already a dimension of these Labels")
        if isinstance(values, (int, np.integer)):
            values = np.full(len(self), values, dtype=np.int32)
        if self.is_dynamic or isinstance(values, jax.Array):
            column = jax.numpy.asarray(values, dtype=np.int32)
        else:
            column = np.asarray(values)
            if column.dtype.kind not in "iu":
                raise ValueError(f"values for dimension '{name}' must be integers")
        if column.shape != (len(self),):
            raise ValueError(
                f"values for dimension '{name}' must have shape ({len(self)},), got {column.shape}"
            )
        return column

    def insert(self, index: int, name: str, values: Any) -> Labels:
        """New labels with dimension ``name`` inserted at position ``index``."""
        _check_names([name])
        column = self._new_column(name, values)
        if not 0 <= index <= len(self._names):
            raise ValueError(f"insert index {index} out of range for {len(self._names)} names")
        names = (*self._names[:index], name, *self._names[index:])
        xp = (
            np
            if isinstance(self._values, np.ndarray) and isinstance(column, np.ndarray)
            else (jax.numpy)
        )
        new = xp.concatenate(
            [self._values[:, :index], column[:, None].astype(np.int32), self._values[:, index:]],
            axis=1,
        )
        return Labels(names, new) if xp is np else Labels._unchecked(names, new)

    def append(self, name: str, values: Any) -> Labels:
        """New labels with dimension ``name`` added last."""
        return self.insert(len(self._names), name, values)

    def remove(self, name: str) -> Labels:
        """New labels without dimension ``name``; fails if that makes entries repeat."""
        index = self._dimension_index(name)
        names = self._names[:index] + self._names[index + 1 :]
        xp = np if isinstance(self._values, np.ndarray) else jax.numpy
        values = xp.concatenate([self._values[:, :index], self._values[:, index + 1 :]], axis=1)
        if xp is np:
            try:
                return Labels(names, values)
            except ValueError as error:
                raise ValueError(
                    f"removing dimension '{name}' would leave repeated entries: {error}"
                ) from None
        return Labels._unchecked(names, values)

    def rename(self, old: str, new: str) -> Labels:
        """New labels with dimension ``old`` renamed ``new``."""
        index = self._dimension_index(old)
        _check_names([new])
        if new in self._names and new != old:
            raise ValueError(f"'{new}' is already a dimension of these Labels")
        names = (*self._names[:index], new, *self._names[index + 1 :])
        return Labels._unchecked(names, self._values)

    def permute(self, dimensions_indexes: Sequence[int]) -> Labels:
        """New labels with the dimensions reordered: new dimension i is old ``indexes[i]``."""
        order = [int(i) for i in dimensions_indexes]
        if sorted(order) != list(range(len(self._names))):
            raise ValueError(
                f"permute needs a permutation of 0..{len(self._names) - 1}, got {order}"
            )
        names = tuple(self._names[i] for i in order)
        values = self._values[:, order]
        if isinstance(values, np.ndarray):
            values = np.ascontiguousarray(values)
        return Labels._unchecked(names, values)

    def view(self, names: str | Sequence[str]) -> Labels:
        """Labels restricted to some dimensions; rows may repeat, so the result is unchecked."""
        names = _check_names(names)
        columns = [self._dimension_index(name) for name in names]
        values = self._values[:, columns]
        if isinstance(values, np.ndarray):
            values = np.ascontiguousarray(values)
        return Labels._unchecked(names, values)

    # ----------------------------------------------------------------- equality, hashing
    def __eq__(self, other: object) -> bool:
        if self is other:
            return True
        if not isinstance(other, Labels):
            return NotImplemented
        if self._names != other._names or self._values.shape != other._values.shape:
            return False
        if self.is_dynamic or other.is_dynamic:
            if self.is_dynamic and other.is_dynamic:
                return self._values is other._values
            return False
        if self._hash is not None and other._hash is not None and self._hash != other._hash:
            return False
        return bool(np.array_equal(self._values, other._values))

    def __ne__(self, other: object) -> bool:
        result = self.__eq__(other)
        return result if result is NotImplemented else not result

    def __hash__(self) -> int:
        if self._hash is None:
            if self.is_dynamic:
                self._hash = hash((self._names, self._values.shape, "dynamic"))
            else:
                self._hash = hash((self._names, self._values.shape, self._values.tobytes()))
        return self._hash

    # ----------------------------------------------------------------- printing
    def print(self, max_entries: int = -1, indent: int = 0) -> str:
        """Table of names and values; at most ``max_entries`` rows (-1 for all)."""
        if self.is_dynamic:
            return " " * indent + f"{'  '.join(self._names)}  ({len(self)} dynamic entries)"
        rows = [[str(int(v)) for v in row] for row in self._values]
        widths = [
            max([len(name)] + [len(row[j]) for row in rows]) for j, name in enumerate(self._names)
        ]
        header = "  ".join(name.ljust(w) for name, w in zip(self._names, widths)).rstrip()

        def format_row(row: list[str]) -> str:
            cells = []
            for value, width in zip(row, widths):
                left = (width - len(value)) // 2
                cells.append((" " * left + value).ljust(width))
            return (" " * indent + "  ".join(cells)).rstrip()

        lines = [" " * indent + header]
        if 0 <= max_entries < len(rows):
            head = (max_entries + 1) // 2
            tail = max_entries - head
            lines += [format_row(r) for r in rows[:head]]
            lines.append(" " * (indent + max(len(header) // 2 - 1, 0)) + "...")
            lines += [format_row(r) for r in rows[len(rows) - tail :]] if tail else []
        else:
            lines += [format_row(r) for r in rows]
        return "\n".join(lines)

    def __str__(self) -> str:
        return "Labels(\n" + self.print(max_entries=4, indent=4) + "\n)"

    def __repr__(self) -> str:
        return "Labels(\n" + self.print(max_entries=20, indent=4) + "\n)"


def _device(array: Any) -> Any:
    """``"cpu"`` for NumPy arrays, else the (single) device of a JAX array."""
    if isinstance(array, np.ndarray):
        return "cpu"
    devices = array.devices()
    return next(iter(devices)) if len(devices) == 1 else devices


def _resolve_device(device: Any) -> Any:
    """A JAX device (or sharding) from ``device``; names such as ``"cpu"`` or ``"gpu"`` give
    the first device of that platform."""
    if isinstance(device, str):
        try:
            return jax.devices(device.split(":")[0])[0]
        except RuntimeError as error:
            raise ValueError(f"no JAX device for {device!r}: {error}") from None
    return device


def _flatten_labels(labels: Labels) -> tuple[tuple[Any, ...], Any]:
    if labels.is_dynamic:
        return (labels._values,), labels._names
    return (), labels


def _unflatten_labels(aux: Any, children: Iterable[Any]) -> Labels:
    if isinstance(aux, Labels):
        return aux
    (values,) = children
    return Labels._unchecked(aux, values)


jax.tree_util.register_pytree_node(Labels, _flatten_labels, _unflatten_labels)
