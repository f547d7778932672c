"""Gate nonlinearity over TensorMaps keyed by ``(o3_lambda, o3_sigma)``: e3nn's ``Gate``.

How the gates are identified
----------------------------
A TensorMap has one block per ``(o3_lambda, o3_sigma)``, so the scalars, the gates and the gated
features cannot be separate blocks of the same key. As in e3nn-jax, **the gates are the last
channels (properties) of a scalar block**:

* the *gates block* is the ``o3_lambda = 0`` block with ``o3_sigma = gates_sigma`` (``+1`` by
  default: proper scalars, through ``even_gate_act``; ``-1``: pseudoscalars, through
  ``odd_gate_act``);
* there is one gate per covariant channel: with ``N = sum of the properties of the blocks with
  o3_lambda > 0``, the last ``N`` properties of the gates block are the gates, and the first
  ``mul - N`` are ordinary scalars;
* the gates are consumed by the covariant blocks **in the order of the input keys**, and within a
  block in property order: the covariant block ``b`` gets the gates
  ``[offset_b, offset_b + mul_b)`` of the gate channels.

So a layer producing gated features (e.g. a fully connected
:class:`~eqx_tensor.nn.TensorProduct` or an :class:`~eqx_tensor.nn.EquivariantLinear`) just
gives the scalar block ``n_scalars + N`` channels. Converted with
:func:`eqx_tensor.o3.to_irreps_array`, such a TensorMap (with the gates block the last scalar
block in key order) gives exactly ``e3nn_jax.gate``'s result.

Other keys
----------
Key dimensions besides ``o3_lambda`` / ``o3_sigma`` (e.g. ``center_type``) split the TensorMap in
groups, and each group is gated on its own (its covariant blocks by the gates of its own scalar
block). Within a group every block must have the same samples.

Activations and parities (e3nn's rules)
---------------------------------------
* proper scalars (``(0, +1)``, except the gates) go through ``even_act``;
* pseudoscalars (``(0, -1)``, except the gates) go through ``odd_act``; an odd function keeps
  them pseudoscalar, an even one makes them proper scalars (key ``(0, +1)``); a function that is
  neither is refused;
* gates go through ``even_gate_act`` (proper) or ``odd_gate_act`` (pseudoscalar gates); a
  pseudoscalar gate through an odd function is a pseudoscalar and flips the ``o3_sigma`` of the
  gated blocks (``(l, sigma) -> (l, -sigma)``, e3nn's ``1o -> 1e``);
* with ``normalize_act`` (default) every function is divided by its root mean square under a
  standard normal input (``e3nn_jax.normalize_function``).

Output: per group, the remaining scalar blocks (ordinary scalars only, dropped when none is left)
then the gated blocks, in input order; properties are those of the kept channels. Two outputs
with the same key (e.g. even-activated pseudoscalars next to proper scalars) are refused.
Explicit gradient blocks are refused (remove them first).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from ..block import TensorBlock
from ..labels import Labels, same_labels
from ..o3 import block_orders
from ..o3.conventions import O3_LAMBDA, O3_MU, O3_SIGMA
from ..tensormap import TensorMap
from . import _utils
from ._compiled import Compiled
from .radial import normalized_activation

__all__ = ["Gate", "gate", "parity_of_function", "soft_odd"]

Array = Any
Function = Callable[[Array], Array]


def soft_odd(x: Array) -> Array:
    """``x (1 - exp(-x^2))``: smooth odd activation for pseudoscalars (``e3nn_jax.soft_odd``)."""
    return (1 - jnp.exp(-(x**2))) * x


@functools.lru_cache(maxsize=128)
def parity_of_function(fn: Function) -> int:
    """``1`` if ``fn`` is even, ``-1`` if odd, ``0`` if neither (checked on ``[0, 10]``).

    Same test as e3nn-jax (256 points, tolerance 1e-5), run once per function object.
    """
    with jax.ensure_compile_time_eval():
        x = np.linspace(0.0, 10.0, 256)
        a, b = np.asarray(fn(jnp.asarray(x))), np.asarray(fn(jnp.asarray(-x)))
    if np.max(np.abs(a - b)) < 1e-5:
        return 1
    if np.max(np.abs(a + b)) < 1e-5:
        return -1
    return 0


@dataclass(frozen=True)
class _Step:
    """What happens to one input block (static, hashable)."""

    kind: str  # "scalar": activate; "gates": activate extras, slice gates; "gated": multiply
    fn: Function | None
    out_sigma: int
    n_extra: int = 0  # "gates": channels kept as ordinary scalars
    gates_block: int = -1  # "gated": position of the group's gates block
    gate_start: int = 0  # "gated": first gate channel (within the gate channels)


def _maybe_normalized(fn: Function, normalize: bool) -> Function:
    return normalized_activation(fn) if normalize else fn


def _plan(
    tensor: TensorMap,
    even_act: Function,
    odd_act: Function,
    even_gate_act: Function,
    odd_gate_act: Function,
    normalize_act: bool,
    gates_sigma: int,
) -> tuple[tuple[_Step, ...], tuple[int, ...], tuple[Labels, ...], Labels]:
    """Per block: the step; output order (block positions), output properties, output keys."""
    layer = "Gate"
    if gates_sigma not in (1, -1):
        raise ValueError(f"{layer}: gates_sigma must be +1 or -1, got {gates_sigma!r}")
    names = tensor.keys.names
    if O3_LAMBDA not in names or O3_SIGMA not in names:
        raise ValueError(f"{layer}: the keys need 'o3_lambda' and 'o3_sigma', got {names}")
    if len(tensor) and tensor.component_names != [O3_MU]:
        raise ValueError(
            f"{layer}: the blocks must have the single component 'o3_mu', got "
            f"{tensor.component_names}"
        )
    orders = block_orders(tensor, layer)
    for key, block in zip(tensor.keys, tensor.blocks()):
        if block.gradients_list():
            raise ValueError(
                f"{layer}: block {key} has explicit gradients {block.gradients_list()}, which "
                "the gate does not propagate; remove them "
                "(eqx_tensor.operations.remove_gradients) or use automatic differentiation"
            )

    other = [i for i, n in enumerate(names) if n not in (O3_LAMBDA, O3_SIGMA)]
    key_values = np.asarray(tensor.keys.values)
    groups: dict[tuple[int, ...], list[int]] = {}
    for b in range(len(tensor)):
        groups.setdefault(tuple(int(v) for v in key_values[b, other]), []).append(b)

    odd_parity = parity_of_function(odd_act)
    if odd_parity == 0:
        raise ValueError(
            f"{layer}: odd_act must be an odd or an even function (it acts on pseudoscalars), "
            f"got {odd_act!r}"
        )
    gate_parity = 1 if gates_sigma == 1 else parity_of_function(odd_gate_act)
    if gate_parity == 0:
        raise ValueError(
            f"{layer}: odd_gate_act must be an odd or an even function (it acts on "
            f"pseudoscalar gates), got {odd_gate_act!r}"
        )
    even_act_n = _maybe_normalized(even_act, normalize_act)
    odd_act_n = _maybe_normalized(odd_act, normalize_act)
    gate_act = even_gate_act if gates_sigma == 1 else odd_gate_act
    gate_act_n = _maybe_normalized(gate_act, normalize_act)

    steps: list[_Step | None] = [None] * len(tensor)
    order: list[int] = []
    out_properties: list[Labels] = []
    out_keys: list[np.ndarray] = []
    blocks = tensor.blocks()
    for group_values, members in groups.items():
        where = f" (group {dict(zip([names[i] for i in other], group_values))})" if other else ""
        reference = blocks[members[0]].samples
        for b in members:
            if not same_labels(blocks[b].samples, reference):
                raise ValueError(
                    f"{layer}: block {tensor.keys.entry(b)} has other samples than block "
                    f"{tensor.keys.entry(members[0])}; gates multiply sample by sample, so the "
                    "blocks of a group need the same samples"
                )
        covariant = [b for b in members if orders[b][0] > 0]
        n_gates = sum(int(blocks[b].values.shape[-1]) for b in covariant)
        gates_block = next((b for b in members if orders[b] == (0, gates_sigma)), None)
        if covariant and gates_block is None:
            raise ValueError(
                f"{layer}: there are covariant blocks{where} but no gates block "
                f"(o3_lambda=0, o3_sigma={gates_sigma}); its last {n_gates} properties would be "
                "the gates"
            )
        if covariant:
            mul = int(blocks[gates_block].values.shape[-1])
            if mul < n_gates:
                raise ValueError(
                    f"{layer}: the gates block {tensor.keys.entry(gates_block)} has {mul} "
                    f"properties but the covariant blocks{where} have {n_gates} channels to "
                    "gate: it needs one gate per channel, in its last properties"
                )
        # (block, o3_lambda, o3_sigma, properties) of this group's outputs, in output order
        emitted: list[tuple[int, int, int, Labels]] = []
        for b in members:
            (l, sigma), block = orders[b], blocks[b]
            if l > 0:
                continue
            fn = even_act_n if sigma == 1 else odd_act_n
            out_sigma = 1 if sigma == 1 else odd_parity
            if covariant and b == gates_block:
                n_extra = int(block.values.shape[-1]) - n_gates
                steps[b] = _Step("gates", fn, out_sigma, n_extra=n_extra)
                if n_extra > 0:
                    emitted.append((b, 0, out_sigma, block.properties[:n_extra]))
            else:
                steps[b] = _Step("scalar", fn, out_sigma)
                emitted.append((b, 0, out_sigma, block.properties))
        start = 0
        for b in covariant:
            (l, sigma), block = orders[b], blocks[b]
            out_sigma = sigma * gate_parity
            steps[b] = _Step(
                "gated", gate_act_n, out_sigma, gates_block=gates_block, gate_start=start
            )
            start += int(block.values.shape[-1])
            emitted.append((b, l, out_sigma, block.properties))

        group_keys = [(l, sigma) for _, l, sigma, _ in emitted]
        for l, sigma in group_keys:
            if group_keys.count((l, sigma)) > 1:
                raise ValueError(
                    f"{layer}: two outputs{where} would have the key (o3_lambda={l}, "
                    f"o3_sigma={sigma}), e.g. pseudoscalars turned into scalars by an even "
                    "odd_act next to the scalars; use an odd odd_act"
                )
        for b, l, sigma, properties in emitted:
            order.append(b)
            out_properties.append(properties)
            row = key_values[b].copy()
            row[names.index(O3_LAMBDA)] = l
            row[names.index(O3_SIGMA)] = sigma
            out_keys.append(row)

    keys = Labels(names, np.array(out_keys, dtype=np.int32).reshape(-1, len(names)))
    return tuple(steps), tuple(order), tuple(out_properties), keys


def gate(
    tensor: TensorMap,
    *,
    even_act: Function = jax.nn.gelu,
    odd_act: Function = soft_odd,
    even_gate_act: Function = jax.nn.sigmoid,
    odd_gate_act: Function = jnp.tanh,
    normalize_act: bool = True,
    gates_sigma: int = 1,
) -> TensorMap:
    """Gate nonlinearity (pure function; see the module docstring for the layout).

    Args:
        tensor: keys with ``o3_lambda`` and ``o3_sigma`` (other key dimensions form groups),
            blocks ``(n, 2l+1, mul)`` with the single component ``o3_mu``. The scalar block
            ``(0, gates_sigma)`` of each group ends with one gate per covariant channel.
        even_act: activation of the proper scalars (default GELU).
        odd_act: activation of the pseudoscalars, odd or even (default :func:`soft_odd`).
        even_gate_act: activation of proper-scalar gates (default sigmoid).
        odd_gate_act: activation of pseudoscalar gates, odd or even (default tanh).
        normalize_act: normalise every activation to unit second moment, as e3nn does.
        gates_sigma: ``o3_sigma`` of the scalar block holding the gates: ``+1`` or ``-1``.

    Returns:
        A TensorMap: activated scalars (without the gates) and gated covariant blocks
        ``x[:, :, c] * act(gate_c)``, keys as in the module docstring; defaults equal
        ``e3nn_jax.gate``'s.
    """
    tensor = _utils.check_tensor(tensor, "Gate")
    steps, order, properties, keys = _plan(
        tensor, even_act, odd_act, even_gate_act, odd_gate_act, normalize_act, int(gates_sigma)
    )
    return _gate(tensor, steps, order, properties, keys)


@functools.partial(jax.jit, static_argnums=(1, 2, 3, 4))
def _gate(
    tensor: TensorMap,
    steps: tuple[_Step, ...],
    order: tuple[int, ...],
    properties: tuple[Labels, ...],
    keys: Labels,
) -> TensorMap:
    blocks = tensor.blocks()
    gate_values: dict[int, Array] = {}
    outputs: dict[int, Array] = {}
    for b, step in enumerate(steps):
        if step.kind == "scalar":
            outputs[b] = step.fn(blocks[b].values)
        elif step.kind == "gates":
            values = blocks[b].values  # (n, 1, n_extra + n_gates)
            outputs[b] = step.fn(values[..., : step.n_extra])
            gate_values[b] = values[..., step.n_extra :]
    for b, step in enumerate(steps):
        if step.kind == "gated":
            values = blocks[b].values  # (n, 2l+1, mul)
            mul = values.shape[-1]
            gates = gate_values[step.gates_block][..., step.gate_start : step.gate_start + mul]
            # (n, 1, mul) broadcasts over the 2l+1 components: one gate per channel
            outputs[b] = values * step.fn(gates)
    out_blocks = [
        TensorBlock(outputs[b], blocks[b].samples, blocks[b].components, labels)
        for b, labels in zip(order, properties)
    ]
    result = TensorMap(keys, out_blocks)
    for name, value in tensor.info().items():
        result.set_info(name, value)
    return result


class Gate(Compiled, nn.Module):
    """e3nn's gate over a TensorMap: activated scalars, covariant blocks scaled by gates.

    No parameters. See the module docstring for how the gates are identified (the last
    properties of the scalar block ``(0, gates_sigma)``, one per covariant channel, consumed in
    key order) and for the parity rules; the defaults give ``e3nn_jax.gate``'s numbers.

    Attributes:
        even_act, odd_act, even_gate_act, odd_gate_act, normalize_act, gates_sigma: see
            :func:`gate`.
    """

    even_act: Function = jax.nn.gelu
    odd_act: Function = soft_odd
    even_gate_act: Function = jax.nn.sigmoid
    odd_gate_act: Function = jnp.tanh
    normalize_act: bool = True
    gates_sigma: int = 1

    def __call__(self, tensor: TensorMap) -> TensorMap:
        return gate(
            tensor,
            even_act=self.even_act,
            odd_act=self.odd_act,
            even_gate_act=self.even_gate_act,
            odd_gate_act=self.odd_gate_act,
            normalize_act=self.normalize_act,
            gates_sigma=self.gates_sigma,
        )
