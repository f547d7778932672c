"""Selecting blocks by key: ``filter_blocks``, ``drop_blocks`` and ``drop_empty_blocks``.

Only keys are inspected (static metadata); the arrays of the kept blocks are passed through
unchanged (as JAX arrays), so these work under ``jax.jit`` and with dynamic sample labels.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .._backend import to_jax
from ..block import TensorBlock
from ..labels import Labels
from ..tensormap import TensorMap
from ._utils import _check_tensormap, _refuse_gradients_of_gradients

__all__ = ["drop_blocks", "drop_empty_blocks", "filter_blocks"]


def _jax_block(block: TensorBlock, copy: bool = False) -> TensorBlock:
    """The same block with JAX arrays (``copy`` is a no-op: JAX arrays are immutable)."""
    del copy
    gradients = {parameter: to_jax(g.values) for parameter, g in block.gradients()}
    return block.with_arrays(to_jax(block.values), gradients=gradients, check=False)


def _check_arguments(tensor: Any, keys: Any, copy: Any, fname: str) -> None:
    _check_tensormap(tensor, fname)
    _refuse_gradients_of_gradients(tensor, fname)
    if not isinstance(keys, Labels):
        raise TypeError(f"`keys` in '{fname}' must be Labels, not {type(keys)}")
    if not isinstance(copy, bool):
        raise TypeError(f"`copy` in '{fname}' must be a boolean, not {type(copy)}")
    for name in keys.names:
        if name not in tensor.keys.names:
            raise ValueError(
                f"'{name}' in the keys given to '{fname}' is not a key dimension of the "
                f"tensor, its keys are {tensor.keys.names}"
            )


def _keep(tensor: TensorMap, indices: Sequence[int], copy: bool) -> TensorMap:
    indices = np.asarray(indices, dtype=np.int64)
    keys = tensor.keys[indices]
    return TensorMap(keys, [_jax_block(tensor.block_by_id(int(i)), copy) for i in indices])


def filter_blocks(tensor: TensorMap, keys: Labels, copy: bool = False) -> TensorMap:
    """Keep the blocks whose keys match ``keys``.

    Args:
        tensor: input tensor.
        keys: selection over some (or all) of the key dimensions of ``tensor``; a block is
            kept when its key matches one of the entries on the named dimensions.
        copy: accepted for metatensor compatibility; JAX arrays are immutable, so the
            result always shares the arrays of ``tensor``.

    Returns:
        A TensorMap with the matching blocks (possibly none), in the order of ``tensor``;
        as in metatensor, when ``keys`` has all the key names (in order), the blocks come
        in the order of ``keys``.
    """
    _check_arguments(tensor, keys, copy, "filter_blocks")
    return _keep(tensor, tensor.keys.select(keys), copy)


def drop_blocks(tensor: TensorMap, keys: Labels, copy: bool = False) -> TensorMap:
    """Remove the blocks whose keys match ``keys`` (see :func:`filter_blocks`)."""
    _check_arguments(tensor, keys, copy, "drop_blocks")
    remove = np.zeros(len(tensor.keys), dtype=bool)
    remove[tensor.keys.select(keys)] = True
    return _keep(tensor, np.nonzero(~remove)[0], copy)


def drop_empty_blocks(tensor: TensorMap, copy: bool = False) -> TensorMap:
    """Remove the blocks with no samples, no entries along a component, or no properties."""
    _check_tensormap(tensor, "drop_empty_blocks")
    if not isinstance(copy, bool):
        raise TypeError(f"`copy` in 'drop_empty_blocks' must be a boolean, not {type(copy)}")
    keep = [i for i, block in enumerate(tensor) if all(n != 0 for n in block.values.shape)]
    return _keep(tensor, keep, copy)
