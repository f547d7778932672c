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

Lookups
-------
The constructor, :meth:`Labels.position`, :meth:`Labels.positions`, :meth:`Labels.select` and
the set operations work on whole arrays, with no Python loop over entries, through an index
built once per static labels (at construction, when the uniqueness check builds it anyway,
or on first use):

* labels of at most ``_SMALL`` entries use a ``dict`` from row tuples to positions: a Python
  loop over so few entries avoids NumPy's fixed cost per call;
* larger labels pack each row into one ``int64`` key, ``sum_j code_j * stride_j``, where
  ``code_j`` is the value minus the column's minimum or, for columns using few of the values
  in their range (e.g. atomic numbers), the rank of the value among the column's values, and
  the strides are products of the column widths (so keys follow the lexicographic order of
  the rows; when the product does not fit in int64, the key of the leading columns is first
  replaced by its rank among the distinct leading keys). Keys spanning at most
  ``_TABLE_SLOTS_PER_ENTRY`` slots per entry index a table of positions directly (one gather
  per lookup); sparser keys are sorted once and looked up with :func:`numpy.searchsorted`.

Lookups in labels built with ``assume_unique=True`` that do repeat an entry give its first
occurrence, as metatensor-core's do.

Where metatensor differs between its own entry points, or accepts inputs it then silently
changes, this module follows metatensor-core 0.2.6 except for the deviations listed in the
docstring of :class:`Labels`.
"""

from __future__ import annotations

import io
import operator
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import jax
import numpy as np

from ._backend import TRACER_ERRORS

__all__ = ["Labels", "LabelsEntry", "same_labels"]

_INT32_MIN = -(2**31)
_INT32_MAX = 2**31 - 1
# labels with at most this many entries are checked and looked up with a dict of row tuples
_SMALL = 128
# single-entry lookups (Labels.position) use a dict up to this many entries, built on first use
_POSITION_DICT = 8192
# keys are int64: the product of the column ranges must stay below this
_KEY_LIMIT = 2**63
# a dense table of positions is used when the keys span at most this many slots per entry
_TABLE_SLOTS_PER_ENTRY = 8
_TABLE_MIN_SLOTS = 4096


# --------------------------------------------------------------------------- validation
def _check_names(names: Any, function: str = "Labels") -> tuple[str, ...]:
    """Names as a tuple of str; ``""`` means no names, one string means one name."""
    if isinstance(names, str):
        names = () if names == "" else (names,)
    else:
        try:
            names = tuple(names)
        except TypeError:
            raise TypeError(
                f"{function}: names must be a string or a sequence of strings, got "
                f"{type(names).__name__}"
            ) from None
    for name in names:
        if not isinstance(name, str):
            raise TypeError(
                f"{function}: Labels names must be strings, got {type(name).__name__} "
                f"({name!r}) in {list(names)}"
            )
        # ASCII identifiers: what metatensor-core accepts as a dimension name
        if not (name.isascii() and name.isidentifier()):
            raise ValueError(
                f"{function}: {name!r} is not a valid identifier; Labels names are made of "
                "ASCII letters, digits and '_', and do not start with a digit"
            )
    if len(set(names)) != len(names):
        repeated = next(name for name in names if names.count(name) > 1)
        raise ValueError(
            f"{function}: Labels names must be unique, got '{repeated}' more than once in "
            f"{list(names)}"
        )
    if any(type(name) is not str for name in names):  # e.g. np.str_
        names = tuple(str(name) for name in names)
    return names


def _check_integer_dtype(dtype: np.dtype, what: str) -> None:
    if dtype.kind not in "iub":
        raise TypeError(
            f"{what} must be integers (convertible to int32), got dtype {dtype}; convert them "
            "with .astype(np.int32) if the values are whole numbers"
        )


def _check_int32_range(array: np.ndarray, what: str) -> None:
    """Refuse values outside int32 instead of letting the cast wrap them around."""
    if array.dtype.kind == "b" or array.dtype.itemsize < 4 or array.dtype == np.int32:
        return
    if array.size == 0:
        return
    if array.size <= 2 * _SMALL:
        flat = array.ravel().tolist()  # NumPy reductions cost more than this on few values
        low, high = min(flat), max(flat)
    else:
        low, high = int(array.min()), int(array.max())
    if low < _INT32_MIN or high > _INT32_MAX:
        raise ValueError(
            f"{what} must fit in int32 ([{_INT32_MIN}, {_INT32_MAX}]), got values in "
            f"[{low}, {high}]"
        )


def _static_values(values: Any, names: tuple[str, ...], function: str) -> np.ndarray:
    """``values`` as a C-contiguous int32 array of shape ``(n, len(names))``."""
    if isinstance(values, np.ndarray):
        array = values
    else:
        try:
            array = np.asarray(values)
        except (TypeError, ValueError) as error:
            raise TypeError(
                f"{function}: values must be an integer array of shape (n, {len(names)}), "
                f"could not convert {type(values).__name__}: {error}"
            ) from None
    if array.ndim == 0 and array is values:
        # as metatensor (``len(values)`` fails): a 0-d array is the wrong type of values
        raise TypeError(
            f"{function}: values must be a 2-D array of shape (n, {len(names)}), got a 0-d array"
        )
    if array.ndim >= 1 and array.shape[0] == 0:
        # as in metatensor: any empty array means no entries
        return np.zeros((0, len(names)), dtype=np.int32)
    if array.dtype == object:
        raise TypeError(f"{function}: values must be an integer array, got an object array")
    _check_integer_dtype(array.dtype, f"{function}: values")
    if array.ndim != 2:
        raise ValueError(
            f"{function}: values must be a 2-D array of shape (n, {len(names)}), got shape "
            f"{array.shape}"
        )
    if array.shape[1] != len(names):
        raise ValueError(
            f"{function}: values have {array.shape[1]} columns but there are {len(names)} "
            f"names {list(names)}"
        )
    _check_int32_range(array, f"{function}: values")
    if array.dtype != np.int32 or not array.flags.c_contiguous:
        array = np.ascontiguousarray(array, dtype=np.int32)
    return array


def _dynamic_values(values: jax.Array, names: tuple[str, ...], function: str) -> jax.Array:
    if values.ndim >= 1 and values.shape[0] == 0:
        return jax.numpy.zeros((0, len(names)), dtype=np.int32)
    if not np.issubdtype(values.dtype, np.integer):
        raise TypeError(
            f"{function}: Labels values must be integers, got a jax.Array of dtype {values.dtype}"
        )
    if values.ndim != 2 or values.shape[1] != len(names):
        raise ValueError(
            f"{function}: values must have shape (n, {len(names)}) for the names "
            f"{list(names)}, got a jax.Array of shape {values.shape}"
        )
    return values


def _as_row(entry: Any, n_names: int, function: str) -> tuple[int, ...]:
    """One entry as a tuple of Python ints (a LabelsEntry, a sequence or a 1-D array)."""
    if isinstance(entry, LabelsEntry):
        row = tuple(entry._values.tolist())
    elif isinstance(entry, np.ndarray) and entry.ndim == 1 and entry.dtype.kind in "iu":
        row = tuple(entry.tolist())
    elif type(entry) is tuple and all(type(v) is int for v in entry):
        row = entry
    else:
        if isinstance(entry, np.ndarray):
            entry = entry.tolist()
        try:
            row = tuple(map(operator.index, entry))
        except TypeError:
            raise TypeError(
                f"{function}: the entry must be a LabelsEntry or a sequence of {n_names} "
                f"integers, got {entry!r}"
            ) from None
    if len(row) != n_names:
        raise ValueError(
            f"{function}: the entry has {len(row)} values but these Labels have {n_names} "
            "dimensions"
        )
    return row


# --------------------------------------------------------------------------- lookups
def _row_dict(values: np.ndarray) -> tuple[dict[tuple[int, ...], int], tuple[int, int] | None]:
    """``{row: first position}`` of small values, and ``(first, repeat)`` of a duplicate."""
    rows = list(map(tuple, values.tolist()))
    lookup = dict(zip(rows, range(len(rows))))
    if len(lookup) == len(rows):
        return lookup, None
    lookup, duplicate = {}, None
    for i, row in enumerate(rows):
        first = lookup.setdefault(row, i)
        if first != i and duplicate is None:
            duplicate = (first, i)
    return lookup, duplicate


# kinds of the steps that build a key (see _packed_keys)
_OFFSET, _RANK, _COMPRESS = 0, 1, 2


def _packed_keys(values: np.ndarray) -> tuple[np.ndarray, tuple[tuple[Any, ...], ...], int]:
    """int64 keys of the rows of ``values`` (n > 0 rows, k > 0 columns), the steps that
    compute them, and the number of possible keys.

    Each step is ``(kind, j, low, width, table)``. ``_OFFSET`` and ``_RANK`` steps append
    column ``j``, ``key * width + code``, where ``code`` is the value minus the column's
    minimum ``low``, or, for columns that use few of the values in their range (e.g. atomic
    numbers), ``table[value - low]``: the rank of the value among the column's distinct
    values (-1 for absent values). A ``_COMPRESS`` step replaces the key by its rank in
    ``table``, the sorted distinct keys so far, which keeps the product of the widths in int64
    whatever the values.
    """
    n = len(values)
    keys = None
    span = 1
    steps = []
    for j in range(values.shape[1]):
        column = values[:, j]
        low, high = int(column.min()), int(column.max())
        width = high - low + 1
        code = column.astype(np.int64)
        if low:
            code -= low
        step: tuple[Any, ...] = (_OFFSET, j, low, width, None)
        if 2 < width <= max(n, _TABLE_MIN_SLOTS):
            present = np.zeros(width, dtype=bool)
            present[code] = True
            count = int(np.count_nonzero(present))
            if 2 * count <= width:
                ranks = np.cumsum(present, dtype=np.int64) - 1
                ranks[~present] = -1
                code = ranks[code]
                width = count
                step = (_RANK, j, low, width, ranks)
        if span * width >= _KEY_LIMIT:
            distinct = np.unique(keys)
            keys = np.searchsorted(distinct, keys).astype(np.int64, copy=False)
            steps.append((_COMPRESS, -1, 0, 0, distinct))
            span = len(distinct)
        if keys is None:
            keys = code
        else:
            keys *= width
            keys += code
        steps.append(step)
        span *= width
    return keys, tuple(steps), span


def _bounds(steps: tuple[tuple[Any, ...], ...]) -> dict[int, tuple[int, int]]:
    """``{column: (min, max)}`` of the values the steps were built from."""
    bounds = {}
    for kind, j, low, width, table in steps:
        if kind != _COMPRESS:
            bounds[j] = (low, low + (len(table) if kind == _RANK else width) - 1)
    return bounds


def _query_keys(
    steps: tuple[tuple[Any, ...], ...],
    rows: np.ndarray,
    bounds: dict[int, tuple[int, int]] | None = None,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Keys of arbitrary ``rows`` (m, k) under ``steps``, and which rows can be present
    (``None`` when all can); keys of the other rows are meaningless. ``bounds`` (see
    :func:`_bounds`) of the rows, when known, skip the range checks they make useless."""
    keys = None
    possible = None
    for kind, j, low, width, table in steps:
        if kind == _COMPRESS:
            rank = np.searchsorted(table, keys)
            np.minimum(rank, len(table) - 1, out=rank)
            hit = table[rank] == keys
            possible = hit if possible is None else np.logical_and(possible, hit, out=possible)
            keys = rank.astype(np.int64, copy=False)
            continue
        code = rows[:, j].astype(np.int64)
        if low:
            code -= low
        # negative offsets become huge unsigned numbers: one comparison checks both bounds
        if kind == _RANK:
            inside = code.view(np.uint64) < len(table)
            if not inside.all():
                code[~inside] = 0
            code = table[code]
            inside &= code >= 0
        elif bounds is not None and low <= bounds[j][0] and bounds[j][1] < low + width:
            inside = None
        else:
            inside = code.view(np.uint64) < width
        if inside is not None:
            possible = (
                inside if possible is None else np.logical_and(possible, inside, out=possible)
            )
        if keys is None:
            keys = code
        else:
            keys *= width
            keys += code
    if possible is not None and possible.all():
        possible = None
    return keys, possible


