"""Norm activation: every channel of a covariant block scaled by a function of its norm.

For block ``(l, sigma)`` with values ``x`` of shape ``(n, 2l+1, mul)`` (components ``o3_mu``),
the norm of channel ``c`` of sample ``s`` is

* ``"component"`` (default): ``|x_sc| = sqrt(sum_m x[s, m, c]^2 / (2l+1))``;
* ``"norm"``: ``|x_sc| = sqrt(sum_m x[s, m, c]^2)``;

and the output is ``x[s, :, c] * f(|x_sc| + b_c)`` (``b`` an optional learned bias per channel,
zero by default). The norm is rotation and inversion invariant, so the layer is equivariant for
any ``f``, and it keeps keys, samples, components and properties. This is
``e3nn_jax.norm_activation`` over TensorMaps (same numbers).

The norm is *safe*: ``sqrt`` is only evaluated on positive arguments, so gradients are finite
at ``x = 0``. There the derivative of ``x f(|x|)`` is ``f(0)`` (its limit; e3nn-jax substitutes
``|x| = 1`` at zero and gets ``f(1)``; the values agree, both are 0).

Explicit gradient blocks follow the chain rule (``d(x f(|x|))`` at the values row of each
gradient row).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from .._backend import safe_sqrt
from ..block import TensorBlock
from ..o3 import block_orders
from ..tensormap import TensorMap
from . import _utils
from ._compiled import Compiled
from ._utils import key_names, parameter_dtype
from .linear import KEYS_ENTRY, key_record, read_record, record_rows

__all__ = ["NormActivation", "channel_norms", "norm_activation"]

Array = Any
NORMALIZATIONS = ("component", "norm")


def channel_norms(values: Array, normalization: str = "component") -> jax.Array:
    """Safe norms over the ``o3_mu`` axis of ``values (..., 2l+1, mul)`` -> ``(..., 1, mul)``.

    Zero where the channel is zero, with a zero (not NaN) gradient there.
    """
    if normalization not in NORMALIZATIONS:
        raise ValueError(f"normalization must be one of {NORMALIZATIONS}, got {normalization!r}")
    squared = jnp.sum(values**2, axis=-2, keepdims=True)
    if normalization == "component":
        squared = squared / values.shape[-2]
    return safe_sqrt(squared)


def _scale(
    values: Array, fn: Callable[[Array], Array], normalization: str, bias: Array | None
) -> Array:
    norms = channel_norms(values, normalization)
    if bias is not None:
        norms = norms + bias.astype(norms.dtype)
    return values * fn(norms)


def _selected(tensor: TensorMap, apply_to_scalars: bool, layer: str) -> tuple[bool, ...]:
    orders = block_orders(tensor, layer)
    if tensor.component_names[-1:] != ["o3_mu"] and any(l > 0 for l, _ in orders):
        raise ValueError(
            f"{layer}: the last component of the blocks must be 'o3_mu', got "
            f"{tensor.component_names}"
        )
    return tuple(l > 0 or apply_to_scalars for l, _ in orders)


def norm_activation(
    tensor: TensorMap,
    fn: Callable[[Array], Array],
    *,
    normalization: str = "component",
    apply_to_scalars: bool = False,
    biases: Sequence[Array | None] | None = None,
) -> TensorMap:
    """Scale every channel of the selected blocks by ``fn`` of its norm (pure function).

    Args:
        tensor: keys with ``o3_lambda`` and ``o3_sigma`` (other key dimensions are allowed),
            blocks ``(n, ..., 2l+1, mul)`` with ``o3_mu`` as last component.
        fn: elementwise function of the norms (e.g. ``jax.nn.sigmoid``, ``jnp.tanh``).
        normalization: ``"component"`` or ``"norm"`` (module docstring).
        apply_to_scalars: also scale the ``o3_lambda = 0`` blocks, by ``fn(|x|)`` (equivariant for
            pseudoscalars too); by default they pass through unchanged.
        biases: one entry per block, ``None`` or shape ``(mul,)`` added to the norms.

    Returns:
        A TensorMap with the metadata of ``tensor``.
    """
    layer = "norm_activation"
    tensor = _utils.check_tensor(tensor, layer)
    if normalization not in NORMALIZATIONS:
        raise ValueError(
            f"{layer}: normalization must be one of {NORMALIZATIONS}, got {normalization!r}"
        )
    selected = _selected(tensor, apply_to_scalars, layer)
    if biases is None:
        biases = [None] * len(tensor)
    biases = list(biases)
    if len(biases) != len(tensor):
        raise ValueError(f"{layer}: biases has {len(biases)} entries for {len(tensor)} blocks")
    for key, block, bias in zip(tensor.keys, tensor.blocks(), biases):
        if bias is not None and jnp.shape(bias) != (block.values.shape[-1],):
            raise ValueError(
                f"{layer}: the bias of block {key} must have shape ({block.values.shape[-1]},), "
                f"got {jnp.shape(bias)}"
            )
    return _norm_activation(tensor, biases, fn, normalization, selected)


@functools.partial(jax.jit, static_argnums=(2, 3, 4))
def _norm_activation(
    tensor: TensorMap,
    biases: list[Array | None],
    fn: Callable[[Array], Array],
    normalization: str,
    selected: tuple[bool, ...],
) -> TensorMap:
    blocks = []
    for block, bias, active in zip(tensor.blocks(), biases, selected):
        if not active:
            blocks.append(block)
            continue
        blocks.append(
            _apply_block(
                block, functools.partial(_scale, fn=fn, normalization=normalization, bias=bias)
            )
        )
    return _utils.with_blocks(tensor, blocks)


def _apply_block(block: TensorBlock, scale: Callable[[Array], Array]) -> TensorBlock:
    values = jnp.asarray(block.values)
    gradients = {
        parameter: _utils.propagate_gradient(scale, values, gradient)
        for parameter, gradient in block.gradients()
    }
    return block.with_arrays(scale(values), gradients=gradients)


class NormActivation(Compiled, nn.Module):
    """``x -> x f(|x| + b)`` per channel of every covariant block (see the module docstring).

    Counterpart of e3nn's norm activation; scalar blocks pass through unless
    ``apply_to_scalars``.

    Attributes:
        fn: function of the norms; default ``jax.nn.sigmoid``.
        normalization: ``"component"`` (norm divided by ``sqrt(2l+1)``) or ``"norm"``.
        apply_to_scalars: also scale the ``o3_lambda = 0`` blocks.
        bias: learn a bias per channel added to the norms. Parameters: ``bias``, a tuple with
            one zero-initialised ``(mul,)`` array per scaled block of the input at init, and
            ``keys``, the record of their keys as in :mod:`eqx_tensor.nn.linear`
            (``"<row> <key name> <mul>"``). Scaled blocks are looked up by key: an input may
            list them in any order; a scaled block whose key is not recorded is refused.
        param_dtype: dtype of the biases; default the dtype of the input values.
    """

    fn: Callable[[Array], Array] = jax.nn.sigmoid
    normalization: str = "component"
    apply_to_scalars: bool = False
    bias: bool = False
    param_dtype: Any = None

    @nn.compact
    def __call__(self, tensor: TensorMap) -> TensorMap:
        layer = "NormActivation"
        tensor = _utils.check_tensor(tensor, layer)
        biases = None
        if self.bias:
            selected = _selected(tensor, self.apply_to_scalars, layer)
            scaled = [b for b, active in enumerate(selected) if active]
            sizes = [int(tensor.block_by_id(b).values.shape[-1]) for b in scaled]
            record = read_record(self, tensor.keys, layer)
            if record is None and not self.has_variable("params", "bias"):
                dtype = parameter_dtype(tensor, self.param_dtype)
                self.param("bias", lambda _, d: tuple(jnp.zeros((n,), d) for n in sizes), dtype)
                names = [key_names(tensor.keys)[b] for b in scaled]
                self.param(KEYS_ENTRY, lambda _: key_record(names, [(n,) for n in sizes]))
                record = read_record(self, tensor.keys, layer)
            params = self.get_variable("params", "bias")
            if record is not None:
                scaled_keys = tensor.keys[np.array(scaled, dtype=np.int64)]
                rows = record_rows(record, scaled_keys, None, layer, "biases")
            elif len(scaled) == len(params) == 1:  # built by hand: one bias, one block
                rows = np.zeros(1, dtype=np.int64)
            else:
                raise ValueError(
                    f"{layer}: the parameters have 'bias' but no '{KEYS_ENTRY}' entry recording "
                    "the key of each bias, so they could only follow the block order of each "
                    "input; start from the parameters of model.init and replace their arrays, "
                    f"keeping '{KEYS_ENTRY}'"
                )
            biases = [None] * len(selected)
            for b, row, size in zip(scaled, rows, sizes):
                bias = params[int(row)]
                if tuple(bias.shape) != (size,):
                    raise ValueError(
                        f"{layer}: the bias of the key '{key_names(tensor.keys)[b]}' has shape "
                        f"{tuple(bias.shape)} but the block has {size} channels; these "
                        "parameters were created for another input: re-initialise them"
                    )
                biases[b] = bias
        return norm_activation(
            tensor,
            self.fn,
            normalization=self.normalization,
            apply_to_scalars=self.apply_to_scalars,
            biases=biases,
        )
