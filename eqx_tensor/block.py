"""TensorBlock: one dense array with labelled samples, components and properties.

``values`` has shape ``(len(samples), *[len(c) for c in components], len(properties))``.
Explicit gradients are TensorBlocks attached under a parameter name (e.g. ``"positions"``):
their samples start with a ``"sample"`` dimension giving the row of ``values`` they
differentiate, extra gradient components (e.g. ``xyz``) come before the values'
components, and their properties equal the values' properties. A gradient block can have
gradients itself (gradients of gradients, as in metatensor), with the same rules relative
to the gradient block; their parameter path is ``"positions/cell"``.

As a JAX pytree a block is one node: the arrays (values, gradient values, dynamic sample
labels) are the leaves and all static metadata is a single hashable :class:`BlockMeta`.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import jax
import numpy as np

from ._backend import to_jax, warn_if_downcast
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

    def __repr__(self) -> str:
        # pytree aux data: shown in treedef mismatch errors, so short but telling what differs
        return f"BlockMeta({self.summary()})"

    def summary(self) -> str:
        """One line: samples, components and properties (names and counts), gradients."""

        def labels(l: Any) -> str:
            count = l.count if isinstance(l, DynamicSamples) else len(l)
            kind = ", dynamic" if isinstance(l, DynamicSamples) else ""
            return f"{list(l.names)} x {count}{kind}"

        parts = [f"samples {labels(self.samples)}"]
        if self.components:
            parts.append("components " + ", ".join(labels(c) for c in self.components))
        parts.append(f"properties {labels(self.properties)}")
        if self.gradients:
            inner = "; ".join(f"{p!r}: {g.summary()}" for p, g in self.gradients)
            parts.append(f"gradients {{{inner}}}")
        return "; ".join(parts)

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


class TensorBlock:
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
        """The values, shape ``(len(samples), *[len(c) for c in components], len(properties))``."""
        return self._values

    @values.setter
    def values(self, new_values: Any) -> None:
        raise AttributeError(
            "Direct assignment to `values` is not possible. Please use block.values[:] = "
            "new_values instead. (This is for NumPy values; JAX arrays are immutable: build a "
            "new TensorBlock with the new values.)"
        )

    @property
    def is_view(self) -> bool:
        """Whether this block is a view inside a TensorMap or another block (a gradient)."""
        return self._frozen

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
        """Attach ``gradient`` as the gradient of these values with respect to ``parameter``.

        As in metatensor, ``gradient`` may carry gradients itself (gradients of gradients,
        e.g. ``block.gradient("positions").gradient("cell")``): add them to ``gradient``
        before attaching it, since a block inside a TensorMap or another block is a view
        that can not be modified.

        Args:
            parameter: name of the parameter (``"positions"``, ``"strain"``, ...).
            gradient: a block whose samples start with ``"sample"`` (the row of these
                values each gradient row refers to), whose components end with these
                values' components (extra gradient components come first) and whose
                properties are these values' properties, with the same dtype.

        Raises:
            ValueError: this block is a view inside a TensorMap or another block, the
                parameter is already there, or the gradient metadata do not match.
            TypeError: ``parameter`` is not a str or ``gradient`` not a TensorBlock.
        """
        if self._frozen:
            hint = (
                "gradients of gradients must be added to the gradient block before it is "
                "attached to its values"
                if self._parameter is not None
                else "add the gradients before creating the TensorMap, or work on block.copy()"
            )
            raise ValueError(
                f"cannot add the gradient with respect to '{parameter}' on this block since "
                f"it is a view inside a TensorMap or another TensorBlock: {hint}"
            )
        if not isinstance(parameter, str):
            raise TypeError(f"gradient parameter must be a str, got {type(parameter).__name__}")
        if not isinstance(gradient, TensorBlock):
            raise TypeError(f"gradient must be a TensorBlock, got {type(gradient).__name__}")
        if parameter in self._gradients:
            raise ValueError(f"this block already has a gradient with respect to '{parameter}'")
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
        """This block as the gradient ``parameter`` of another one (a view).

        ``parameter`` is the path from the values: ``"positions"``, or ``"positions/cell"``
        for a gradient of a gradient (metatensor prints the same), and the gradients of
        this block get their paths below it.
        """
        gradients = {
            name: gradient._as_gradient(f"{parameter}/{name}")
            for name, gradient in self._gradients.items()
        }
        return TensorBlock._unchecked(
            self._values, self._samples, self._components, self._properties, gradients, parameter
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

    def with_arrays(
        self,
        values: Any,
        *,
        samples: Labels | None = None,
        properties: Labels | None = None,
        gradients: Mapping[str, Any] | None = None,
        check: bool = True,
    ) -> TensorBlock:
        """A new block with ``values`` and this block's metadata: the one way to rebuild a
        block with new arrays (operations, layers and the atomistic functions all use it).

        Args:
            values: the new values, shape ``(len(samples), *components, len(properties))``.
            samples: new sample labels (default: this block's).
            properties: new property labels (default: this block's); the gradients take them
                too.
            gradients: new values for gradients, by parameter; each gradient keeps the
                samples and components of this block's gradient with that parameter. ``None``
                (default) gives a block without gradients.
            check: validate the shapes against the labels (as ``TensorBlock(...)`` does).
                ``False`` skips it, for callers that computed the arrays from this block's
                own shapes.

        Returns:
            A new, modifiable block (not a view).
        """
        properties = self._properties if properties is None else properties

        def build(array: Any, samples: Labels, components: tuple[Labels, ...]) -> TensorBlock:
            if check:
                return TensorBlock(array, samples, components, properties)
            block = TensorBlock._unchecked(array, samples, components, properties, {})
            block._frozen = False
            return block

        new = build(values, self._samples if samples is None else samples, self._components)
        for parameter, gradient_values in (gradients or {}).items():
            like = self.gradient(parameter)
            gradient = build(gradient_values, like._samples, like._components)
            new._gradients[parameter] = gradient._as_gradient(parameter)
        return new

    def _map_arrays(self, fn: Any, samples_fn: Any = None) -> TensorBlock:
        """A new, modifiable (non-gradient) block with ``fn`` applied to the values and to
        every gradient's values, gradients of gradients included (and ``samples_fn``, if
        given, to the sample labels of all of them)."""
        new = TensorBlock._unchecked(
            fn(self._values),
            self._samples if samples_fn is None else samples_fn(self._samples),
            self._components,
            self._properties,
            {},
            None,
        )
        new._frozen = False
        for parameter, gradient in self._gradients.items():
            new._gradients[parameter] = gradient._map_arrays(fn, samples_fn)._as_gradient(parameter)
        return new

    def __len__(self) -> int:
        """The number of samples, ``len(self.values)`` (metatensor's ``len(block)``)."""
        return int(self._values.shape[0])

    def copy(self, deep: bool = True) -> TensorBlock:
        """A new, modifiable block with the same labels, values and gradients.

        As metatensor's ``TensorBlock.copy``: with ``deep=True`` the values are copied,
        otherwise the new block shares them. Departure: JAX arrays are immutable, so they
        are shared in both cases (a copy could never be observed); only NumPy values are
        copied. A copy of a gradient block is a regular block (it can go in a TensorMap).
        """
        return self._map_arrays(_copy_array if deep else _same_array)

    def __copy__(self) -> TensorBlock:
        return self.copy(deep=False)

    def __deepcopy__(self, memo: dict) -> TensorBlock:
        return self.copy(deep=True)

    def to_dynamic_samples(self) -> TensorBlock:
        """The block with dynamic sample labels, its gradients' included (see
        :meth:`Labels.to_dynamic`): batches of equal sizes then share one compiled function."""
        return self._map_arrays(lambda array: array, Labels.to_dynamic)

    @property
    def device(self) -> Any:
        """``"cpu"`` for NumPy values, else the device of the JAX values."""
        return _device(self._values)

    def to(self, *args: Any, **kwargs: Any) -> TensorBlock:
        """The block with values and gradients converted, as metatensor's ``TensorBlock.to``.

        Takes metatensor's arguments: ``dtype`` and ``device`` by keyword or by position
        (a NumPy/JAX dtype, a device string or a :class:`jax.Device`), and the keywords
        ``arrays`` and ``non_blocking``.

        Args:
            dtype: cast every array (values and gradients) to this dtype.
            device: where the arrays go. ``"cpu"`` leaves NumPy arrays as they are (host
                memory, as metatensor does); any other device (a name such as ``"gpu"``,
                or a :class:`jax.Device`) moves them with :func:`jax.device_put`, NumPy
                arrays becoming JAX arrays there (metatensor refuses to move NumPy arrays
                off the CPU). JAX arrays are moved to the device, ``"cpu"`` included.
                Dynamic sample labels follow (see :meth:`Labels.to`).
            arrays: ``"numpy"`` (host arrays; not inside ``jax.jit``), ``"jax"`` or
                ``None`` (keep the kind of array); metatensor's ``"torch"`` is refused.
            non_blocking: accepted for metatensor's signature; JAX transfers are
                asynchronous already.
        """
        dtype, device, arrays = _to_arguments("`TensorBlock.to`", args, kwargs)
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
        """metatensor's ``repr(block)``, character for character."""
        shape = tuple(int(n) for n in self._values.shape)
        if self._parameter is not None:
            text = f"TensorBlock gradient for '{self._parameter}', with shape {shape}\n"
        else:
            text = f"TensorBlock with shape {shape}\n"
        text += f"    samples: [{', '.join(self._samples.names)}]\n"
        component_names = [c.names[0] for c in self._components]
        if component_names:
            text += f"    components: [{', '.join(component_names)}]\n"
        text += f"    properties: [{', '.join(self._properties.names)}]"
        if self._gradients:
            text += "\n\n    gradients:"
            width = max(len(parameter) for parameter in self._gradients)
            for parameter, gradient in self._gradients.items():
                grad_shape = tuple(int(n) for n in gradient._values.shape)
                text += f"\n        {parameter.ljust(width)} => TensorBlock with shape {grad_shape}"
        return text


def _is_host_device(device: Any) -> bool:
    """Whether ``device`` is metatensor's host device name (``"cpu"``, ``"cpu:0"``)."""
    return isinstance(device, str) and device.split(":")[0] == "cpu"


def _is_device(value: Any) -> bool:
    return isinstance(value, (str, jax.Device, jax.sharding.Sharding))


def _to_arguments(
    context: str, args: Sequence[Any], kwargs: dict[str, Any]
) -> tuple[Any, Any, str | None]:
    """``(dtype, device, arrays)`` from the arguments of ``to()``, parsed as metatensor does.

    Positional arguments are a device (a str, :class:`jax.Device` or sharding) or a
    numeric dtype, each at most once.
    """
    kwargs = dict(kwargs)
    arrays = kwargs.pop("arrays", None)
    kwargs.pop("non_blocking", None)
    dtype = kwargs.pop("dtype", None)
    device = kwargs.pop("device", None)
    if kwargs:
        raise TypeError(f"{context} got unexpected keyword arguments {sorted(kwargs)}")
    for positional in args:
        if _is_device(positional):
            if device is not None:
                raise ValueError(f"can not give a device twice in {context}")
            device = positional
            continue
        try:
            as_dtype = np.dtype(positional)
        except TypeError:
            as_dtype = np.dtype(object)
        if np.issubdtype(as_dtype, np.number):
            if dtype is not None:
                raise ValueError(f"can not give a dtype twice in {context}")
            dtype = positional
            continue
        raise TypeError(f"unexpected type in {context}: {type(positional)}")
    return dtype, device, arrays


def _converter(dtype: Any, device: Any, arrays: str | None) -> Any:
    """The array conversion of ``to(dtype, device, arrays)``, arguments checked."""
    if arrays not in (None, "numpy", "jax"):
        raise ValueError(f"arrays must be None, 'numpy' or 'jax', got {arrays!r}")
    host = _is_host_device(device)
    if arrays == "numpy" and device is not None and not host:
        raise ValueError(
            f"can not move numpy array to non-cpu device: {device} (NumPy arrays live on "
            "the host: use arrays='jax' to move the data to a JAX device)"
        )
    dtype = None if dtype is None else np.dtype(dtype)
    target = unknown = None
    if device is not None:
        try:
            target = _resolve_device(device)
        except ValueError as error:
            unknown = error

    def convert(array: Any) -> Any:
        if unknown is not None:
            if isinstance(array, np.ndarray) and arrays != "jax":
                raise ValueError(
                    f"can not move numpy array to non-cpu device: {device} ({unknown})"
                ) from None
            raise unknown
        if arrays == "numpy":
            array = np.asarray(array)
        elif arrays == "jax":
            array = to_jax(array)
        if dtype is not None and array.dtype != dtype:
            array = array.astype(dtype)
        # "cpu" is where NumPy arrays already are; JAX arrays are moved there
        if target is not None and not (host and isinstance(array, np.ndarray)):
            warn_if_downcast(array)
            array = jax.device_put(array, target)
        return array

    return convert


def _copy_array(array: Any) -> Any:
    if isinstance(array, np.ndarray):
        return array.copy()
    return array  # JAX arrays are immutable: sharing them is a copy


def _same_array(array: Any) -> Any:
    return array


def _flatten_block(block: TensorBlock) -> tuple[list[Any], BlockMeta]:
    leaves: list[Any] = []
    block._leaves(leaves)
    return leaves, block.meta


def _unflatten_block(meta: BlockMeta, leaves: Sequence[Any]) -> TensorBlock:
    return meta.unflatten(list(leaves))


class LeafKey:
    """A pytree key naming an array of a block/TensorMap, e.g. ``.gradient('positions').values``.

    ``jax.tree_util.keystr`` of a leaf's path is then the path a user would write to reach it.
    """

    __slots__ = ("_text",)

    def __init__(self, text: str):
        self._text = text

    def __str__(self) -> str:
        return self._text

    def __repr__(self) -> str:
        return f"LeafKey({self._text!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, LeafKey) and other._text == self._text

    def __hash__(self) -> int:
        return hash(self._text)


def _leaf_names(meta: BlockMeta, prefix: str = "") -> list[str]:
    """What each leaf of a block is, in flattening order: ``.values``, ``.samples``, gradients."""
    names = [f"{prefix}.values"]
    if isinstance(meta.samples, DynamicSamples):
        names.append(f"{prefix}.samples")
    for parameter, gradient in meta.gradients:
        names.extend(_leaf_names(gradient, f"{prefix}.gradient({parameter!r})"))
    return names


def leaf_keys(meta: BlockMeta, prefix: str = "") -> tuple[LeafKey, ...]:
    """The pytree keys of a block's leaves, each name prefixed with ``prefix``.

    Built on demand: only the key-path APIs (``tree_map_with_path``, ``tree_leaves_with_path``,
    error messages) ask for them, ``jax.jit`` flattens without keys.
    """
    return tuple(LeafKey(name) for name in _leaf_names(meta, prefix))


def _flatten_block_with_keys(block: TensorBlock) -> tuple[list[tuple[Any, Any]], BlockMeta]:
    leaves, meta = _flatten_block(block)
    return list(zip(leaf_keys(meta), leaves)), meta


jax.tree_util.register_pytree_with_keys(
    TensorBlock, _flatten_block_with_keys, _unflatten_block, _flatten_block
)