class _ArrayIndex:
    """Vectorised lookups in static values ``(n, k)``, ``n > 0``, ``k > 0`` (module docstring).

    ``duplicate`` is ``(first, repeat)`` positions of a repeated entry, or ``None``; with
    repeated entries (``assume_unique=True`` misused), lookups give the first occurrence.
    """

    __slots__ = ("duplicate", "n", "order", "sorted_keys", "steps", "table")

    def __init__(self, values: np.ndarray):
        keys, self.steps, span = _packed_keys(values)
        n = len(values)
        self.n = n
        self.table = self.sorted_keys = self.order = None
        self.duplicate = None
        if span <= max(_TABLE_SLOTS_PER_ENTRY * n, _TABLE_MIN_SLOTS):
            dtype = np.int32 if n <= _INT32_MAX else np.int64
            table = np.full(span, -1, dtype=dtype)
            positions = np.arange(n, dtype=dtype)
            # written backwards so that the first of repeated keys is the one kept
            table[keys[::-1]] = positions[::-1]
            hits = table[keys]
            if not np.array_equal(hits, positions):
                repeat = int(np.argmax(hits != positions))
                self.duplicate = (int(hits[repeat]), repeat)
            self.table = table
            return
        if n == 1 or bool(np.all(keys[1:] > keys[:-1])):
            self.sorted_keys = keys  # already sorted: the common case of sorted labels
            return
        order = np.argsort(keys, kind="stable")
        sorted_keys = keys[order]
        same = sorted_keys[1:] == sorted_keys[:-1]
        if same.any():
            i = int(np.argmax(same))
            self.duplicate = (int(order[i]), int(order[i + 1]))
        self.order = order
        self.sorted_keys = sorted_keys

    def lookup(
        self, rows: np.ndarray, bounds: dict[int, tuple[int, int]] | None = None
    ) -> np.ndarray:
        """Position of each row of ``rows`` (m, k), -1 where absent; int64 (``bounds``: see
        :func:`_query_keys`)."""
        keys, possible = _query_keys(self.steps, rows, bounds)
        if self.table is not None:
            if possible is not None:
                keys[~possible] = 0
            result = self.table[keys].astype(np.int64, copy=False)
            if possible is not None:
                result[~possible] = -1
            return result
        index = np.searchsorted(self.sorted_keys, keys)
        np.minimum(index, self.n - 1, out=index)
        found = self.sorted_keys[index] == keys
        if possible is not None:
            found &= possible
        if self.order is not None:
            index = self.order[index]
        return np.where(found, index, -1)

    def position(self, row: tuple[int, ...]) -> int:
        """Position of one row (Python ints), -1 if absent."""
        key = 0
        for kind, j, low, width, table in self.steps:
            if kind == _COMPRESS:
                rank = int(np.searchsorted(table, key))
                if rank == len(table) or table.item(rank) != key:
                    return -1
                key = rank
                continue
            code = row[j] - low
            if kind == _RANK:
                if code < 0 or code >= len(table):
                    return -1
                code = table.item(code)
                if code < 0:
                    return -1
            elif code < 0 or code >= width:
                return -1
            key = key * width + code
        if self.table is not None:
            return self.table.item(key)
        index = int(np.searchsorted(self.sorted_keys, key))
        if index == self.n or self.sorted_keys.item(index) != key:
            return -1
        return index if self.order is None else self.order.item(index)


