"""Conversion between TensorMaps keyed by (o3_lambda, o3_sigma) and ``e3nn_jax.IrrepsArray``.

A TensorMap whose keys are exactly ``(o3_lambda, o3_sigma)`` and whose blocks share their
samples is one ``IrrepsArray`` of shape ``(n_samples, dim)``: block ``(l, sigma)`` with ``P``
properties becomes the chunk ``P x (l, p)`` (``p = sigma * (-1)**l``), in key order, with e3nn's
mul-major layout ``(n_samples, P, 2l+1)`` and components taken to e3nn's y-polar basis by
``change_of_basis(l).T``. The change of basis is a permutation for ``l <= 1`` (a gather, no
arithmetic) and a small matrix product for ``l >= 2``; the only copy besides it is the final
concatenation that ``IrrepsArray`` needs. Explicit gradient blocks have no place in an
``IrrepsArray``: a tensor with gradients is refused unless ``drop_gradients=True`` says to leave
them behind (as :class:`~eqx_tensor.nn.TensorProduct` and :class:`~eqx_tensor.nn.Gate` refuse
them).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import partial
from typing import TYPE_CHECKING

import jax
import jax.numpy as jnp
import numpy as np

from ..block import TensorBlock
from ..labels import Labels, same_labels
from ..tensormap import TensorMap
from ._metadata import block_orders, o3_mu_labels

if TYPE_CHECKING:
    import e3nn_jax as e3nn

from .conventions import O3_LAMBDA, O3_MU, O3_SIGMA, change_of_basis, irrep_to_key, key_to_irrep

PropertiesSpec = Labels | Sequence[Labels] | Mapping[tuple[int, int], Labels] | None


def _change_basis(x: jax.Array, l: int, to_e3nn: bool, axis: int) -> jax.Array:
    """Change the basis of the ``2l+1`` components on ``axis`` of ``x``."""
    if l == 0:
        return x
    if l == 1:
        # (y, z, x) <-> (x, y, z): a permutation, no arithmetic
        order = np.array([2, 0, 1] if to_e3nn else [1, 2, 0])
        return jnp.take(x, order, axis=axis)
    c = change_of_basis(l)
    matrix = jnp.asarray(c.T if to_e3nn else c, x.dtype)
    out = jnp.tensordot(x, matrix, axes=([axis], [1]), precision=jax.lax.Precision.HIGHEST)
    return jnp.moveaxis(out, -1, axis)


def _check_keys(tensor: TensorMap) -> None:
    if sorted(tensor.keys.names) != sorted([O3_LAMBDA, O3_SIGMA]):
        raise ValueError(
            "to_irreps_array needs keys exactly ('o3_lambda', 'o3_sigma'), got "
            f"{tensor.keys.names}; move the other key dimensions first (e.g. keys_to_properties)"
        )
    if tensor.component_names != [O3_MU]:
        raise ValueError(
            f"to_irreps_array needs blocks with the single component '{O3_MU}', got "
            f"{tensor.component_names}"
        )


def to_irreps_array(tensor: TensorMap, *, drop_gradients: bool = False) -> e3nn.IrrepsArray:
    """The TensorMap as an ``IrrepsArray`` of shape (n_samples, dim), in e3nn's basis.

    Args:
        tensor: keys exactly ``(o3_lambda, o3_sigma)``, blocks ``(n_samples, 2l+1, P)`` with the
            single component ``o3_mu`` and the same samples.
        drop_gradients: leave explicit gradient blocks behind instead of refusing them (e.g.
            when the derivatives are taken with ``jax.grad`` through the conversion).

    Raises:
        ValueError: when the keys are not exactly ``(o3_lambda, o3_sigma)``, the components not
            exactly ``[o3_mu]``, the blocks do not share their samples, or a block has explicit
            gradients and ``drop_gradients`` is false.
    """
    _check_keys(tensor)
    orders = block_orders(tensor, "to_irreps_array")
    blocks = tensor.blocks()
    if not blocks:
        raise ValueError("to_irreps_array needs at least one block")
    if not drop_gradients:
        for block, key in zip(blocks, tensor.keys):
            if block.gradients_list():
                raise ValueError(
                    f"to_irreps_array: block {key} has explicit gradients "
                    f"{block.gradients_list()}, which an IrrepsArray cannot hold; remove them "
                    "first (eqx_tensor.remove_gradients), or pass drop_gradients=True to leave "
                    "them behind"
                )
    samples = blocks[0].samples
    for block, key in zip(blocks, tensor.keys):
        if not same_labels(block.samples, samples):
            raise ValueError(
                f"to_irreps_array needs the same samples in every block; block {key} differs "
                "from the first block"
            )
    import e3nn_jax as e3nn  # on first use: importing eqx_tensor.o3 does not import e3nn-jax

    irreps = e3nn.Irreps(
        [(len(b.properties), key_to_irrep(l, sigma)) for (l, sigma), b in zip(orders, blocks)]
    )
    values = tuple(jnp.asarray(block.values) for block in blocks)
    return e3nn.IrrepsArray(irreps, _to_e3nn_layout(tuple(l for l, _ in orders), values))


@partial(jax.jit, static_argnums=0)
def _to_e3nn_layout(ls: tuple[int, ...], values: tuple[jax.Array, ...]) -> jax.Array:
    """Blocks (n, 2l+1, P) in our basis -> one (n, sum P(2l+1)) array, e3nn basis and layout."""
    dtype = jnp.result_type(*values)
    # e3nn chunks are (n, mul, 2l+1), flattened mul-major
    chunks = [
        jnp.swapaxes(_change_basis(v.astype(dtype), l, to_e3nn=True, axis=1), 1, 2).reshape(
            v.shape[0], v.shape[1] * v.shape[2]
        )
        for l, v in zip(ls, values)
    ]
    return jnp.concatenate(chunks, axis=1)


@partial(jax.jit, static_argnums=0)
def _from_e3nn_layout(spec: tuple[tuple[int, int], ...], array: jax.Array) -> list[jax.Array]:
    """One (n, dim) e3nn array with chunks ``(mul, l)`` -> blocks (n, 2l+1, mul), our basis."""
    blocks, start = [], 0
    for mul, l in spec:
        stop = start + mul * (2 * l + 1)
        chunk = array[:, start:stop].reshape(array.shape[0], mul, 2 * l + 1)
        blocks.append(_change_basis(jnp.swapaxes(chunk, 1, 2), l, to_e3nn=False, axis=1))
        start = stop
    return blocks


def _properties_for(
    properties: PropertiesSpec, index: int, key: tuple[int, int], mul: int
) -> Labels:
    if properties is None:
        labels = Labels.range("property", mul)
    elif isinstance(properties, Labels):
        labels = properties
    elif isinstance(properties, Mapping):
        if key not in properties:
            raise ValueError(f"no properties given for the block (o3_lambda, o3_sigma) = {key}")
        labels = properties[key]
    else:
        labels = properties[index]
    if len(labels) != mul:
        raise ValueError(
            f"block (o3_lambda, o3_sigma) = {key} has multiplicity {mul} but its properties "
            f"have {len(labels)} entries"
        )
    return labels


def from_irreps_array(
    array: e3nn.IrrepsArray,
    samples: Labels | None = None,
    properties: PropertiesSpec = None,
) -> TensorMap:
    """A TensorMap keyed by ``(o3_lambda, o3_sigma)`` from an ``IrrepsArray`` (n_samples, dim).

    Args:
        array: one block per ``mul x irrep`` chunk, in order; each irrep may appear only once
            (use ``array.regroup()`` to merge repeated irreps first).
        samples: labels of the first axis; default ``Labels.range("sample", n)``.
        properties: labels of the ``mul`` channels: one Labels for every block, a sequence
            aligned with the chunks, a mapping ``(l, sigma) -> Labels``, or None for
            ``Labels.range("property", mul)``.

    Returns:
        blocks of shape (n_samples, 2l+1, mul), components ``o3_mu``, in the metatensor basis.
    """
    import e3nn_jax as e3nn

    if not isinstance(array, e3nn.IrrepsArray):
        raise TypeError(f"from_irreps_array expects an e3nn_jax.IrrepsArray, got {type(array)}")
    if array.ndim != 2:
        raise ValueError(f"from_irreps_array needs shape (n_samples, dim), got {array.shape}")
    n = array.shape[0]
    if samples is None:
        samples = Labels.range("sample", n)
    elif len(samples) != n:
        raise ValueError(f"got {len(samples)} samples for an array with {n} rows")
    irreps = [ir for _, ir in array.irreps]
    if len(set(irreps)) != len(irreps):
        raise ValueError(
            f"irreps {array.irreps} repeat an irrep, which would give repeated keys; merge them "
            "with array.regroup() first"
        )
    spec = tuple((mul, ir.l) for mul, ir in array.irreps)
    keys, blocks = [], []
    for index, ((mul, ir), values) in enumerate(
        zip(array.irreps, _from_e3nn_layout(spec, array.array))
    ):
        key = irrep_to_key(ir)
        labels = _properties_for(properties, index, key, mul)
        blocks.append(TensorBlock(values, samples, [o3_mu_labels(ir.l)], labels))
        keys.append(key)
    key_values = np.array(keys, dtype=np.int32).reshape(-1, 2)
    return TensorMap(Labels([O3_LAMBDA, O3_SIGMA], key_values), blocks)
