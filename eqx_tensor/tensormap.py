"""TensorMap: a block-sparse tensor, one :class:`TensorBlock` per entry of ``keys``.

As a JAX pytree a TensorMap is a single node: every array of every block (values, gradient
values, dynamic sample labels) is a leaf, in one flat tuple, and all metadata is one
hashable :class:`TensorMapMeta`. Flattening returns cached objects and unflattening
builds blocks lazily, so the per-call cost of passing a TensorMap to a jitted function is
close to that of passing the flat list of its arrays.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import jax
import numpy as np

from ._file_methods import FileMethods
from .block import BlockMeta, TensorBlock
from .labels import Labels, LabelsEntry

__all__ = ["TensorMap", "TensorMapMeta"]


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

    def __eq__(self, other: object) -> bool:
        if self is other:
            return True
        if not isinstance(other, TensorMapMeta) or self._hash != other._hash:
            return False
        return self.keys == other.keys and self.blocks == other.blocks and self.info == other.info


def _selection_labels(keys: Labels, selection: Any, kwargs: Mapping[str, int]) -> Labels:
    if selection is None:
        if not kwargs:
            raise ValueError("give a selection: a key entry, Labels, a dict or keyword arguments")
        selection = dict(kwargs)
    elif kwargs:
        raise ValueError("give either a selection or keyword arguments, not both")
    if isinstance(selection, LabelsEntry):
        return Labels(selection.names, selection.values.reshape(1, -1))
    if isinstance(selection, Labels):
        return selection
    if isinstance(selection, Mapping):
        names = list(selection)
        for name in names:
            if name not in keys.names:
                raise ValueError(
                    f"'{name}' is not a key dimension of this TensorMap, keys are {keys.names}"
                )
        values = np.array([[int(selection[n]) for n in names]], dtype=np.int32)
        return Labels(names, values.reshape(1, len(names)))
    raise TypeError(
        "block selection must be an int, a LabelsEntry, Labels, a dict or keyword arguments, "
        f"got {type(selection).__name__}"
    )


class TensorMap(FileMethods):
    """Block-sparse tensor, following :py:class:`metatensor.TensorMap`.

    Args:
        keys: static labels, one entry per block.
        blocks: the blocks; they must share sample, component and property names.
    """

    __slots__ = ("_blocks", "_info", "_keys", "_leaves", "_meta")
    _LOADERS = ("load", "load_buffer")

    def __init__(self, keys: Labels, blocks: Sequence[TensorBlock]):
        if not isinstance(keys, Labels):
            raise TypeError(f"keys must be Labels, got {type(keys).__name__}")
        keys.require_static("TensorMap keys")
        blocks = list(blocks)
        if len(blocks) != len(keys):
            raise ValueError(
                f"got {len(blocks)} blocks for {len(keys)} keys: there must be one block per key"
            )
        for i, block in enumerate(blocks):
            if not isinstance(block, TensorBlock):
                raise TypeError(f"block {i} must be a TensorBlock, got {type(block).__name__}")
            if block.is_gradient:
                raise ValueError(f"block {i} is a gradient block and cannot be used as values")
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
                            f"all blocks must have the same {kind} names: block {i} "
                            f"({keys.entry(i)}) has {got} but block 0 has {ref}"
                        )
                for parameter, gradient in block.gradients():
                    if first.has_gradient(parameter):
                        ref_gradient = first.gradient(parameter)
                        if gradient.samples.names != ref_gradient.samples.names or [
                            c.names[0] for c in gradient.components
                        ] != [c.names[0] for c in ref_gradient.components]:
                            raise ValueError(
                                f"the '{parameter}' gradients of block {i} ({keys.entry(i)}) "
                                "have different sample or component names than block 0"
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
        """Block at position ``index``."""
        if not -len(self) <= index < len(self):
            raise IndexError(f"block index {index} out of range for {len(self)} blocks")
        return self._all_blocks()[index]

    def blocks_by_id(self, indices: Sequence[int]) -> list[TensorBlock]:
        return [self.block_by_id(int(i)) for i in indices]

    def blocks_matching(self, selection: Any = None, **kwargs: int) -> list[int]:
        """Indices of the blocks whose keys match ``selection`` on the dimensions it names."""
        labels = _selection_labels(self._keys, selection, kwargs)
        for name in labels.names:
            if name not in self._keys.names:
                raise ValueError(
                    f"'{name}' is not a key dimension of this TensorMap, keys are "
                    f"{self._keys.names}"
                )
        return [int(i) for i in self._keys.select(labels)]

    def block(self, selection: Any = None, **kwargs: int) -> TensorBlock:
        """The single block matching ``selection`` (an index, key entry, Labels, dict or kwargs)."""
        if isinstance(selection, (int, np.integer)) and not kwargs:
            return self.block_by_id(int(selection))
        if selection is None and not kwargs:
            if len(self) == 1:
                return self.block_by_id(0)
            raise ValueError(f"this TensorMap has {len(self)} blocks: give a selection")
        matching = self.blocks_matching(selection, **kwargs)
        if len(matching) != 1:
            shown = kwargs or selection
            if not matching:
                raise ValueError(f"no block matches the selection {shown}")
            raise ValueError(
                f"{len(matching)} blocks match the selection {shown}, use blocks() to get all"
            )
        return self.block_by_id(matching[0])

    def blocks(self, selection: Any = None, **kwargs: int) -> list[TensorBlock]:
        """All blocks, or those matching ``selection``."""
        if selection is None and not kwargs:
            return list(self._all_blocks())
        if isinstance(selection, (int, np.integer)):
            return [self.block_by_id(int(selection))]
        if isinstance(selection, (list, tuple)) and all(
            isinstance(s, (int, np.integer)) for s in selection
        ):
            return self.blocks_by_id(selection)
        return self.blocks_by_id(self.blocks_matching(selection, **kwargs))

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

    def copy(self) -> TensorMap:
        """A copy with copied arrays."""
        return self._with_blocks([b.copy() for b in self._all_blocks()])

    def to_dynamic_samples(self) -> TensorMap:
        """The tensor with dynamic sample labels in every block and gradient (see
        :meth:`TensorBlock.to_dynamic_samples`)."""
        return self._with_blocks([b.to_dynamic_samples() for b in self._all_blocks()])

    @property
    def device(self) -> Any:
        """The device of the first block's values (``"cpu"`` for NumPy or no blocks)."""
        first = self._first()
        return "cpu" if first is None else first.device

    def to(self, dtype: Any = None, device: Any = None, arrays: str | None = None) -> TensorMap:
        """The tensor with every array converted: see :meth:`TensorBlock.to`.

        ``tensor.to(dtype=jnp.float32)`` casts values and gradients; ``device`` moves them
        with :func:`jax.device_put`; ``arrays="numpy"`` brings them to host NumPy arrays.
        """
        return self._with_blocks([b.to(dtype, device, arrays) for b in self._all_blocks()])

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
        if not isinstance(key, str) or not isinstance(value, str):
            raise TypeError("TensorMap info keys and values must be str")
        self._info[key] = value
        self._meta = None

    # ----------------------------------------------------------------- moving metadata
    def keys_to_samples(
        self,
        keys_to_move: str | Sequence[str],
        *,
        fill_value: float = 0.0,
        sort_samples: bool = True,
    ) -> TensorMap:
        """Move key dimensions to the end of the samples, merging the blocks that then share keys.

        Merged blocks must have the same components and properties. Gradient samples keep
        their names; their ``"sample"`` dimension is remapped to the merged rows.
        """
        del fill_value  # kept for metatensor signature compatibility; no padding happens here
        from ._moving import keys_to_samples

        return keys_to_samples(self, keys_to_move, sort_samples=sort_samples)

    def keys_to_properties(
        self,
        keys_to_move: str | Sequence[str] | Labels,
        *,
        fill_value: float = 0.0,
        sort_samples: bool = True,
    ) -> TensorMap:
        """Move key dimensions to the front of the properties, merging blocks.

        The merged samples are the union of the blocks' samples; rows a block does not have
        are filled with ``fill_value``. With ``Labels``, the new properties contain exactly
        these key values, in this order (missing blocks are filled too).
        """
        from ._moving import keys_to_properties

        return keys_to_properties(
            self, keys_to_move, fill_value=fill_value, sort_samples=sort_samples
        )

    def components_to_properties(self, dimensions: str | Sequence[str]) -> TensorMap:
        """Move component dimensions to the front of the properties, in the order given."""
        from ._moving import components_to_properties

        return components_to_properties(self, dimensions)

    # ----------------------------------------------------------------- printing
    def print(self, max_keys: int = 20) -> str:
        keys = self._keys.print(max_entries=max_keys, indent=6)
        first, _, rest = keys.partition("\n")
        lines = [f"TensorMap with {len(self)} blocks", "keys: " + first.lstrip()]
        if rest:
            lines.append(rest)
        return "\n".join(lines)

    def __repr__(self) -> str:
        return self.print()

    def __str__(self) -> str:
        return self.print()


def _flatten_tensormap(tensor: TensorMap) -> tuple[tuple[Any, ...], TensorMapMeta]:
    return tensor._flat_leaves(), tensor.meta


def _unflatten_tensormap(meta: TensorMapMeta, leaves: Sequence[Any]) -> TensorMap:
    return TensorMap._from_pytree(meta, leaves)


jax.tree_util.register_pytree_node(TensorMap, _flatten_tensormap, _unflatten_tensormap)