# --------------------------------------------------------------------------- printing
def _print_centered(output: io.StringIO, text: str, width: int, last: bool) -> None:
    before = (width - len(text)) // 2
    output.write(" " * before)
    output.write(text)
    if not last:
        output.write(" " * (width - len(text) - before))


def _print_table(names: Sequence[str], values: np.ndarray, max_entries: int, indent: int) -> str:
    """metatensor-core's layout: each column as wide as its longest string plus 2, strings
    centred, the header unindented, ``...`` between the first and last entries."""
    widths = [len(name) + 2 for name in names]
    n = values.shape[0]
    if max_entries < 0 or n <= max_entries:
        first, second = values, values[:0]
    else:
        max_entries = max(max_entries, 2)
        after = max_entries // 2
        first, second = values[: max_entries - after], values[n - after :]
    first = [[str(v) for v in row] for row in first.tolist()]
    second = [[str(v) for v in row] for row in second.tolist()]
    for row in (*first, *second):
        for j, text in enumerate(row):
            widths[j] = max(widths[j], len(text) + 2)

    last = len(names) - 1
    output = io.StringIO()
    for j, name in enumerate(names):
        _print_centered(output, name, widths[j], j == last)
    output.write("\n")

    def write_rows(rows: list[list[str]]) -> None:
        for row in rows:
            output.write(" " * indent)
            for j, text in enumerate(row):
                _print_centered(output, text, widths[j], j == last)
            output.write("\n")

    write_rows(first)
    if second:
        half = sum(widths) // 2
        if half > 3:
            half -= 3
        output.write(" " * indent + " " * (half + 1) + "...\n")
        write_rows(second)
    return output.getvalue()[:-1]


