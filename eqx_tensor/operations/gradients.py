"""Managing explicit gradients and autodiff: ``remove_gradients`` and ``detach``.

``remove_gradients`` drops explicit (forward-mode, stored) gradient blocks; ``detach`` stops
JAX autodiff through the arrays (:func:`jax.lax.stop_gradient`), keeping the explicit
gradients. ``requires_grad`` is the port of metatensor's torch-only function: JAX has no
per-array flag (``jax.grad`` differentiates with respect to its arguments), so asking for
gradients leaves the tensor as it is and refusing them detaches it.
Metadata passes through untouched, so all of them accept dynamic sample labels.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax

from .._backend import to_jax
from ..block import TensorBlock
from ..tensormap import TensorMap
from ._utils import _check_block, _check_tensormap, _refuse_gradients_of_gradients

__all__ = [
    "detach",
    "detach_block",
    "remove_gradients",
    "remove_gradients_block",
    "requires_grad",
    "requires_grad_block",
]


def _check_remove(remove: Sequence[str] | None, fname: str) -> list[str] | None:
    if remove is None:
        return None
    if isinstance(remove, str):
        return [remove]
    remove = list(remove)
    for parameter in remove:
        if not isinstance(parameter, str):
            raise TypeError(f"`remove` in '{fname}' must be a list of str, got {parameter!r}")
    return remove


def remove_gradients_block(block: TensorBlock, remove: Sequence[str] | None = None) -> TensorBlock:
    """A block without the gradients with respect to the parameters in ``remove``.

    Args:
        block: input block.
        remove: gradient parameters to drop (parameters the block does not have are
            ignored, as in metatensor); ``None`` drops all gradients.
    """
    _check_block(block, "remove_gradients_block")
    _refuse_gradients_of_gradients(block, "remove_gradients_block")
    remove = _check_remove(remove, "remove_gradients_block")
    kept = {
        parameter: to_jax(gradient.values)
        for parameter, gradient in block.gradients()
        if remove is not None and parameter not in remove
    }
    return block.with_arrays(to_jax(block.values), gradients=kept)


def remove_gradients(tensor: TensorMap, remove: Sequence[str] | None = None) -> TensorMap:
    """A tensor without the gradients with respect to the parameters in ``remove``.

    ``None`` removes the gradients listed by the first block (all of them, since blocks of
    one TensorMap normally have the same gradients). See :func:`remove_gradients_block`.
    """
    _check_tensormap(tensor, "remove_gradients")
    _refuse_gradients_of_gradients(tensor, "remove_gradients")
    remove = _check_remove(remove, "remove_gradients")
    if remove is None and len(tensor) != 0:
        remove = tensor.block_by_id(0).gradients_list()
    return TensorMap(tensor.keys, [remove_gradients_block(block, remove) for block in tensor])


def detach_block(block: TensorBlock) -> TensorBlock:
    """The block with :func:`jax.lax.stop_gradient` applied to its values and gradients.

    JAX autodiff (``jax.grad``, ``jax.jvp``...) sees the result as a constant; the explicit
    gradient blocks are kept (use :func:`remove_gradients_block` to drop those).
    """
    _check_block(block, "detach_block")
    _refuse_gradients_of_gradients(block, "detach_block")
    new = TensorBlock(
        jax.lax.stop_gradient(to_jax(block.values)),
        block.samples,
        block.components,
        block.properties,
    )
    for parameter, gradient in block.gradients():
        new.add_gradient(
            parameter,
            TensorBlock(
                jax.lax.stop_gradient(to_jax(gradient.values)),
                gradient.samples,
                gradient.components,
                gradient.properties,
            ),
        )
    return new


def detach(tensor: TensorMap) -> TensorMap:
    """``tensor`` with every array wrapped in :func:`jax.lax.stop_gradient`.

    See :func:`detach_block`.
    """
    _check_tensormap(tensor, "detach")
    _refuse_gradients_of_gradients(tensor, "detach")
    return TensorMap(tensor.keys, [detach_block(block) for block in tensor])


def requires_grad_block(block: TensorBlock, requires_grad: bool = True) -> TensorBlock:
    """Counterpart of ``metatensor.requires_grad_block``.

    JAX tracks no per-array ``requires_grad`` flag: which arrays are differentiated is
    decided by the arguments of ``jax.grad``. ``requires_grad=True`` therefore returns the
    block unchanged, and ``requires_grad=False`` returns :func:`detach_block` of it, so
    that autodiff sees it as a constant, as torch does for a tensor without the flag.
    """
    _check_block(block, "requires_grad_block")
    _refuse_gradients_of_gradients(block, "requires_grad_block")
    if not isinstance(requires_grad, bool):
        raise TypeError(f"`requires_grad` must be a bool, got {type(requires_grad).__name__}")
    return block if requires_grad else detach_block(block)


def requires_grad(tensor: TensorMap, requires_grad: bool = True) -> TensorMap:
    """Counterpart of ``metatensor.requires_grad``; see :func:`requires_grad_block`."""
    _check_tensormap(tensor, "requires_grad")
    _refuse_gradients_of_gradients(tensor, "requires_grad")
    if not isinstance(requires_grad, bool):
        raise TypeError(f"`requires_grad` must be a bool, got {type(requires_grad).__name__}")
    return tensor if requires_grad else detach(tensor)
