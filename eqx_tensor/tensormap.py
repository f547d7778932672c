"""TensorMap: a block-sparse tensor, one :class:`TensorBlock` per entry of ``keys``.

As a JAX pytree a TensorMap is a single node: every array of every block (values, gradient
values, dynamic sample labels) is a leaf, in one flat tuple, and all metadata is one
hashable :class:`TensorMapMeta`. Flattening returns cached objects and unflattening
builds blocks lazily, so passing a TensorMap to a jitted function builds no block per call
(``benchmarks/pytree_overhead.py`` compares it with passing the flat list of its arrays).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import jax
import numpy as np

from .block import BlockMeta, LeafKey, TensorBlock, _to_arguments, leaf_keys
from .labels import Labels, LabelsEntry

__all__ = ["TensorMap", "TensorMapMeta"]


# blocks shown in the repr of a TensorMap's pytree metadata
_REPR_BLOCKS = 8


class TensorMapMeta:
    """Static metadata of a TensorMap: keys, one :class:`BlockMeta` per block, and info."""

    __slots__ = ("_hash", "blocks", "info", "keys", "n_leaves")

    def __init__(
        self, keys: Labels, blocks: tuple[BlockMeta, ...], info: tuple[tuple[str, str], ...]
    ):
        self.keys = keys
        self.blocks = blocks
        self.info = info
        self.n_leaves = sum(b.n_leaves for b in blocks)
        self._hash = hash((keys, blocks, info))

    def __hash__(self) -> int:
        return self._hash

    def __repr__(self) -> str:
        # pytree aux data: JAX prints it when treedefs differ (jit, optax, tree.map), so name
        # the keys and each block's metadata, up to a bounded length
        names = self.keys.names
        rows = []
        for entry, block in zip(self.keys.values.tolist()[:_REPR_BLOCKS], self.blocks):
            selector = ", ".join(f"{n}={v}" for n, v in zip(names, entry))
            rows.append(f"[{selector}]: {block.summary()}")
        if len(self.blocks) > _REPR_BLOCKS:
            rows.append(f"... {len(self.blocks) - _REPR_BLOCKS} more blocks")
        info = f", info={dict(self.info)}" if self.info else ""
        return f"TensorMap(keys {list(names)} x {len(self.blocks)}{info}: " + " | ".join(rows) + ")"

    def __eq__(self, other: object) -> bool:
        if self is other:
            return True
        if not isinstance(other, TensorMapMeta) or self._hash != other._hash:
            return False
        return self.keys == other.keys and self.blocks == other.blocks and self.info == other.info


def _selection_labels(keys: Labels, selection: Any, kwargs: Mapping[str, Any]) -> Labels:
    """The selection of ``block``/``blocks``, as Labels (metatensor's ``_normalize_selection``).

    ``None`` means the keyword arguments, as a dict (an empty dict, with no keyword
    arguments, selects every block).
    """
    if selection is None:
        selection = dict(kwargs)
    elif kwargs:
        raise ValueError(
            f"give the block selection either as an argument ({selection!r}) or as keyword "
            f"arguments ({dict(kwargs)}), not both"
        )
    if isinstance(selection, LabelsEntry):
        return Labels(selection.names, np.asarray(selection.values).reshape(1, -1))
    if isinstance(selection, Labels):
        return selection
    if isinstance(selection, Mapping):
        names = list(selection)
        for name, value in selection.items():
            if isinstance(value, (bool, int)):
                continue
            if isinstance(value, float) or not np.can_cast(value, np.int32, casting="same_kind"):
                raise TypeError(
                    f"expected integer values in selection, got {name}={value} of type "
                    f"{type(value)}"
                )
        for name in names:
            if name not in keys.names:
                raise ValueError(
                    f"invalid parameter: '{name}' in selection is not part of these Labels: "
                    f"'{name}' is not a key dimension of this TensorMap, keys are {keys.names}"
                )
        values = np.array([[int(selection[n]) for n in names]], dtype=np.int32)
        return Labels(names, values.reshape(1, len(names)))
    raise TypeError(f"invalid type for block selection: {type(selection)}")


def _print_selection(selection: Labels) -> str:
    """The first entry of a selection as metatensor prints it: ``(a=1, b=2)``."""
    if len(selection) == 0:
        return "()"
    row = np.asarray(selection.values)[0]
    return "(" + ", ".join(f"{n}={int(v)}" for n, v in zip(selection.names, row)) + ")"


def _print_string_center(string: str, width: int) -> str:
    # metatensor's _print_string_center, for a column that is not the last one
    before = (width - len(string)) // 2
    return " " * before + string + " " * (width - len(string) - before)


class TensorMap:
    """Block-sparse tensor, following :py:class:`metatensor.TensorMap`.

    Selecting blocks (``tensor.block(...)``, ``tensor[...]``, ``tensor.blocks(...)``),
    printing, ``copy``, ``to``, ``info`` and the file methods behave as metatensor's; the
    comparison (``==``, ``!=``) and arithmetic (``+ - * / ** @``, unary ``-`` and ``+``)
    operators are added by :mod:`eqx_tensor.operations` and forward to its ``equal``,
    ``add``, ``subtract``, ``multiply``, ``divide``, ``pow`` and ``dot``, as in metatensor.

    Departures: values are NumPy or JAX arrays (no torch), and a TensorMap is a JAX pytree
    (static metadata, array leaves), so it passes through ``jax.jit``, ``jax.grad`` and
    optax. Block indices may be negative (``tensor[-1]``), and NumPy integers are
    accepted wherever metatensor takes an ``int``.

    Args:
        keys: static labels, one entry per block.
        blocks: the blocks; they must share sample, component and property names.
    """

    __slots__ = ("_blocks", "_info", "_keys", "_leaves", "_meta")

    def __init__(self, keys: Labels, blocks: Sequence[TensorBlock]):
        if not isinstance(keys, Labels):
            raise TypeError(f"`keys` must be metatensor Labels, not {type(keys)}")
        keys.require_static("TensorMap keys")
        blocks = list(blocks)
        if len(blocks) != len(keys):
            raise ValueError(
                f"TensorMap: got {len(blocks)} blocks for {len(keys)} keys: there must be one "
                "block per key"
            )
        for i, block in enumerate(blocks):
            if not isinstance(block, TensorBlock):
                raise TypeError(
                    f"`blocks` elements must be metatensor TensorBlock, not {type(block)} "
                    f"(block {i})"
                )
            if block.is_gradient:
                raise ValueError(
                    f"TensorMap: block {i} is a gradient block ('{block._parameter}') and "
                    "can not be used as values: use its copy(), block.gradient(...).copy()"
                )
        if blocks:
            first = blocks[0]
            reference = (
                first.samples.names,
                [c.names[0] for c in first.components],
                first.properties.names,
            )
            what = ("sample", "component", "property")
            for i, block in enumerate(blocks[1:], start=1):
                names = (
                    block.samples.names,
                    [c.names[0] for c in block.components],
                    block.properties.names,
                )
                for kind, ref, got in zip(what, reference, names):
                    if ref != got:
                        raise ValueError(
                            f"TensorMap: all blocks must have the same {kind} names: block "
                            f"{i} ({keys.entry(i)}) has {got} but block 0 has {ref}"
                        )
                for parameter, gradient in block.gradients():
                    if first.has_gradient(parameter):
                        ref_gradient = first.gradient(parameter)
                        if gradient.samples.names != ref_gradient.samples.names or [
                            c.names[0] for c in gradient.components
                        ] != [c.names[0] for c in ref_gradient.components]:
                            raise ValueError(
                                f"TensorMap: the '{parameter}' gradient of block {i} "
                                f"({keys.entry(i)}) has different sample or component names "
                                "than the one of block 0"
                            )
        self._keys = keys
        self._blocks: list[TensorBlock] | None = [b._frozen_copy() for b in blocks]
        self._info: dict[str, str] = {}
        self._meta: TensorMapMeta | None = None
        self._leaves: tuple[Any, ...] | None = None

    @classmethod
    def _from_pytree(cls, meta: TensorMapMeta, leaves: Sequence[Any]) -> TensorMap:
        self = object.__new__(cls)
        self._keys = meta.keys
        self._blocks = None
        self._info = dict(meta.info)
        self._meta = meta
        self._leaves = tuple(leaves)
        return self

    # ----------------------------------------------------------------- pytree
    @property
    def meta(self) -> TensorMapMeta:
        """Static metadata (the pytree auxiliary data)."""
        if self._meta is None:
            blocks = self._all_blocks()
            self._meta = TensorMapMeta(
                self._keys, tuple(b.meta for b in blocks), tuple(sorted(self._info.items()))
            )
        return self._meta

    def _flat_leaves(self) -> tuple[Any, ...]:
        if self._leaves is None:
            leaves: list[Any] = []
            for block in self._all_blocks():
                block._leaves(leaves)
            self._leaves = tuple(leaves)
        return self._leaves

    def _all_blocks(self) -> list[TensorBlock]:
        if self._blocks is None:
            blocks = []
            position = 0
            for meta in self._meta.blocks:
                blocks.append(meta.unflatten(self._leaves, position))
                position += meta.n_leaves
            self._blocks = blocks
        return self._blocks

    # ----------------------------------------------------------------- accessors
    @property
    def keys(self) -> Labels:
        return self._keys

    def __len__(self) -> int:
        return len(self._keys)

    def __iter__(self) -> Iterator[TensorBlock]:
        return iter(self._all_blocks())

    def items(self) -> list[tuple[LabelsEntry, TensorBlock]]:
        """``(key, block)`` pairs."""
        return list(zip(self._keys, self._all_blocks()))

    def block_by_id(self, index: int) -> TensorBlock:
        """Block at position ``index`` (negative indices count from the end)."""
        if not -len(self) <= index < len(self):
            # IndexError (as metatensor) also ends iterations through __getitem__
            raise IndexError(
                f"block index out of bounds: we have {len(self)} blocks but the index is {index}"
            )
        return self._all_blocks()[index]

    def blocks_by_id(self, indices: Sequence[int]) -> list[TensorBlock]:
        """Blocks at the positions ``indices``."""
        return [self.block_by_id(int(i)) for i in indices]

    def blocks_matching(self, selection: Any = None, **kwargs: int) -> list[int]:
        """Indices of the blocks whose keys match ``selection`` on the dimensions it names."""
        labels = _selection_labels(self._keys, selection, kwargs)
        for name in labels.names:
            if name not in self._keys.names:
                raise ValueError(
                    f"invalid parameter: '{name}' in selection is not part of these Labels: "
                    f"'{name}' is not a key dimension of this TensorMap, keys are "
                    f"{self._keys.names}"
                )
        return [int(i) for i in self._keys.select(labels)]

    def block(self, selection: Any = None, **kwargs: int) -> TensorBlock:
        """The single block matching ``selection``, as metatensor's ``TensorMap.block``.

        Args:
            selection: an ``int`` (the block at this position), a key entry
                (:class:`LabelsEntry`), :class:`Labels` or a ``dict`` of key dimensions to
                values (a subset of the key dimensions), or ``None`` to use the keyword
                arguments as the dict (no selection at all picks the only block).

        Raises:
            ValueError: no block or more than one block matches, or a dimension is not a
                key dimension.
            TypeError: ``selection`` has another type, or a dict value is not an integer.
            IndexError: an ``int`` out of range.
        """
        if isinstance(selection, (int, np.integer)) and not kwargs:
            return self.block_by_id(int(selection))
        labels = _selection_labels(self._keys, selection, kwargs)
        matching = self.blocks_matching(labels)
        if len(matching) == 1:
            return self.block_by_id(matching[0])
        if len(self) == 0:
            raise ValueError("there are no blocks in this TensorMap")
        shown = _print_selection(labels)
        if not matching:
            raise ValueError(
                f"couldn't find any block matching {shown}: no block matches this selection "
                f"in the keys {self._keys.names}"
            )
        raise ValueError(
            f"more than one block matched {shown}, use `TensorMap.blocks` to get all of them "
            f"({len(matching)} blocks match)"
        )

    def __getitem__(self, selection: Any) -> TensorBlock:
        """``tensor[selection]`` is ``tensor.block(selection)`` (metatensor's indexing)."""
        return self.block(selection)

    def blocks(self, selection: Any = None, **kwargs: int) -> list[TensorBlock]:
        """All blocks (no selection), or the blocks matching ``selection``.

        ``selection`` is as in :meth:`block`, or a list of block indices. As in metatensor,
        a selection matching no block raises a ``ValueError`` (except in a TensorMap
        without blocks, which gives an empty list).
        """
        if isinstance(selection, (int, np.integer)) and not kwargs:
            return [self.block_by_id(int(selection))]
        if isinstance(selection, (list, tuple)) and all(
            isinstance(s, (int, np.integer)) for s in selection
        ):
            return self.blocks_by_id(selection)
        labels = _selection_labels(self._keys, selection, kwargs)
        matching = self.blocks_matching(labels)
        if len(self) == 0:
            return []
        if not matching:
            raise ValueError(f"Couldn't find any block matching '{_print_selection(labels)}'")
        return self.blocks_by_id(matching)

    def _first(self) -> TensorBlock | None:
        blocks = self._all_blocks()
        return blocks[0] if blocks else None

    @property
    def sample_names(self) -> list[str]:
        first = self._first()
        return [] if first is None else first.samples.names

    @property
    def component_names(self) -> list[str]:
        first = self._first()
        return [] if first is None else [c.names[0] for c in first.components]

    @property
    def property_names(self) -> list[str]:
        first = self._first()
        return [] if first is None else first.properties.names

    @property
    def dtype(self) -> Any:
        first = self._first()
        return None if first is None else first.dtype

    def copy(self, deep: bool = True) -> TensorMap:
        """A copy with the same keys, blocks and info (see :meth:`TensorBlock.copy`).

        With ``deep=True`` NumPy values are copied, otherwise shared; JAX arrays are
        immutable and always shared.
        """
        return self._with_blocks([b.copy(deep=deep) for b in self._all_blocks()])

    def __copy__(self) -> TensorMap:
        return self.copy(deep=False)

    def __deepcopy__(self, memo: dict) -> TensorMap:
        return self.copy(deep=True)

    def to_dynamic_samples(self) -> TensorMap:
        """The tensor with dynamic sample labels in every block and gradient (see
        :meth:`TensorBlock.to_dynamic_samples`)."""
        return self._with_blocks([b.to_dynamic_samples() for b in self._all_blocks()])

    @property
    def is_view(self) -> bool:
        """Always ``False``: a TensorMap is never a view into another object here."""
        return False

    @property
    def device(self) -> Any:
        """The device of the first block's values (``"cpu"`` for NumPy or no blocks)."""
        first = self._first()
        return "cpu" if first is None else first.device

    def to(self, *args: Any, **kwargs: Any) -> TensorMap:
        """The tensor with every array converted, info kept: see :meth:`TensorBlock.to`.

        metatensor's arguments: ``tensor.to(numpy.float32)``, ``tensor.to("cpu")``,
        ``tensor.to(dtype=..., device=..., arrays="numpy" | "jax", non_blocking=...)``.
        """
        dtype, device, arrays = _to_arguments("`TensorMap.to`", args, kwargs)
        return self._with_blocks(
            [b.to(dtype=dtype, device=device, arrays=arrays) for b in self._all_blocks()]
        )

    def _with_blocks(self, blocks: list[TensorBlock]) -> TensorMap:
        """A TensorMap with the same keys and info, and these blocks."""
        result = TensorMap(self._keys, blocks)
        result._info = dict(self._info)
        return result

    # ----------------------------------------------------------------- info
    def info(self) -> dict[str, str]:
        """Free-form string metadata, saved with the tensor in ``.mts`` files."""
        return dict(self._info)

    def get_info(self, key: str) -> str | None:
        return self._info.get(key)

    def set_info(self, key: str, value: str) -> None:
        """Set (or replace) the info ``value`` of ``key``."""
        if not isinstance(key, str) or not isinstance(value, str):
            raise TypeError(
                f"TensorMap info keys and values must be str, got {type(key).__name__} and "
                f"{type(value).__name__}"
            )
        self._info[key] = value
        if self._meta is not None:
            # the cached metadata carries the info; its block metadata stays valid (and is
            # the only description of the blocks of a TensorMap rebuilt from pytree leaves)
            self._meta = TensorMapMeta(
                self._keys, self._meta.blocks, tuple(sorted(self._info.items()))
            )

    # ----------------------------------------------------------------- printing
    def print(self, max_keys: int = -1) -> str:
        """This tensor as metatensor prints it, with at most ``max_keys`` keys (-1: all)."""
        n_print = len(self) if max_keys < 0 else min(max_keys, len(self))
        block_word = "block" if len(self) == 1 else "blocks"
        names = self._keys.names
        n_dimensions = max(1, len(names))
        values = np.asarray(self._keys.values)
        widths = [0] * n_dimensions
        rows = []
        for i in range(n_print):
            strings = [str(int(v)) for v in values[i]] or [""]
            for j, string in enumerate(strings):
                widths[j] = max(widths[j], len(string) + 2)
            rows.append(strings)
        lines = [
            f"TensorMap with {len(self)} {block_word}",
            f"    keys: [{', '.join(names)}]",
            "    blocks:",
        ]
        for i, strings in enumerate(rows):
            cells = "".join(_print_string_center(s, w) for s, w in zip(strings, widths))
            shape = tuple(int(n) for n in self.block_by_id(i).values.shape)
            lines.append(f"      {cells}  => TensorBlock with shape {shape}")
        if n_print < len(self):
            lines.append("      " + "".join(" " * w for w in widths) + " ...")
        return "\n".join(lines).rstrip("\n")

    def __repr__(self) -> str:
        return self.print(-1)

    def __str__(self) -> str:
        return self.print(7)


def _flatten_tensormap(tensor: TensorMap) -> tuple[tuple[Any, ...], TensorMapMeta]:
    return tensor._flat_leaves(), tensor.meta


def _unflatten_tensormap(meta: TensorMapMeta, leaves: Sequence[Any]) -> TensorMap:
    return TensorMap._from_pytree(meta, leaves)


def _tensormap_leaf_keys(meta: TensorMapMeta) -> tuple[LeafKey, ...]:
    """``[o3_lambda=1, o3_sigma=1].values``, ``[...].gradient('positions').values``, ..."""
    names = meta.keys.names
    keys: list[LeafKey] = []
    for entry, block in zip(meta.keys.values.tolist(), meta.blocks):
        selector = ", ".join(f"{n}={v}" for n, v in zip(names, entry))
        keys.extend(leaf_keys(block, f"[{selector}]"))
    return tuple(keys)


def _flatten_tensormap_with_keys(
    tensor: TensorMap,
) -> tuple[list[tuple[Any, Any]], TensorMapMeta]:
    leaves, meta = _flatten_tensormap(tensor)
    return list(zip(_tensormap_leaf_keys(meta), leaves)), meta


jax.tree_util.register_pytree_with_keys(
    TensorMap, _flatten_tensormap_with_keys, _unflatten_tensormap, _flatten_tensormap
)