# --------------------------------------------------------------------------- LabelsEntry
class LabelsEntry:
    """One row of a :class:`Labels`: ``names`` and the integer ``values`` of that row.

    Follows :py:class:`metatensor.LabelsEntry`; in addition, entries compare equal to
    tuples, lists and arrays of the same values, are hashable, and index by NumPy integers.
    """

    __slots__ = ("_names", "_values")

    def __init__(self, names: tuple[str, ...], values: np.ndarray):
        self._names = tuple(names)
        self._values = values

    @property
    def names(self) -> list[str]:
        """Names of the dimensions of this entry."""
        return list(self._names)

    @property
    def values(self) -> np.ndarray:
        """The row, shape ``(len(names),)``, int32."""
        return self._values

    @property
    def device(self) -> Any:
        """``"cpu"``: entries come from static (host NumPy) labels."""
        return _device(self._values)

    def print(self) -> str:
        """This entry as a named tuple: ``(name_1=value_1, name_2=value_2)``."""
        return "(" + ", ".join(f"{n}={v}" for n, v in zip(self._names, self._values)) + ")"

    def __len__(self) -> int:
        return len(self._names)

    def __iter__(self) -> Iterator[int]:
        return iter(self._values.tolist())

    def __getitem__(self, dimension: int | str) -> int:
        """The value of ``dimension`` (a name, or a position among the names)."""
        if isinstance(dimension, str):
            try:
                dimension = self._names.index(dimension)
            except ValueError:
                raise ValueError(
                    f"LabelsEntry: '{dimension}' not found in the dimensions of this entry "
                    f"{list(self._names)}"
                ) from None
        elif not isinstance(dimension, (int, np.integer)):
            raise TypeError(
                f"can only index LabelsEntry with str or int, got {type(dimension).__name__}"
            )
        return int(self._values[dimension])

    def __eq__(self, other: object) -> bool:
        if isinstance(other, LabelsEntry):
            return self._names == other._names and bool(np.array_equal(self._values, other._values))
        if isinstance(other, (tuple, list, np.ndarray)):
            return len(other) == len(self._values) and bool(np.all(self._values == other))
        return NotImplemented

    def __ne__(self, other: object) -> bool:
        result = self.__eq__(other)
        return result if result is NotImplemented else not result

    def __hash__(self) -> int:
        return hash((self._names, tuple(self)))

    def __repr__(self) -> str:
        return "LabelsEntry" + self.print()

    __str__ = __repr__


