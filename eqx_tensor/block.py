"""TensorBlock: one dense array with labelled samples, components and properties.

``values`` has shape ``(len(samples), *[len(c) for c in components], len(properties))``.
Explicit gradients are TensorBlocks attached under a parameter name (e.g. ``"positions"``):
their samples start with a ``"sample"`` dimension giving the row of ``values`` they
differentiate, extra gradient components (e.g. ``xyz``) come before the values'
components, and their properties equal the values' properties.

As a JAX pytree a block is one node: the arrays (values, gradient values, dynamic sample
labels) are the leaves and all static metadata is a single hashable :class:`BlockMeta`.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import jax
import numpy as np

from ._file_methods import FileMethods
from .labels import Labels, _device, _resolve_device

__all__ = ["BlockMeta", "TensorBlock"]


class DynamicSamples:
    """Stand-in for dynamic sample labels in static metadata: names and count only."""

    __slots__ = ("count", "names")

    def __init__(self, names: tuple[str, ...], count: int):
        self.names = names
        self.count = count

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, DynamicSamples)
            and self.names == other.names
            and self.count == other.count
        )

    def __hash__(self) -> int:
        return hash((self.names, self.count, "dynamic"))


class BlockMeta:
    """Static metadata of a block (and of its gradients): the pytree auxiliary data.

    ``samples`` is a static :class:`Labels` or a :class:`DynamicSamples`; ``gradients`` is a
    tuple of ``(parameter, BlockMeta)``. ``n_leaves`` counts the arrays of the flattened
    block. The hash is computed once, and equality tries identity first, because JAX
    compares treedefs on every jitted call.
    """

    __slots__ = (
        "_hash",
        "components",
        "gradients",
        "n_leaves",
        "parameter",
        "properties",
        "samples",
    )

    def __init__(
        self,
        samples: Labels | DynamicSamples,
        components: tuple[Labels, ...],
        properties: Labels,
        gradients: tuple[tuple[str, BlockMeta], ...],
        parameter: str | None,
    ):
        self.samples = samples
        self.components = components
        self.properties = properties
        self.gradients = gradients
        self.parameter = parameter
        dynamic = isinstance(samples, DynamicSamples)
        self.n_leaves = 1 + int(dynamic) + sum(g.n_leaves for _, g in gradients)
        self._hash = hash((samples, components, properties, gradients, parameter))

    def __hash__(self) -> int:
        return self._hash

    def __eq__(self, other: object) -> bool:
        if self is other:
            return True
        if not isinstance(other, BlockMeta) or self._hash != other._hash:
            return False
        return (
            self.samples == other.samples
            and self.components == other.components
            and self.properties == other.properties
            and self.gradients == other.gradients
            and self.parameter == other.parameter
        )

    def unflatten(self, leaves: Sequence[Any], start: int = 0) -> TensorBlock:
        """Rebuild a block from ``leaves[start:start + n_leaves]`` without validation."""
        values = leaves[start]
        position = start + 1
        if isinstance(self.samples, DynamicSamples):
            samples = Labels._unchecked(self.samples.names, leaves[position])
            position += 1
        else:
            samples = self.samples
        gradients = {}
        for parameter, meta in self.gradients:
            gradients[parameter] = meta.unflatten(leaves, position)
            position += meta.n_leaves
        return TensorBlock._unchecked(
            values, samples, self.components, self.properties, gradients, self.parameter, self
        )


def _is_array(values: Any) -> bool:
    return isinstance(values, (np.ndarray, jax.Array)) or (
        hasattr(values, "shape") and hasattr(values, "dtype") and hasattr(values, "ndim")
    )


class TensorBlock(FileMethods):
    """A dense array with metadata, following :py:class:`metatensor.TensorBlock`.

    Args:
        values: NumPy or JAX array of shape
            ``(len(samples), *[len(c) for c in components], len(properties))``.
        samples: labels of the first axis.
        components: one single-dimension :class:`Labels` per middle axis.
        properties: labels of the last axis.
    """

    __slots__ = (
        "_components",
        "_frozen",
        "_gradients",
        "_meta",
        "_parameter",
        "_properties",
        "_samples",
        "_values",
    )
    _LOADERS = ("load_block", "load_block_buffer")

    def __init__(
        self, values: Any, samples: Labels, components: Sequence[Labels], properties: Labels
    ):
        if not _is_array(values):
            if isinstance(values, (list, tuple)):
                values = np.asarray(values)
            else:
                raise TypeError(
                    f"TensorBlock values must be a NumPy or JAX array, got {type(values).__name__}"
                )
        if not isinstance(samples, Labels):
            raise TypeError(f"samples must be Labels, got {type(samples).__name__}")
        if not isinstance(properties, Labels):
            raise TypeError(f"properties must be Labels, got {type(properties).__name__}")
        components = tuple(components)
        for i, component in enumerate(components):
            if not isinstance(component, Labels):
                raise TypeError(f"components[{i}] must be Labels, got {type(component).__name__}")
            if len(component.names) != 1:
                raise ValueError(
                    f"components[{i}] must have exactly one dimension, got {component.names}"
                )
            if component.is_dynamic:
                raise ValueError(f"components[{i}] ({component.names[0]}) must be static Labels")
        if properties.is_dynamic:
            raise ValueError("properties must be static Labels")
        component_names = [c.names[0] for c in components]
        if len(set(component_names)) != len(component_names):
            raise ValueError(f"component names must be different, got {component_names}")
        expected = (len(samples), *[len(c) for c in components], len(properties))
        if values.ndim != len(expected):
            raise ValueError(
                f"values must have {len(expected)} dimensions (samples, {len(components)} "
                f"components, properties), got shape {tuple(values.shape)}"
            )
        dimension_names = ["samples", *[f"component '{n}'" for n in component_names], "properties"]
        for axis, (size, want, name) in enumerate(zip(values.shape, expected, dimension_names)):
            if size != want:
                raise ValueError(
                    f"values shape {tuple(values.shape)} does not match the metadata: axis {axis} "
                    f"({name}) has size {size} but the labels have {want} entries"
                )
        self._values = values
        self._samples = samples
        self._components = components
        self._properties = properties
        self._gradients: dict[str, TensorBlock] = {}
        self._parameter: str | None = None
        self._frozen = False
        self._meta: BlockMeta | None = None

    @classmethod
    def _unchecked(
        cls,
        values: Any,
        samples: Labels,
        components: tuple[Labels, ...],
        properties: Labels,
        gradients: dict[str, TensorBlock],
        parameter: str | None = None,
        meta: BlockMeta | None = None,
    ) -> TensorBlock:
        self = object.__new__(cls)
        self._values = values
        self._samples = samples
        self._components = components
        self._properties = properties
        self._gradients = gradients
        self._parameter = parameter
        self._frozen = True
        self._meta = meta
        return self

    # ----------------------------------------------------------------- accessors
    @property
    def values(self) -> Any:
        return self._values

    @property
    def samples(self) -> Labels:
        return self._samples

    @property
    def components(self) -> list[Labels]:
        return list(self._components)

    @property
    def properties(self) -> Labels:
        return self._properties

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self._values.shape)

    @property
    def dtype(self) -> Any:
        return self._values.dtype

    @property
    def is_gradient(self) -> bool:
        """Whether this block is a gradient block attached to another block."""
        return self._parameter is not None

    def gradient(self, parameter: str) -> TensorBlock:
        """The gradient block with respect to ``parameter``."""
        try:
            return self._gradients[parameter]
        except KeyError:
            raise ValueError(
                f"this block has no gradient with respect to '{parameter}', it has "
                f"{self.gradients_list()}"
            ) from None

    def gradients_list(self) -> list[str]:
        """Parameters of the gradients of this block, in the order they were added."""
        return list(self._gradients)

    def gradients(self) -> Iterator[tuple[str, TensorBlock]]:
        """``(parameter, gradient block)`` pairs."""
        return iter(list(self._gradients.items()))

    def has_gradient(self, parameter: str) -> bool:
        return parameter in self._gradients

    # ----------------------------------------------------------------- gradients
    def add_gradient(self, parameter: str, gradient: TensorBlock) -> None:
        """Attach ``gradient`` as the gradient of these values with respect to ``parameter``."""
        if self._parameter is not None:
            raise ValueError(
                f"cannot add a gradient with respect to '{parameter}' to a gradient block "
                f"('{self._parameter}'): gradients of gradients are not supported"
            )
        if self._frozen:
            raise ValueError(
                "cannot add gradient on this block since it is a view inside a TensorMap; "
                "build the block with its gradients before creating the TensorMap"
            )
        if not isinstance(parameter, str):
            raise TypeError(f"gradient parameter must be a str, got {type(parameter).__name__}")
        if not isinstance(gradient, TensorBlock):
            raise TypeError(f"gradient must be a TensorBlock, got {type(gradient).__name__}")
        if parameter in self._gradients:
            raise ValueError(f"this block already has a gradient with respect to '{parameter}'")
        if gradient._gradients:
            raise ValueError(
                f"the gradient with respect to '{parameter}' has gradients itself "
                f"({gradient.gradients_list()}): gradients of gradients are not supported"
            )
        samples = gradient._samples
        if not samples.names or samples.names[0] != "sample":
            raise ValueError(
                f"the samples of the gradient with respect to '{parameter}' must start with a "
                f"'sample' dimension, got {samples.names}"
            )
        if not samples.is_dynamic and len(samples) > 0:
            rows = samples.column("sample")
            if rows.min() < 0 or rows.max() >= len(self._samples):
                raise ValueError(
                    f"the 'sample' dimension of the gradient with respect to '{parameter}' "
                    f"points to row {int(rows.max() if rows.max() >= 0 else rows.min())}, but "
                    f"the values only have {len(self._samples)} samples"
                )
        n_values = len(self._components)
        n_extra = len(gradient._components) - n_values
        if n_extra < 0 or gradient._components[n_extra:] != self._components:
            raise ValueError(
                f"the components of the gradient with respect to '{parameter}' must end with "
                f"the values' components {[c.names[0] for c in self._components]}, got "
                f"{[c.names[0] for c in gradient._components]}"
            )
        if gradient._properties != self._properties:
            raise ValueError(
                f"the properties of the gradient with respect to '{parameter}' must be the "
                "same as the values' properties"
            )
        if np.dtype(gradient.dtype) != np.dtype(self.dtype):
            raise ValueError(
                f"the gradient with respect to '{parameter}' has dtype {gradient.dtype} but "
                f"the values have dtype {self.dtype}"
            )
        self._gradients[parameter] = gradient._as_gradient(parameter)
        self._meta = None

    def _as_gradient(self, parameter: str) -> TensorBlock:
        return TensorBlock._unchecked(
            self._values, self._samples, self._components, self._properties, {}, parameter
        )

    def _frozen_copy(self) -> TensorBlock:
        """Shallow copy that can no longer be modified, to live inside a TensorMap."""
        if self._frozen:
            return self
        return TensorBlock._unchecked(
            self._values,
            self._samples,
            self._components,
            self._properties,
            dict(self._gradients),
            self._parameter,
            self._meta,
        )

    def _map_arrays(self, fn: Any, samples_fn: Any = None) -> TensorBlock:
        """A modifiable block with ``fn`` applied to the values and every gradient's values
        (and ``samples_fn``, if given, to the sample labels of all of them)."""
        new = TensorBlock._unchecked(
            fn(self._values),
            self._samples if samples_fn is None else samples_fn(self._samples),
            self._components,
            self._properties,
            {},
            self._parameter,
        )
        new._frozen = False
        for parameter, gradient in self._gradients.items():
            new._gradients[parameter] = gradient._map_arrays(fn, samples_fn)._as_gradient(parameter)
        return new

    def copy(self) -> TensorBlock:
        """A modifiable copy with copied arrays (gradients included)."""
        return self._map_arrays(_copy_array)

    def to_dynamic_samples(self) -> TensorBlock:
        """The block with dynamic sample labels, its gradients' included (see
        :meth:`Labels.to_dynamic`): batches of equal sizes then share one compiled function."""
        return self._map_arrays(lambda array: array, Labels.to_dynamic)

    @property
    def device(self) -> Any:
        """``"cpu"`` for NumPy values, else the device of the JAX values."""
        return _device(self._values)

    def to(self, dtype: Any = None, device: Any = None, arrays: str | None = None) -> TensorBlock:
        """The block with values and gradients converted, as metatensor's ``TensorBlock.to``.

        Args:
            dtype: cast every array (values and gradients) to this dtype.
            device: move every array there with :func:`jax.device_put` (an explicit
                transfer; NumPy arrays become JAX arrays on that device), dynamic sample
                labels included (see :meth:`Labels.to`).
            arrays: ``"numpy"`` (host arrays; not inside ``jax.jit``) or ``"jax"``.
        """
        convert = _converter(dtype, device, arrays)
        if device is None:
            return self._map_arrays(convert)
        return self._map_arrays(convert, lambda samples: samples.to(device))

    # ----------------------------------------------------------------- pytree
    @property
    def meta(self) -> BlockMeta:
        """The static metadata (pytree auxiliary data) of this block."""
        if self._meta is None:
            samples = self._samples
            if samples.is_dynamic:
                samples = DynamicSamples(tuple(samples.names), len(samples))
            self._meta = BlockMeta(
                samples,
                self._components,
                self._properties,
                tuple((p, g.meta) for p, g in self._gradients.items()),
                self._parameter,
            )
        return self._meta

    def _leaves(self, out: list[Any]) -> None:
        out.append(self._values)
        if self._samples.is_dynamic:
            out.append(self._samples.values)
        for gradient in self._gradients.values():
            gradient._leaves(out)

    # ----------------------------------------------------------------- printing
    def __repr__(self) -> str:
        header = f"Gradient TensorBlock ('{self._parameter}')" if self._parameter else "TensorBlock"
        shape = ", ".join(str(len(c)) for c in self._components)
        gradients = self.gradients_list() if self._gradients else None
        samples = self._samples.names
        return (
            f"{header}\n"
            f"    samples ({len(self._samples)}): {samples}\n"
            f"    components ({shape}): {[c.names[0] for c in self._components]}\n"
            f"    properties ({len(self._properties)}): {self._properties.names}\n"
            f"    gradients: {gradients}"
        )


def _converter(dtype: Any, device: Any, arrays: str | None) -> Any:
    """The array conversion of ``to(dtype, device, arrays)``, arguments checked."""
    if arrays not in (None, "numpy", "jax"):
        raise ValueError(f"arrays must be None, 'numpy' or 'jax', got {arrays!r}")
    if arrays == "numpy" and device is not None:
        raise ValueError("NumPy arrays live on the host: use arrays='numpy' without device")
    dtype = None if dtype is None else np.dtype(dtype)
    device = None if device is None else _resolve_device(device)

    def convert(array: Any) -> Any:
        if arrays == "numpy":
            array = np.asarray(array)
        elif arrays == "jax":
            array = jax.numpy.asarray(array)
        if dtype is not None and array.dtype != dtype:
            array = array.astype(dtype)
        if device is not None:
            array = jax.device_put(array, device)
        return array

    return convert


def _copy_array(array: Any) -> Any:
    if isinstance(array, np.ndarray):
        return array.copy()
    return array  # JAX arrays are immutable: sharing them is a copy


def _flatten_block(block: TensorBlock) -> tuple[list[Any], BlockMeta]:
    leaves: list[Any] = []
    block._leaves(leaves)
    return leaves, block.meta


def _unflatten_block(meta: BlockMeta, leaves: Sequence[Any]) -> TensorBlock:
    return meta.unflatten(list(leaves))


jax.tree_util.register_pytree_node(TensorBlock, _flatten_block, _unflatten_block)
