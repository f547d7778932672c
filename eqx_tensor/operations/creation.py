"""Creating blocks and TensorMaps, following metatensor-operations.

``zeros_like``/``ones_like``/``empty_like``/``random_uniform_like`` keep the metadata of
their input and the gradients named in ``gradients`` (all by default). ``requires_grad``
is accepted for compatibility with metatensor's torch backend and ignored: JAX
differentiates functions, not arrays. Randomness is explicit: ``random_uniform_like``
takes a JAX PRNG key.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ..block import TensorBlock
from ..labels import Labels
from ..tensormap import TensorMap
from ._utils import (
    _add_gradient_like,
    _block_like,
    _check_block,
    _check_gradient_presence_raise,
    _check_tensormap,
    _is_tracer,
    _jit_operation,
    _refuse_gradients_of_gradients,
    _unfrozen,
)

__all__ = [
    "block_from_array",
    "empty_like",
    "empty_like_block",
    "one_hot",
    "ones_like",
    "ones_like_block",
    "random_uniform_like",
    "random_uniform_like_block",
    "zeros_like",
    "zeros_like_block",
]


# --------------------------------------------------------------------------- block_from_array
def _indices(shape: Sequence[int]) -> np.ndarray:
    """All index tuples of ``shape`` in C order, shape ``(prod(shape), len(shape))``."""
    return np.indices(shape).reshape(len(shape), -1).T.astype(np.int32)


def block_from_array(
    array: Any,
    sample_names: Sequence[str] | None = None,
    component_names: Sequence[str] | None = None,
    property_names: Sequence[str] | None = None,
) -> TensorBlock:
    """Wrap an array in a block with range metadata.

    The first ``len(sample_names)`` axes become the samples (default one ``"sample"``
    axis), the last ``len(property_names)`` axes the properties (default one
    ``"property"``) and the axes in between the components (named ``component_1``, ...
    unless ``component_names`` is given). Several sample or property axes are flattened
    in C order, with one label dimension per axis holding its index.

    Args:
        array: NumPy or JAX array with at least two dimensions.

    Returns:
        a block with values ``jnp.asarray(array)`` reshaped to
        ``(n_samples, *components, n_properties)``.
    """
    shape = tuple(array.shape)
    if len(shape) < 2:
        raise ValueError(
            "the array provided to `block_from_array` must have at least two dimensions. "
            f"Too few provided: {len(shape)}"
        )
    sample_names = ["sample"] if sample_names is None else list(sample_names)
    property_names = ["property"] if property_names is None else list(property_names)
    d_samples, d_properties = len(sample_names), len(property_names)
    d_components = len(shape) - d_samples - d_properties
    if d_components < 0:
        raise ValueError(
            f"the array provided to `block_from_array` with shape {shape} does not have "
            "enough dimensions to match the sample and property names"
        )
    if component_names is None:
        component_names = [f"component_{i + 1}" for i in range(d_components)]
    component_names = list(component_names)
    if len(component_names) != d_components:
        raise ValueError(
            f"the array provided to `block_from_array` with shape {shape} does not have "
            "enough dimensions to match the given sample, component, and property names"
        )
    samples = Labels(sample_names, _indices(shape[:d_samples]))
    components = [
        Labels.range(name, size)
        for name, size in zip(component_names, shape[d_samples : len(shape) - d_properties])
    ]
    properties = Labels(property_names, _indices(shape[len(shape) - d_properties :]))
    block_shape = (len(samples), *[len(c) for c in components], len(properties))
    return TensorBlock(jnp.asarray(array).reshape(block_shape), samples, components, properties)


# --------------------------------------------------------------------------- *_like
Gradients = str | Sequence[str] | None


def _gradients_to_keep(gradients: Gradients) -> tuple[str, ...] | None:
    """``gradients`` as a hashable tuple (a static ``jax.jit`` argument), or ``None``."""
    if gradients is None:
        return None
    if isinstance(gradients, str):
        return (gradients,)
    return tuple(gradients)


def _check_like(
    blocks: Sequence[TensorBlock], gradients: tuple[str, ...] | None, fname: str
) -> None:
    for block in blocks:
        if gradients is not None:
            _check_gradient_presence_raise(block, gradients, fname)


def _fill_block(
    block: TensorBlock, gradients: tuple[str, ...] | None, fill: Callable[[Any], Any]
) -> TensorBlock:
    """A block like ``block`` (gradients ``gradients``, all if ``None``) with ``fill(array)``."""
    result = _block_like(block, fill(block.values))
    for parameter in block.gradients_list() if gradients is None else gradients:
        gradient = block.gradient(parameter)
        _add_gradient_like(result, parameter, gradient, fill(gradient.values))
    return result


@functools.partial(_jit_operation, static_argnums=(1, 2))
def _fill_tensor(
    tensor: TensorMap, gradients: tuple[str, ...] | None, fill: Callable[[Any], Any]
) -> TensorMap:
    return TensorMap(tensor.keys, [_fill_block(block, gradients, fill) for block in tensor])


_fill_block_jit = _jit_operation(_fill_block, static_argnums=(1, 2))


def _like(tensor: TensorMap, gradients: Gradients, fname: str, fill: Callable) -> TensorMap:
    _check_tensormap(tensor, fname)
    _refuse_gradients_of_gradients(tensor, fname)
    gradients = _gradients_to_keep(gradients)
    _check_like(tensor.blocks(), gradients, fname)
    return _fill_tensor(tensor, gradients, fill)


def _like_block(
    block: TensorBlock, gradients: Gradients, fname: str, fill: Callable
) -> TensorBlock:
    _check_block(block, fname)
    _refuse_gradients_of_gradients(block, fname)
    gradients = _gradients_to_keep(gradients)
    _check_like([block], gradients, fname)
    # blocks coming out of jax.jit are frozen; *_like_block results are new, modifiable blocks
    return _unfrozen(_fill_block_jit(block, gradients, fill))


def zeros_like_block(
    block: TensorBlock, gradients: Gradients = None, requires_grad: bool = False
) -> TensorBlock:
    """A block with the metadata of ``block``, zero values, and zero ``gradients``.

    Args:
        block: the model block.
        gradients: gradient parameters to keep (one or several); ``None`` keeps all.
        requires_grad: ignored (metatensor torch-backend compatibility).
    """
    del requires_grad
    return _like_block(block, gradients, "zeros_like", jnp.zeros_like)


def zeros_like(
    tensor: TensorMap, gradients: Gradients = None, requires_grad: bool = False
) -> TensorMap:
    """A TensorMap with the metadata of ``tensor`` filled with zeros (see
    :func:`zeros_like_block`)."""
    del requires_grad
    return _like(tensor, gradients, "zeros_like", jnp.zeros_like)


def ones_like_block(
    block: TensorBlock, gradients: Gradients = None, requires_grad: bool = False
) -> TensorBlock:
    """A block with the metadata of ``block`` filled with ones, gradients included.

    Args:
        block: the model block.
        gradients: gradient parameters to keep (one or several); ``None`` keeps all.
        requires_grad: ignored (metatensor torch-backend compatibility).
    """
    del requires_grad
    return _like_block(block, gradients, "ones_like", jnp.ones_like)


def ones_like(
    tensor: TensorMap, gradients: Gradients = None, requires_grad: bool = False
) -> TensorMap:
    """A TensorMap with the metadata of ``tensor`` filled with ones (see
    :func:`ones_like_block`)."""
    del requires_grad
    return _like(tensor, gradients, "ones_like", jnp.ones_like)


def empty_like_block(
    block: TensorBlock, gradients: Gradients = None, requires_grad: bool = False
) -> TensorBlock:
    """A block with the metadata of ``block`` and unspecified values.

    JAX has no uninitialised memory: like ``jnp.empty_like`` this returns zeros, but code
    must not rely on it. ``requires_grad`` is ignored.
    """
    del requires_grad
    return _like_block(block, gradients, "empty_like", jnp.empty_like)


def empty_like(
    tensor: TensorMap, gradients: Gradients = None, requires_grad: bool = False
) -> TensorMap:
    """A TensorMap with the metadata of ``tensor`` and unspecified values (see
    :func:`empty_like_block`)."""
    del requires_grad
    return _like(tensor, gradients, "empty_like", jnp.empty_like)


# --------------------------------------------------------------------------- random
def _check_key(key: Any, fname: str) -> None:
    if not isinstance(key, (jax.Array, np.ndarray)):
        raise TypeError(
            f"'{fname}' needs an explicit JAX PRNG key as second argument (e.g. "
            f"jax.random.key(0)), got {type(key).__name__}: pass gradients=... by keyword"
        )


def _uniform_arrays(key: jax.Array, arrays: Sequence[Any]) -> list[jax.Array]:
    """U[0, 1) arrays with the shapes and (floating) dtypes of ``arrays``.

    One draw per dtype, sliced into the arrays: each ``jax.random.uniform`` call inlines a
    whole threefry program, so one call per block would compile one such program per block.
    """
    groups: dict[Any, list[int]] = {}
    for i, array in enumerate(arrays):
        dtype = array.dtype if jnp.issubdtype(array.dtype, jnp.floating) else jnp.result_type(float)
        groups.setdefault(np.dtype(dtype), []).append(i)
    result: list[Any] = [None] * len(arrays)
    for subkey, (dtype, indices) in zip(jax.random.split(key, len(groups)), groups.items()):
        sizes = [int(np.prod(arrays[i].shape)) for i in indices]
        offsets = np.cumsum([0, *sizes])
        flat = jax.random.uniform(subkey, (int(offsets[-1]),), dtype=dtype)
        for i, start, stop in zip(indices, offsets[:-1], offsets[1:]):
            result[i] = flat[start:stop].reshape(arrays[i].shape).astype(arrays[i].dtype)
    return result


def _kept_arrays(block: TensorBlock, gradients: tuple[str, ...] | None) -> list[Any]:
    """The arrays :func:`_fill_block` fills, in the order it fills them."""
    parameters = block.gradients_list() if gradients is None else gradients
    return [block.values, *[block.gradient(p).values for p in parameters]]


def _random_blocks(
    blocks: Sequence[TensorBlock], key: jax.Array, gradients: tuple[str, ...] | None
) -> list[TensorBlock]:
    arrays = [array for block in blocks for array in _kept_arrays(block, gradients)]
    samples = iter(_uniform_arrays(key, arrays))
    return [_fill_block(block, gradients, lambda _: next(samples)) for block in blocks]


@functools.partial(_jit_operation, static_argnums=2)
def _random_tensor(
    tensor: TensorMap, key: jax.Array, gradients: tuple[str, ...] | None
) -> TensorMap:
    return TensorMap(tensor.keys, _random_blocks(tensor.blocks(), key, gradients))


@functools.partial(_jit_operation, static_argnums=2)
def _random_block(
    block: TensorBlock, key: jax.Array, gradients: tuple[str, ...] | None
) -> TensorBlock:
    return _random_blocks([block], key, gradients)[0]


def random_uniform_like_block(
    block: TensorBlock,
    key: jax.Array,
    gradients: Gradients = None,
    requires_grad: bool = False,
) -> TensorBlock:
    """A block with the metadata of ``block`` and values drawn uniformly in ``[0, 1)``.

    Args:
        block: the model block.
        key: a JAX PRNG key (``jax.random.key(seed)``), which replaces metatensor's global
            random state: the same key gives the same values.
        gradients: gradient parameters to keep (one or several); ``None`` keeps all.
        requires_grad: ignored (metatensor torch-backend compatibility).

    Values have the block's floating dtype (integer blocks get floats cast to their dtype).
    """
    del requires_grad
    _check_key(key, "random_uniform_like_block")
    _check_block(block, "random_uniform_like")
    _refuse_gradients_of_gradients(block, "random_uniform_like")
    gradients = _gradients_to_keep(gradients)
    _check_like([block], gradients, "random_uniform_like")
    return _unfrozen(_random_block(block, key, gradients))


def random_uniform_like(
    tensor: TensorMap,
    key: jax.Array,
    gradients: Gradients = None,
    requires_grad: bool = False,
) -> TensorMap:
    """A TensorMap with the metadata of ``tensor`` and values drawn uniformly in ``[0, 1)``.

    See :func:`random_uniform_like_block`; all arrays come from one stream of ``key``.
    """
    del requires_grad
    _check_tensormap(tensor, "random_uniform_like")
    _refuse_gradients_of_gradients(tensor, "random_uniform_like")
    _check_key(key, "random_uniform_like")
    gradients = _gradients_to_keep(gradients)
    _check_like(tensor.blocks(), gradients, "random_uniform_like")
    return _random_tensor(tensor, key, gradients)


# --------------------------------------------------------------------------- one_hot
def one_hot(labels: Labels, dimension: Labels) -> jax.Array:
    """One-hot encoding of one dimension of ``labels``.

    Args:
        labels: labels with a dimension named like the single dimension of ``dimension``.
        dimension: labels with one dimension, listing the possible values (the columns).

    Returns:
        an ``int32`` array of shape ``(len(labels), len(dimension))`` with a 1 in row ``i``
        at the position in ``dimension`` of ``labels[i]``'s value.

    Raises:
        ValueError: ``dimension`` has several dimensions, or a value of ``labels`` is not
            in ``dimension`` (checked whenever ``labels`` has concrete values).

    ``dimension`` must be static. ``labels`` may be dynamic (e.g. padded batch samples):
    under ``jax.jit`` a value missing from ``dimension`` (such as a padding sentinel)
    gives a row of zeros instead of an error.
    """
    if not isinstance(labels, Labels) or not isinstance(dimension, Labels):
        raise TypeError(
            f"`labels` and `dimension` in 'one_hot' must be Labels, got "
            f"{type(labels).__name__} and {type(dimension).__name__}"
        )
    if len(dimension.names) != 1:
        raise ValueError(
            "only one label dimension can be extracted as one-hot encoding. The `dimension` "
            f"labels contains {len(dimension.names)} names"
        )
    dimension.require_static("one_hot (the `dimension` labels)")
    name = dimension.names[0]
    column = labels.column(name)
    possible = dimension.values[:, 0]
    if _is_tracer(column):
        return (column[:, None] == jnp.asarray(possible)[None, :]).astype(jnp.int32)
    column = np.asarray(column)
    matches = column[:, None] == possible[None, :]
    missing = ~matches.any(axis=1)
    if missing.any():
        value = int(column[np.nonzero(missing)[0][0]])
        raise ValueError(
            f"{name}={value} is present in the labels, but was not found in the dimension"
        )
    return jnp.asarray(matches.astype(np.int32))