# --------------------------------------------------------------------------- Labels
class Labels:
    """Named integer metadata, following :py:class:`metatensor.Labels`.

    Args:
        names: the names of the dimensions: a sequence of strings, or one string for a
            single name (``""`` for no names). Each name is an ASCII identifier; all differ.
        values: integer array of shape ``(n, len(names))``; any array with no rows (shape
            ``(0,)``, ``(0, m)``...) gives empty labels. A NumPy array (or nested lists)
            gives static labels, which must have unique rows; a ``jax.Array`` gives dynamic
            labels (see the module docstring).
        assume_unique: skip the check that the rows are unique. Only for rows known to be
            unique (by construction, or checked before): lookups in labels with repeated
            rows give the first of them.

    Raises:
        TypeError: names that are not strings, values that are not integers.
        ValueError: invalid or repeated names, values of the wrong shape, outside int32, or
            with repeated rows.

    Deviations from metatensor-core 0.2.6: values may be nested lists or a ``jax.Array``
    (metatensor takes NumPy arrays and torch tensors only); values outside int32 raise
    instead of wrapping around; ``append`` adds the dimension after the last one
    (metatensor's inserts at ``len(self)``, the number of entries); labels are hashable,
    compare unequal (instead of raising) to other objects, and index by slices and integer
    arrays (giving Labels); ``select`` returns int64 positions (metatensor: uint64); new
    dimensions of ``insert`` / ``append`` may be an ``int`` (broadcast), and must be
    integers (metatensor truncates floats).
    """

    __slots__ = ("__weakref__", "_dict", "_hash", "_index", "_names", "_unique", "_values")

    def __init__(self, names: str | Sequence[str], values: Any, assume_unique: bool = False):
        names = _check_names(names)
        self._names = names
        self._hash: int | None = None
        self._dict: dict[tuple[int, ...], int] | None = None
        self._index: _ArrayIndex | None = None
        if isinstance(values, jax.Array):
            self._values = _dynamic_values(values, names, "Labels")
            self._unique = None
            return
        array = _static_values(values, names, "Labels")
        array.flags.writeable = False
        self._values = array
        if assume_unique:
            self._unique = None if len(array) > 1 else True
        else:
            self._check_unique("Labels")

    # ----------------------------------------------------------------- constructors
    @classmethod
    def _unchecked(cls, names: tuple[str, ...], values: Any) -> Labels:
        """Build without validation, for values that are already known to be valid."""
        self = object.__new__(cls)
        self._names = tuple(names)
        if isinstance(values, np.ndarray):
            if values.dtype != np.int32 or not values.flags.c_contiguous:
                values = np.ascontiguousarray(values, dtype=np.int32)
            if values.flags.writeable:
                values.flags.writeable = False
        self._values = values
        self._hash = None
        self._dict = None
        self._index = None
        self._unique = None
        return self

    def _check_unique(self, function: str) -> None:
        """Build the lookup index of static values and raise if a row repeats."""
        values = self._values
        n = len(values)
        if not self._names or n < 2:
            self._unique = n < 2
            return
        if n <= _SMALL:
            self._dict, duplicate = _row_dict(values)
        else:
            self._index = _ArrayIndex(values)
            duplicate = self._index.duplicate
        if duplicate is not None:
            first, repeat = duplicate
            entry = LabelsEntry(self._names, values[first]).print()
            raise ValueError(
                f"{function}: Labels values must have unique entries, but {entry} is at rows "
                f"{first} and {repeat}; remove the repeated rows (e.g. np.unique(values, "
                "axis=0)), or pass assume_unique=True only for rows known to be unique"
            )
        self._unique = True

    @classmethod
    def single(cls) -> Labels:
        """Labels with one dimension ``_`` and a single entry ``0``, for blocks without metadata."""
        return cls(["_"], np.zeros((1, 1), dtype=np.int32))

    @classmethod
    def empty(cls, names: str | Sequence[str]) -> Labels:
        """Labels with the given names and no entries."""
        names = _check_names(names, "Labels.empty")
        return cls(names, np.zeros((0, len(names)), dtype=np.int32))

    @classmethod
    def range(cls, name: str, end: int) -> Labels:
        """Labels with one dimension ``name`` and the entries ``0, 1, ..., end - 1``."""
        labels = cls([name], np.arange(end, dtype=np.int32).reshape(-1, 1), assume_unique=True)
        labels._unique = True
        return labels

    # ----------------------------------------------------------------- basic properties
    @property
    def names(self) -> list[str]:
        """Names of the dimensions."""
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
                f"Labels.to_static: the values of the Labels {list(self._names)} are a traced "
                "jax.Array (inside jax.jit or another transformation), only known at run time; "
                "call to_static() outside the transformation, or build the labels from NumPy "
                "values there"
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
            traced = isinstance(self._values, jax.core.Tracer)
            where = (
                "a traced jax.Array, only known at run time inside jax.jit or another "
                "transformation"
                if traced
                else "a jax.Array"
            )
            raise ValueError(
                f"{operation} needs the values of the labels {list(self._names)}, but they are "
                f"dynamic: their values are {where}. Build static labels from NumPy values, "
                "Labels(names, np.asarray(values)), or call labels.to_static() outside jax "
                "transformations; dynamic labels only support operations that need names "
                "and sizes"
            )
        return self

    def __len__(self) -> int:
        return int(self._values.shape[0])

    def __iter__(self) -> Iterator[LabelsEntry]:
        self.require_static("iterating over Labels")
        return (LabelsEntry(self._names, row) for row in self._values)

    def __getitem__(self, index: Any) -> Any:
        """A name gives its column, an integer its entry; a slice or an integer array the
        Labels of those entries (an eqx_tensor extension)."""
        if isinstance(index, str):
            return self.column(index)
        if isinstance(index, (int, np.integer)):
            return self.entry(int(index))
        if isinstance(index, (slice, np.ndarray, list)):
            values = self._values[index]
            if self.is_dynamic:
                return Labels._unchecked(self._names, values)
            result = Labels._unchecked(self._names, values)
            if isinstance(index, slice) and self._unique:
                result._unique = True
            return result
        raise TypeError(
            "Labels can only be indexed by a single string or integer (or, in eqx_tensor, a "
            f"slice or an integer array), got {type(index).__name__}"
        )

    def entry(self, index: int) -> LabelsEntry:
        """The ``index``-th entry."""
        self.require_static("Labels.entry")
        n = len(self)
        if not -n <= index < n:
            raise IndexError(f"entry index {index} is out of range for Labels with {n} entries")
        return LabelsEntry(self._names, self._values[index])

    def column(self, dimension: str) -> Any:
        """The values of ``dimension``, shape ``(len(self),)``."""
        if not isinstance(dimension, str):
            raise TypeError(
                f"Labels.column: the dimension must be a str, got {type(dimension).__name__}"
            )
        return self._values[:, self._dimension_index(dimension, "Labels.column")]

    def _dimension_index(self, name: str, function: str = "Labels") -> int:
        try:
            return self._names.index(name)
        except ValueError:
            raise ValueError(
                f"{function}: '{name}' is not a dimension of these Labels, names are "
                f"{list(self._names)}"
            ) from None

    # ----------------------------------------------------------------- lookups
    def _known_bounds(self) -> dict[int, tuple[int, int]] | None:
        """Range of each column, when the index (built anyway) has it."""
        return None if self._index is None else _bounds(self._index.steps)

    def _lookup_dict(self) -> dict[tuple[int, ...], int]:
        if self._dict is None:
            self._dict = _row_dict(self._values)[0]
        return self._dict

    def _array_index(self) -> _ArrayIndex:
        if self._index is None:
            self._index = _ArrayIndex(self._values)
        return self._index

    def _positions_of_rows(
        self, rows: np.ndarray, bounds: dict[int, tuple[int, int]] | None = None
    ) -> np.ndarray:
        """Position of each row of ``rows`` (m, k) in these static labels, -1 if absent;
        ``bounds``: the range of each column of ``rows``, when known (see :func:`_bounds`)."""
        n, m = len(self._values), len(rows)
        if n == 0 or m == 0:
            return np.full(m, -1, dtype=np.int64)
        if not self._names:
            return np.zeros(m, dtype=np.int64)  # every row is the empty entry
        if self._index is None and n <= _SMALL and m <= _SMALL:
            lookup = self._lookup_dict()
            return np.array(
                [lookup.get(row, -1) for row in map(tuple, rows.tolist())], dtype=np.int64
            )
        return self._array_index().lookup(rows, bounds)

    def position(self, entry: LabelsEntry | Sequence[int] | np.ndarray) -> int | None:
        """Index of ``entry`` in these labels, or ``None`` if it is not there.

        ``entry`` is a :class:`LabelsEntry` (only its values count, as in metatensor) or a
        sequence / 1-D array of ``len(self.names)`` integers.
        """
        values = self._values
        if not isinstance(values, np.ndarray):
            self.require_static("Labels.position")
        # the common entries first: this runs often, on small labels
        if type(entry) is LabelsEntry:
            row = tuple(entry._values.tolist())
            if len(row) != len(self._names):
                row = _as_row(entry, len(self._names), "Labels.position")  # raises
        else:
            row = _as_row(entry, len(self._names), "Labels.position")
        if values.shape[0] <= _POSITION_DICT:
            lookup = self._dict
            if lookup is None:
                lookup = self._lookup_dict()
            return lookup.get(row)
        if not self._names:
            return 0
        position = self._array_index().position(row)
        return None if position < 0 else position

    def __contains__(self, entry: Any) -> bool:
        return self.position(entry) is not None

    def positions(self, other: Labels) -> np.ndarray:
        """Index in ``self`` of each entry of ``other`` (same names), -1 where missing.

        Returns:
            int64 array of shape ``(len(other),)``.
        """
        self._check_same_names(other, "positions")
        return self._positions_of_rows(other._values, other._known_bounds())

    def select(self, selection: Labels) -> np.ndarray:
        """Indices of the entries matching ``selection`` on the dimensions it names.

        ``selection`` names a subset of this labels' dimensions; an entry is selected when
        its values on those dimensions equal one of the selection entries. As in
        metatensor-core, a selection with exactly the names of these labels (in the same
        order) gives the positions of its entries in its own order (missing ones skipped),
        any other selection the matching entries in the order of these labels, and a
        selection without names every entry.

        Returns:
            int64 array of positions.
        """
        self.require_static("Labels.select")
        if not isinstance(selection, Labels):
            raise TypeError(
                f"Labels.select: selection must be Labels, got {type(selection).__name__}"
            )
        selection.require_static("Labels.select")
        if not selection._names:
            return np.arange(len(self), dtype=np.int64)
        columns = [self._dimension_index(name, "Labels.select") for name in selection._names]
        if selection._names == self._names:
            positions = self._positions_of_rows(selection._values, selection._known_bounds())
            return positions[positions >= 0]
        rows = self._values[:, columns]
        return np.nonzero(selection._positions_of_rows(rows) >= 0)[0].astype(np.int64)

    # ----------------------------------------------------------------- set operations
    def _check_same_names(self, other: Labels, operation: str) -> None:
        if not isinstance(other, Labels):
            raise TypeError(f"Labels.{operation} expects Labels, got {type(other).__name__}")
        if other._names != self._names:
            raise ValueError(
                f"Labels.{operation} needs Labels with the same names, got {list(self._names)} "
                f"and {list(other._names)}"
            )
        self.require_static(f"Labels.{operation}")
        other.require_static(f"Labels.{operation}")

    def union(self, other: Labels) -> Labels:
        """Entries of ``self`` followed by the entries of ``other`` not in ``self``."""
        return self.union_and_mapping(other)[0]

    def union_and_mapping(self, other: Labels) -> tuple[Labels, np.ndarray, np.ndarray]:
        """Union, and the position in it of each entry of ``self`` and of ``other``.

        Returns:
            ``(union, mapping_1, mapping_2)``, the mappings int64 of shapes ``(len(self),)``
            and ``(len(other),)``.
        """
        self._check_same_names(other, "union")
        n = len(self._values)
        if self._index is None and n <= _SMALL and len(other._values) <= _SMALL:
            return self._small_union(other)
        positions = self._positions_of_rows(other._values, other._known_bounds())
        new = np.nonzero(positions < 0)[0]
        mapping_2 = positions
        values = self._values
        if len(new):
            rows = other._values[new]
            new_ids = np.arange(len(new), dtype=np.int64)
            if other._unique is not True and len(new) > 1:
                # other may repeat an entry: its first occurrence gets the new position
                first = Labels._unchecked(self._names, rows)._positions_of_rows(rows)
                kept = first == new_ids
                if not kept.all():
                    new_ids = (np.cumsum(kept) - 1)[first]
                    rows = rows[kept]
            mapping_2[new] = n + new_ids
            values = np.concatenate([values, rows], axis=0)
        result = Labels._unchecked(self._names, values)
        result._unique = True if self._unique else None
        return result, np.arange(n, dtype=np.int64), mapping_2

    def _small_union(self, other: Labels) -> tuple[Labels, np.ndarray, np.ndarray]:
        """:meth:`union_and_mapping` of small labels, with dicts (no index, module docstring)."""
        n = len(self._values)
        lookup = self._lookup_dict()
        extra: dict[tuple[int, ...], int] = {}
        mapping_2 = []
        for row in map(tuple, other._values.tolist()):
            position = lookup.get(row)
            if position is None:
                position = extra.setdefault(row, n + len(extra))
            mapping_2.append(position)
        values = self._values
        if extra:
            new = np.array(list(extra), dtype=np.int32).reshape(len(extra), len(self._names))
            values = np.concatenate([values, new], axis=0)
        result = Labels._unchecked(self._names, values)
        if self._unique and len(lookup) == n:
            result._unique = True
            result._dict = {**lookup, **extra} if len(values) <= _SMALL else None
        mapping_1 = np.arange(n, dtype=np.int64)
        return result, mapping_1, np.array(mapping_2, dtype=np.int64)

    def intersection(self, other: Labels) -> Labels:
        """Entries both in ``self`` and ``other``.

        As in metatensor-core, the entries come in the order of the shorter of the two
        (of ``self`` when they have the same length).
        """
        return self.intersection_and_mapping(other)[0]

    def intersection_and_mapping(self, other: Labels) -> tuple[Labels, np.ndarray, np.ndarray]:
        """Intersection, and the position in it of each entry of ``self``/``other`` (or -1).

        Returns:
            ``(intersection, mapping_1, mapping_2)``, the mappings int64 of shapes
            ``(len(self),)`` and ``(len(other),)``.
        """
        self._check_same_names(other, "intersection")
        swap = len(other._values) < len(self._values)
        first, second = (other, self) if swap else (self, other)
        positions = second._positions_of_rows(first._values, first._known_bounds())
        found = np.nonzero(positions >= 0)[0]
        new_positions = np.arange(len(found), dtype=np.int64)
        mapping_first = np.full(len(first._values), -1, dtype=np.int64)
        mapping_first[found] = new_positions
        mapping_second = np.full(len(second._values), -1, dtype=np.int64)
        mapping_second[positions[found]] = new_positions
        result = Labels._unchecked(self._names, first._values[found])
        result._unique = True if first._unique else None
        if swap:
            return result, mapping_second, mapping_first
        return result, mapping_first, mapping_second

    def difference(self, other: Labels) -> Labels:
        """Entries of ``self`` that are not in ``other``."""
        return self.difference_and_mapping(other)[0]

    def difference_and_mapping(self, other: Labels) -> tuple[Labels, np.ndarray]:
        """Difference, and the position in it of each entry of ``self`` (or -1).

        Returns:
            ``(difference, mapping)``, the mapping int64 of shape ``(len(self),)``.
        """
        self._check_same_names(other, "difference")
        kept = np.nonzero(other._positions_of_rows(self._values, self._known_bounds()) < 0)[0]
        mapping = np.full(len(self._values), -1, dtype=np.int64)
        mapping[kept] = np.arange(len(kept), dtype=np.int64)
        result = Labels._unchecked(self._names, self._values[kept])
        result._unique = True if self._unique else None
        return result, mapping

    # ----------------------------------------------------------------- dimension edits
    def _new_column(self, name: str, values: Any, function: str) -> Any:
        """The values of a new dimension: an int (broadcast) or one integer per entry."""
        n = len(self)
        if isinstance(values, (int, np.integer)) and not isinstance(values, (bool, np.bool_)):
            if not _INT32_MIN <= int(values) <= _INT32_MAX:
                raise ValueError(f"{function}: the value of '{name}' must fit in int32")
            if self.is_dynamic:
                return jax.numpy.full(n, int(values), dtype=np.int32)
            return np.full(n, int(values), dtype=np.int32)
        if isinstance(values, jax.Array):
            if not np.issubdtype(values.dtype, np.integer):
                raise TypeError(
                    f"{function}: `values` of the new dimension '{name}' must be integers, got "
                    f"dtype {values.dtype}"
                )
            column = values
        else:
            try:
                column = np.asarray(values)
            except (TypeError, ValueError) as error:
                raise TypeError(
                    f"{function}: `values` of the new dimension '{name}' must be an integer "
                    f"array of shape ({n},): {error}"
                ) from None
            if column.dtype == object:
                raise TypeError(f"{function}: `values` of '{name}' must be integers, got objects")
            _check_integer_dtype(column.dtype, f"{function}: `values` of '{name}'")
        if column.ndim != 1 or column.shape[0] != n:
            raise ValueError(
                f"{function}: `values` of the new dimension '{name}' must be a 1-D array of "
                f"shape ({n},), one value per entry, got shape {tuple(column.shape)}"
            )
        if isinstance(column, np.ndarray):
            _check_int32_range(column, f"{function}: `values` of '{name}'")
        return column

    def insert(self, index: int, name: str, values: Any) -> Labels:
        """New labels with dimension ``name`` inserted before position ``index``.

        Args:
            index: position among the names, ``-len(names) <= index <= len(names)``
                (negative values count from the end, as ``numpy.insert``).
            name: the new name.
            values: one integer per entry, shape ``(len(self),)`` (NumPy, nested lists or a
                ``jax.Array``, which makes the result dynamic), or one ``int`` for all.
        """
        function = "Labels.insert"
        (name,) = _check_names([name], function)
        if name in self._names:
            raise ValueError(
                f"{function}: '{name}' is already a dimension of these Labels {list(self._names)}"
            )
        try:
            index = operator.index(index)
        except TypeError:
            raise TypeError(
                f"{function}: index must be an int, got {type(index).__name__}"
            ) from None
        n_names = len(self._names)
        if not -n_names <= index <= n_names:
            raise IndexError(
                f"{function}: index {index} is out of range for Labels with {n_names} "
                f"dimensions (from {-n_names} to {n_names})"
            )
        if index < 0:
            index += n_names
        column = self._new_column(name, values, function)
        names = (*self._names[:index], name, *self._names[index:])
        if isinstance(self._values, np.ndarray) and isinstance(column, np.ndarray):
            new = np.concatenate(
                [
                    self._values[:, :index],
                    column[:, None].astype(np.int32),
                    self._values[:, index:],
                ],
                axis=1,
            )
            result = Labels._unchecked(names, new)
            if self._unique and n_names:
                result._unique = True  # more columns keep the rows unique
            else:
                result._check_unique(function)
            return result
        jnp = jax.numpy
        new = jnp.concatenate(
            [
                jnp.asarray(self._values[:, :index]),
                jnp.asarray(column, dtype=np.int32)[:, None],
                jnp.asarray(self._values[:, index:]),
            ],
            axis=1,
        )
        return Labels._unchecked(names, new)

    def append(self, name: str, values: Any) -> Labels:
        """New labels with dimension ``name`` added after the last one (see :meth:`insert`)."""
        return self.insert(len(self._names), name, values)

    def remove(self, name: str) -> Labels:
        """New labels without dimension ``name``; fails if that makes entries repeat."""
        function = "Labels.remove"
        if not isinstance(name, str) or name not in self._names:
            raise ValueError(
                f"{function}: '{name}' not found in the dimensions of these Labels "
                f"{list(self._names)}"
            )
        index = self._names.index(name)
        names = self._names[:index] + self._names[index + 1 :]
        if not isinstance(self._values, np.ndarray):
            values = jax.numpy.concatenate(
                [self._values[:, :index], self._values[:, index + 1 :]], axis=1
            )
            return Labels._unchecked(names, values)
        values = np.concatenate([self._values[:, :index], self._values[:, index + 1 :]], axis=1)
        result = Labels._unchecked(names, values)
        try:
            result._check_unique(function)
        except ValueError as error:
            raise ValueError(
                f"{function}: removing dimension '{name}' would leave repeated entries: {error}"
            ) from None
        return result

    def rename(self, old: str, new: str) -> Labels:
        """New labels with dimension ``old`` renamed ``new``."""
        function = "Labels.rename"
        if not isinstance(old, str) or old not in self._names:
            raise ValueError(
                f"{function}: '{old}' not found in the dimensions of these Labels "
                f"{list(self._names)}"
            )
        (new,) = _check_names([new], function)
        if new != old and new in self._names:
            raise ValueError(
                f"{function}: '{new}' is already a dimension of these Labels {list(self._names)}"
            )
        index = self._names.index(old)
        result = Labels._unchecked(
            (*self._names[:index], new, *self._names[index + 1 :]), self._values
        )
        # same values: the lookup structures carry over
        result._unique, result._dict, result._index = self._unique, self._dict, self._index
        return result

    def permute(self, dimensions_indexes: Sequence[int]) -> Labels:
        """New labels with the dimensions reordered: new dimension i is old ``indexes[i]``.

        Negative indexes count from the end, as in metatensor.
        """
        function = "Labels.permute"
        try:
            order = [operator.index(i) for i in dimensions_indexes]
        except TypeError:
            raise TypeError(
                f"{function}: `dimensions_indexes` must be a sequence of int, got "
                f"{dimensions_indexes!r}"
            ) from None
        n_names = len(self._names)
        if len(order) != n_names:
            raise ValueError(
                f"{function}: the length of `dimensions_indexes` ({len(order)}) does not match "
                f"the number of dimensions in the Labels ({n_names})"
            )
        for i in order:
            if not -n_names <= i < n_names:
                raise IndexError(
                    f"{function}: dimension index {i} is out of range for Labels with "
                    f"{n_names} dimensions"
                )
        order = [i % n_names for i in order]
        if len(set(order)) != n_names:
            raise ValueError(
                f"{function}: `dimensions_indexes` must be a permutation of 0..{n_names - 1} "
                f"(each dimension once), got {list(dimensions_indexes)}"
            )
        names = tuple(self._names[i] for i in order)
        result = Labels._unchecked(names, self._values[:, order])
        result._unique = self._unique
        return result

    def view(self, names: str | Sequence[str]) -> Labels:
        """Labels restricted to some dimensions (an eqx_tensor extension); rows may repeat,
        so the result is unchecked."""
        names = _check_names(names, "Labels.view")
        columns = [self._dimension_index(name, "Labels.view") for name in names]
        return Labels._unchecked(names, self._values[:, columns])

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
        """These labels as a table, in metatensor's layout.

        Args:
            max_entries: how many entries to show (the first and last ones around ``...``);
                ``-1`` shows all.
            indent: spaces before each line but the first (the header).
        """
        try:
            values = np.asarray(self._values)
        except TRACER_ERRORS:
            header = _print_table(self._names, np.zeros((0, len(self._names)), np.int32), -1, 0)
            return f"{header}\n{' ' * indent}<{len(self)} dynamic entries, traced>"
        return _print_table(self._names, values, max_entries, indent)

    def __str__(self) -> str:
        return "Labels\n   " + self.print(4, 3)

    def __repr__(self) -> str:
        return "Labels\n   " + self.print(-1, 3)


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


