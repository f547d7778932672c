"""Element-wise nonlinearities over TensorMaps, on all blocks or on invariant blocks only.

:class:`ReLU`, :class:`Tanh` and :class:`SiLU` act on every block, like their metatensor-learn
counterparts. :class:`InvariantReLU`, :class:`InvariantTanh` and :class:`InvariantSiLU` act on the
invariant blocks (``o3_lambda=0, o3_sigma=1`` by default) and leave the covariant ones unchanged,
since a nonlinearity applied to the components of a covariant block does not commute with
rotations.

Pseudoscalar blocks (``o3_lambda=0, o3_sigma=-1``) are invariant under rotations but change
sign under inversion, so only an *odd* function ``f(-x) = -f(x)`` keeps them pseudoscalar.
``tanh`` is odd and is applied to them by :class:`InvariantTanh`. ReLU and SiLU are neither
even nor odd, and their odd parts are linear (``(relu(x) - relu(-x)) / 2 = x / 2`` and
likewise for SiLU), so :class:`InvariantReLU` and :class:`InvariantSiLU` leave pseudoscalar
blocks unchanged, like covariant blocks (metatensor-learn does the same by selecting only
``o3_sigma=1``).

Explicit gradient blocks follow the chain rule: ``d f(x) = f'(x) dx`` with ``x`` the values row
each gradient row belongs to. These layers have no parameters.

By default the output keeps the input properties (metatensor-learn relabels them as
``Labels.range("_", n)`` unless ``out_properties`` is given); pass ``out_properties`` to relabel.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from ..block import TensorBlock
from ..labels import Labels
from ..tensormap import TensorMap
from . import _utils
from ._compiled import Compiled
from ._utils import per_block

__all__ = [
    "Activation",
    "InvariantActivation",
    "InvariantReLU",
    "InvariantSiLU",
    "InvariantTanh",
    "ReLU",
    "SiLU",
    "Tanh",
    "activation",
]

Array = Any


def _apply_block(
    fn: Callable[[Array], Array], block: TensorBlock, properties: Labels | None
) -> TensorBlock:
    values_in = jnp.asarray(block.values)
    values = fn(values_in)
    gradients = {
        parameter: _utils.propagate_gradient(fn, values_in, gradient)
        for parameter, gradient in block.gradients()
    }
    return block.with_arrays(values, properties=properties, gradients=gradients)


def activation(
    tensor: TensorMap,
    fn: Callable[[Array], Array],
    *,
    mask: Sequence[bool] | np.ndarray | None = None,
    odd_fn: Callable[[Array], Array] | None = None,
    odd_mask: Sequence[bool] | np.ndarray | None = None,
    out_properties: Sequence[Labels] | None = None,
) -> TensorMap:
    """Apply the element-wise ``fn`` to the selected blocks (pure function).

    Args:
        tensor: input TensorMap.
        fn: element-wise function, applied to the blocks where ``mask`` is true (all blocks
            by default).
        mask: per block, whether to apply ``fn``.
        odd_fn: element-wise odd function applied to the blocks where ``odd_mask`` is true.
        odd_mask: per block, whether to apply ``odd_fn`` (exclusive with ``mask``).
        out_properties: output properties per block; default the input properties.

    Returns:
        A TensorMap with the same metadata; gradient blocks follow the chain rule.
    """
    tensor = _utils.check_tensor(tensor, "activation")
    n = len(tensor)
    mask = (True,) * n if mask is None else tuple(bool(m) for m in mask)
    odd_mask = (False,) * n if odd_mask is None else tuple(bool(m) for m in odd_mask)
    if len(mask) != n or len(odd_mask) != n:
        raise ValueError(f"activation: mask and odd_mask need one entry per block ({n})")
    if out_properties is not None:
        out_properties = tuple(out_properties)
        for b, properties in enumerate(out_properties):
            if len(properties) != tensor.block(b).values.shape[-1]:
                raise ValueError(
                    f"activation: out_properties for {tensor.keys.entry(b)} has "
                    f"{len(properties)} entries but the block has "
                    f"{tensor.block(b).values.shape[-1]} properties"
                )
    return _activation(tensor, fn, mask, odd_fn, odd_mask, out_properties)


# one compiled program per structure for eager callers; inlined inside a user's jit
@functools.partial(jax.jit, static_argnums=(1, 2, 3, 4, 5))
def _activation(
    tensor: TensorMap,
    fn: Callable[[Array], Array],
    mask: tuple[bool, ...],
    odd_fn: Callable[[Array], Array] | None,
    odd_mask: tuple[bool, ...],
    out_properties: tuple[Labels, ...] | None,
) -> TensorMap:
    blocks = []
    for b, block in enumerate(tensor.blocks()):
        properties = None if out_properties is None else out_properties[b]
        if mask[b]:
            blocks.append(_apply_block(fn, block, properties))
        elif odd_mask[b] and odd_fn is not None:
            blocks.append(_apply_block(odd_fn, block, properties))
        elif properties is not None:
            blocks.append(_relabel(block, properties))
        else:
            blocks.append(block)
    return _utils.with_blocks(tensor, blocks)


def _relabel(block: TensorBlock, properties: Labels) -> TensorBlock:
    if len(properties) != block.values.shape[-1]:
        raise ValueError(
            f"out_properties has {len(properties)} entries but the block has "
            f"{block.values.shape[-1]} properties"
        )
    gradients = {p: g.values for p, g in block.gradients()}
    return block.with_arrays(block.values, properties=properties, gradients=gradients)


def _out_properties(module: Any, tensor: TensorMap, layer: str) -> list[Labels] | None:
    """Per block, the output properties (``None``: keep the input's); inputs with keys outside
    ``in_keys`` are refused, and per-key ``out_properties`` need ``in_keys``."""
    if module.in_keys is not None:
        _utils.key_positions(tensor.keys, module.in_keys, layer)
    if module.out_properties is None:
        return None
    return per_block(
        module.out_properties, "out_properties", Labels, module.in_keys, tensor.keys, layer
    )


class Activation(Compiled, nn.Module):
    """An element-wise function on every block (base of :class:`ReLU`, :class:`Tanh`, ...).

    Attributes:
        fn: the element-wise function, e.g. ``jax.nn.gelu``.
        in_keys: optional keys the layer accepts (inputs with other keys are refused);
            needed with per-key ``out_properties``.
        out_properties: output properties, one for all keys or one per key of ``in_keys``
            (matched by key, whatever the order of the input); default the input properties.
    """

    # positional order as in metatensor-learn: ReLU(in_keys, out_properties)
    in_keys: Labels | None = None
    out_properties: Labels | Sequence[Labels] | None = None
    fn: Callable[[Array], Array] = jax.nn.relu

    def __call__(self, tensor: TensorMap) -> TensorMap:
        layer = type(self).__name__
        tensor = _utils.check_tensor(tensor, layer)
        return activation(tensor, self.fn, out_properties=_out_properties(self, tensor, layer))


class ReLU(Activation):
    """``max(x, 0)`` on every block (``metatensor.learn.nn.ReLU``)."""

    fn: Callable[[Array], Array] = jax.nn.relu


class Tanh(Activation):
    """``tanh(x)`` on every block (``metatensor.learn.nn.Tanh``)."""

    fn: Callable[[Array], Array] = jnp.tanh


class SiLU(Activation):
    """``x * sigmoid(x)`` on every block (``metatensor.learn.nn.SiLU``)."""

    fn: Callable[[Array], Array] = jax.nn.silu


class InvariantActivation(Compiled, nn.Module):
    """An element-wise function on invariant blocks only; other blocks pass through.

    Attributes:
        fn: element-wise function for the invariant blocks.
        odd: whether ``fn`` is odd (``fn(-x) = -fn(x)``); if so it is also applied to
            pseudoscalar blocks, which it keeps pseudoscalar.
        invariant_keys: selection of the invariant blocks; default
            ``o3_lambda=0, o3_sigma=1``. With ``o3_lambda``/``o3_sigma`` key dimensions,
            selecting another block raises a ``ValueError``.
        pseudoscalar_keys: selection of the pseudoscalar blocks (used when ``odd``); default
            ``o3_lambda=0, o3_sigma=-1``.
        in_keys, out_properties: as in :class:`Activation`.
    """

    # positional order as in metatensor-learn: InvariantReLU(in_keys, out_properties,
    # invariant_keys)
    in_keys: Labels | None = None
    out_properties: Labels | Sequence[Labels] | None = None
    invariant_keys: Labels | None = None
    fn: Callable[[Array], Array] = jax.nn.relu
    odd: bool = False
    pseudoscalar_keys: Labels | None = None

    def _masks(self, keys: Labels) -> tuple[np.ndarray, np.ndarray | None]:
        """Per block: whether ``fn`` applies, and whether it applies as an odd function."""
        layer = type(self).__name__
        mask = _utils.select_keys(keys, self.invariant_keys, _utils.INVARIANT_KEYS, layer)
        _utils.refuse_covariant(keys, mask, layer, "a nonlinearity")
        odd_mask = None
        if self.odd and "o3_lambda" in keys.names and "o3_sigma" in keys.names:
            odd_mask = _utils.select_keys(
                keys, self.pseudoscalar_keys, _utils.PSEUDOSCALAR_KEYS, layer
            )
            odd_mask &= ~mask
            kind = _utils.o3_kind(keys)
            bad = np.nonzero(odd_mask & (kind == 0))[0]
            if len(bad):
                raise ValueError(
                    f"{layer}: pseudoscalar_keys selects the covariant block "
                    f"{keys.entry(int(bad[0]))}; a nonlinearity on it would break equivariance"
                )
        return mask, odd_mask

    def identity_blocks(self, keys: Labels) -> np.ndarray:
        """Per block with these keys, whether this layer leaves its values unchanged."""
        mask, odd_mask = self._masks(keys)
        return ~mask if odd_mask is None else ~(mask | odd_mask)

    def __call__(self, tensor: TensorMap) -> TensorMap:
        layer = type(self).__name__
        tensor = _utils.check_tensor(tensor, layer)
        mask, odd_mask = self._masks(tensor.keys)
        return activation(
            tensor,
            self.fn,
            mask=mask,
            odd_fn=self.fn if self.odd else None,
            odd_mask=odd_mask,
            out_properties=_out_properties(self, tensor, layer),
        )


class InvariantReLU(InvariantActivation):
    """ReLU on invariant blocks only (``metatensor.learn.nn.InvariantReLU``).

    Pseudoscalar and covariant blocks are left unchanged (ReLU is not odd).
    """

    fn: Callable[[Array], Array] = jax.nn.relu
    odd: bool = False


class InvariantTanh(InvariantActivation):
    """tanh on invariant blocks, and on pseudoscalar blocks since tanh is odd.

    Counterpart of ``metatensor.learn.nn.InvariantTanh``, which leaves pseudoscalars unchanged
    (its default ``invariant_keys`` select ``o3_sigma=1`` only). Set ``odd=False`` for that.
    """

    fn: Callable[[Array], Array] = jnp.tanh
    odd: bool = True


class InvariantSiLU(InvariantActivation):
    """SiLU on invariant blocks only (``metatensor.learn.nn.InvariantSiLU``).

    Pseudoscalar and covariant blocks are left unchanged (SiLU is not odd).
    """

    fn: Callable[[Array], Array] = jax.nn.silu
    odd: bool = False
