"""Managing explicit gradients and autodiff: ``remove_gradients`` and ``detach``.

``remove_gradients`` drops explicit (forward-mode, stored) gradient blocks; ``detach`` stops
JAX autodiff through the arrays (:func:`jax.lax.stop_gradient`), keeping the explicit
gradients. Metadata passes through untouched, so both accept dynamic sample labels.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp

from ..block import TensorBlock
from ..tensormap import TensorMap
from ._utils import _check_block, _check_tensormap

__all__ = ["detach", "detach_block", "remove_gradients", "remove_gradients_block"]


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
    remove = _check_remove(remove, "remove_gradients_block")
    new = TensorBlock(jnp.asarray(block.values), block.samples, block.components, block.properties)
    for parameter, gradient in block.gradients():
        if remove is None or parameter in remove:
            continue
        new.add_gradient(
            parameter,
            TensorBlock(
                jnp.asarray(gradient.values),
                gradient.samples,
                gradient.components,
                gradient.properties,
            ),
        )
    return new


def remove_gradients(tensor: TensorMap, remove: Sequence[str] | None = None) -> TensorMap:
    """A tensor without the gradients with respect to the parameters in ``remove``.

    ``None`` removes the gradients listed by the first block (all of them, since blocks of
    one TensorMap normally have the same gradients). See :func:`remove_gradients_block`.
    """
    _check_tensormap(tensor, "remove_gradients")
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
    new = TensorBlock(
        jax.lax.stop_gradient(jnp.asarray(block.values)),
        block.samples,
        block.components,
        block.properties,
    )
    for parameter, gradient in block.gradients():
        new.add_gradient(
            parameter,
            TensorBlock(
                jax.lax.stop_gradient(jnp.asarray(gradient.values)),
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
    return TensorMap(tensor.keys, [detach_block(block) for block in tensor])
