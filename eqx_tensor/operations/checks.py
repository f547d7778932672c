"""Comparisons of TensorMaps and TensorBlocks, following metatensor-operations.

* ``equal_metadata*`` compare metadata only. Static metadata is part of the pytree
  structure, so they also work inside ``jax.jit``; dynamic sample labels are compared by
  value when their values are concrete, and raise a clear ``ValueError`` when they are
  traced (names or sizes that differ still give ``False``).
* ``equal*`` and ``allclose*`` compare values too, so they need concrete arrays: they
  cannot run inside ``jax.jit``/``jax.grad``/``jax.vmap`` and raise a ``ValueError``
  naming the function when given tracers.
* ``is_contiguous*``/``make_contiguous*`` exist for API compatibility: JAX arrays are
  always contiguous, only NumPy inputs can be non-contiguous.

The boolean forms return ``True``/``False``; the ``_raise`` forms raise
:class:`NotEqualError` (a ``ValueError``) with a message saying where the inputs differ.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .._backend import to_jax
from ..block import TensorBlock
from ..tensormap import TensorMap
from ._utils import (
    NotEqualError,
    _add_gradient_like,
    _block_like,
    _check_block,
    _check_blocks_impl,
    _check_same_gradients_impl,
    _check_same_keys_impl,
    _check_tensormap,
    _concrete,
    _entry_str,
    _refuse_gradients_of_gradients,
)

__all__ = [
    "NotEqualError",
    "allclose",
    "allclose_block",
    "allclose_block_raise",
    "allclose_raise",
    "equal",
    "equal_block",
    "equal_block_raise",
    "equal_metadata",
    "equal_metadata_block",
    "equal_metadata_block_raise",
    "equal_metadata_raise",
    "equal_raise",
    "is_contiguous",
    "is_contiguous_block",
    "make_contiguous",
    "make_contiguous_block",
]


# --------------------------------------------------------------------------- metadata
def _equal_metadata_impl(
    tensor_1: TensorMap,
    tensor_2: TensorMap,
    check: str | Sequence[str],
    check_gradients: bool,
) -> str:
    if not isinstance(tensor_1, TensorMap):
        return f"`tensor_1` must be a TensorMap, not {type(tensor_1)}"
    if not isinstance(tensor_2, TensorMap):
        return f"`tensor_2` must be a TensorMap, not {type(tensor_2)}"
    message = _check_same_keys_impl(tensor_1, tensor_2, "equal_metadata_raise")
    if message:
        return message
    positions = tensor_2.keys.positions(tensor_1.keys)
    for i, block_1 in enumerate(tensor_1):
        block_2 = tensor_2.block_by_id(int(positions[i]))
        message = _equal_metadata_block_impl(block_1, block_2, check, check_gradients)
        if message:
            return message
    return ""


def _equal_metadata_block_impl(
    block_1: TensorBlock,
    block_2: TensorBlock,
    check: str | Sequence[str],
    check_gradients: bool,
) -> str:
    if not isinstance(block_1, TensorBlock):
        return f"`block_1` must be a TensorBlock, not {type(block_1)}"
    if not isinstance(block_2, TensorBlock):
        return f"`block_2` must be a TensorBlock, not {type(block_2)}"
    fname = "equal_metadata_block_raise"
    message = _check_blocks_impl(block_1, block_2, fname, check, dynamic="raise")
    if message:
        return message
    if check_gradients:
        message = _check_same_gradients_impl(block_1, block_2, fname, check, dynamic="raise")
    return message


def equal_metadata(
    tensor_1: TensorMap,
    tensor_2: TensorMap,
    check: str | Sequence[str] = "all",
    check_gradients: bool = True,
) -> bool:
    """Whether two TensorMaps have the same metadata.

    Keys are always compared, in any order. Then, for each key, the metadata named by
    ``check`` (``"all"``, or a list of ``"samples"``, ``"components"``, ``"properties"``)
    must hold the same values in the same order, and with ``check_gradients`` so must the
    gradient parameters and the same metadata of the gradients.

    Works under ``jax.jit`` (metadata is static). Dynamic sample labels with traced
    values and equal names and sizes cannot be compared: that raises a ``ValueError``.
    Arguments that are not TensorMaps give ``False``, as in metatensor.
    """
    return not _equal_metadata_impl(tensor_1, tensor_2, check, check_gradients)


def equal_metadata_raise(
    tensor_1: TensorMap,
    tensor_2: TensorMap,
    check: str | Sequence[str] = "all",
    check_gradients: bool = True,
) -> None:
    """Raise :class:`NotEqualError` if :func:`equal_metadata` would return ``False``."""
    message = _equal_metadata_impl(tensor_1, tensor_2, check, check_gradients)
    if message:
        raise NotEqualError(message)


def equal_metadata_block(
    block_1: TensorBlock,
    block_2: TensorBlock,
    check: str | Sequence[str] = "all",
    check_gradients: bool = True,
) -> bool:
    """Whether two TensorBlocks have the same metadata (see :func:`equal_metadata`)."""
    return not _equal_metadata_block_impl(block_1, block_2, check, check_gradients)


def equal_metadata_block_raise(
    block_1: TensorBlock,
    block_2: TensorBlock,
    check: str | Sequence[str] = "all",
    check_gradients: bool = True,
) -> None:
    """Raise :class:`NotEqualError` if :func:`equal_metadata_block` would return ``False``."""
    message = _equal_metadata_block_impl(block_1, block_2, check, check_gradients)
    if message:
        raise NotEqualError(message)


# --------------------------------------------------------------------------- values
def _compare_tensors(tensor_1: TensorMap, tensor_2: TensorMap, fname: str, compare) -> str:
    _check_tensormap(tensor_1, fname, "tensor_1")
    _check_tensormap(tensor_2, fname, "tensor_2")
    message = _check_same_keys_impl(tensor_1, tensor_2, fname)
    if message:
        return f"the tensor maps have different keys: {message}"
    positions = tensor_2.keys.positions(tensor_1.keys)
    for i, (key, block_1) in enumerate(tensor_1.items()):
        message = _compare_blocks(block_1, tensor_2.block_by_id(int(positions[i])), fname, compare)
        if message:
            return f"blocks for key {_entry_str(key)} are different: {message}"
    return ""


def _compare_blocks(block_1: TensorBlock, block_2: TensorBlock, fname: str, compare) -> str:
    """The shared body of ``equal_block`` and ``allclose_block`` (same order of checks)."""
    _check_block(block_1, fname, "block_1")
    _check_block(block_2, fname, "block_2")
    if tuple(block_1.values.shape) != tuple(block_2.values.shape):
        return "values shapes are different"
    values_1 = _concrete(block_1.values, fname)
    values_2 = _concrete(block_2.values, fname)
    if not compare(values_1, values_2):
        return "values are not allclose" if fname == "allclose" else "values are not equal"
    message = _check_blocks_impl(block_1, block_2, fname, dynamic="raise")
    if message:
        return message
    message = _check_same_gradients_impl(block_1, block_2, fname, dynamic="raise")
    if message:
        return message
    for parameter, gradient_1 in block_1.gradients():
        gradient_2 = block_2.gradient(parameter)
        if not compare(
            _concrete(gradient_1.values, fname, f"'{parameter}' gradient values"),
            _concrete(gradient_2.values, fname, f"'{parameter}' gradient values"),
        ):
            what = "allclose" if fname == "allclose" else "equal"
            return f"gradient '{parameter}' values are not {what}"
    return ""


def _array_equal(a: np.ndarray, b: np.ndarray) -> bool:
    return bool(np.all(a == b))


def _allclose(rtol: float, atol: float, equal_nan: bool):
    def compare(a: np.ndarray, b: np.ndarray) -> bool:
        return bool(np.allclose(a, b, rtol=rtol, atol=atol, equal_nan=equal_nan))

    return compare


def equal(tensor_1: TensorMap, tensor_2: TensorMap) -> bool:
    """Whether two TensorMaps have the same keys (any order), metadata and exact values.

    Gradients must have the same parameters, metadata and values too. Needs concrete
    values: calling it inside ``jax.jit`` (or another transformation) raises a
    ``ValueError``; use :func:`equal_metadata` there.
    """
    return not _compare_tensors(tensor_1, tensor_2, "equal", _array_equal)


def equal_raise(tensor_1: TensorMap, tensor_2: TensorMap) -> None:
    """Raise :class:`NotEqualError` saying where the tensors differ if they are not equal."""
    message = _compare_tensors(tensor_1, tensor_2, "equal", _array_equal)
    if message:
        raise NotEqualError(message)


def equal_block(block_1: TensorBlock, block_2: TensorBlock) -> bool:
    """Whether two TensorBlocks have the same metadata and exact values (see :func:`equal`)."""
    return not _compare_blocks(block_1, block_2, "equal", _array_equal)


def equal_block_raise(block_1: TensorBlock, block_2: TensorBlock) -> None:
    """Raise :class:`NotEqualError` saying where the blocks differ if they are not equal."""
    message = _compare_blocks(block_1, block_2, "equal", _array_equal)
    if message:
        raise NotEqualError(message)


def allclose(
    tensor_1: TensorMap,
    tensor_2: TensorMap,
    rtol: float = 1e-13,
    atol: float = 1e-12,
    equal_nan: bool = False,
) -> bool:
    """Like :func:`equal`, with values compared by ``numpy.allclose(rtol, atol, equal_nan)``.

    Needs concrete values: raises a ``ValueError`` inside JAX transformations.
    """
    return not _compare_tensors(tensor_1, tensor_2, "allclose", _allclose(rtol, atol, equal_nan))


def allclose_raise(
    tensor_1: TensorMap,
    tensor_2: TensorMap,
    rtol: float = 1e-13,
    atol: float = 1e-12,
    equal_nan: bool = False,
) -> None:
    """Raise :class:`NotEqualError` if :func:`allclose` would return ``False``."""
    message = _compare_tensors(tensor_1, tensor_2, "allclose", _allclose(rtol, atol, equal_nan))
    if message:
        raise NotEqualError(message)


def allclose_block(
    block_1: TensorBlock,
    block_2: TensorBlock,
    rtol: float = 1e-13,
    atol: float = 1e-12,
    equal_nan: bool = False,
) -> bool:
    """Like :func:`equal_block`, with values compared by ``numpy.allclose``."""
    return not _compare_blocks(block_1, block_2, "allclose", _allclose(rtol, atol, equal_nan))


def allclose_block_raise(
    block_1: TensorBlock,
    block_2: TensorBlock,
    rtol: float = 1e-13,
    atol: float = 1e-12,
    equal_nan: bool = False,
) -> None:
    """Raise :class:`NotEqualError` if :func:`allclose_block` would return ``False``."""
    message = _compare_blocks(block_1, block_2, "allclose", _allclose(rtol, atol, equal_nan))
    if message:
        raise NotEqualError(message)


# --------------------------------------------------------------------------- contiguity
def _array_is_contiguous(array) -> bool:
    # JAX arrays (and tracers) are always dense row-major; only NumPy views can be strided
    if isinstance(array, np.ndarray):
        return bool(array.flags["C_CONTIGUOUS"])
    return True


def is_contiguous_block(block: TensorBlock) -> bool:
    """Whether the values and gradient values of ``block`` are C-contiguous.

    Always ``True`` for JAX arrays; only NumPy views (e.g. transposes) are not.
    """
    _check_block(block, "is_contiguous_block")
    _refuse_gradients_of_gradients(block, "is_contiguous_block")
    if not _array_is_contiguous(block.values):
        return False
    return all(_array_is_contiguous(g.values) for _, g in block.gradients())


def is_contiguous(tensor: TensorMap) -> bool:
    """Whether all values and gradient values of ``tensor`` are C-contiguous."""
    _check_tensormap(tensor, "is_contiguous")
    _refuse_gradients_of_gradients(tensor, "is_contiguous")
    return all(is_contiguous_block(block) for block in tensor)


def make_contiguous_block(block: TensorBlock) -> TensorBlock:
    """A new block with the same metadata, values and gradients as JAX (contiguous) arrays."""
    _check_block(block, "make_contiguous_block")
    _refuse_gradients_of_gradients(block, "make_contiguous_block")
    new_block = _block_like(block, to_jax(block.values))
    for parameter, gradient in block.gradients():
        _add_gradient_like(new_block, parameter, gradient, to_jax(gradient.values))
    return new_block


def make_contiguous(tensor: TensorMap) -> TensorMap:
    """A new TensorMap whose arrays are all JAX (contiguous) arrays."""
    _check_tensormap(tensor, "make_contiguous")
    _refuse_gradients_of_gradients(tensor, "make_contiguous")
    return TensorMap(tensor.keys, [make_contiguous_block(block) for block in tensor])