def same_labels(a: Labels, b: Labels, *, dynamic: str = "sizes", what: str = "labels") -> bool:
    """Whether ``a`` and ``b`` are the same labels: the one rule of the library.

    Static labels compare names and values (in order). When either is dynamic, different names
    or sizes mean different labels, and concrete (untraced) values are compared. With traced
    values (inside ``jax.jit``) equality cannot be decided: ``dynamic="sizes"`` then takes
    equal names and sizes as equal labels (the contract of padded batches: the arrays of one
    batch are aligned); ``dynamic="raise"`` raises a ``ValueError`` naming ``what``.

    Args:
        a, b: the labels to compare.
        dynamic: ``"sizes"`` or ``"raise"``, for traced dynamic values.
        what: who compares (for the error message), e.g. ``"'join'"``.
    """
    if a is b:
        return True
    if not (a.is_dynamic or b.is_dynamic):
        return a == b
    if a.names != b.names or len(a) != len(b):
        return False
    if a.is_dynamic and b.is_dynamic and a.values is b.values:
        return True
    traced = isinstance(a.values, jax.core.Tracer) or isinstance(b.values, jax.core.Tracer)
    if not traced:
        return bool(np.array_equal(np.asarray(a.values), np.asarray(b.values)))
    if dynamic == "sizes":
        return True
    if dynamic != "raise":
        raise ValueError(f"same_labels: dynamic must be 'sizes' or 'raise', got {dynamic!r}")
    raise ValueError(
        f"{what} cannot compare the dynamic labels {a.names} inside a JAX transformation: "
        "their names and sizes match but their values are only known at run time; compare "
        "outside jax.jit, or with static labels"
    )
