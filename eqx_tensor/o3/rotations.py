"""The action of O(3) on TensorMaps: ``rotate(tensor, R)`` and ``invert(tensor)``.

For an orthogonal ``R`` (proper or improper) a block with key ``(o3_lambda=l, o3_sigma=sigma)``
has its ``o3_mu`` axis multiplied by ``wigner_D(l, R, sigma=sigma)``, and every Cartesian
component (``xyz``, ``xyz_1``, ``xyz_2``, ...) by ``R`` itself, as vectors (``v -> R v``). Gradient
blocks follow the same rules, which is what derivatives need: if ``f(R r) = D f(r)`` then
``df/dr`` at ``R r`` is ``D (df/dr) R^T``, i.e. its ``xyz`` axis rotates as a vector, and a
``strain`` gradient rotates on both ``xyz_1`` and ``xyz_2``. Samples, properties and keys are
unchanged.

TensorMaps without ``o3_lambda``/``o3_sigma`` keys and without ``o3_mu`` components are invariant
(e.g. energies, power spectra): only their Cartesian components, typically in gradients, rotate.

Both functions are pure and jit-able (the metadata is static; ``R`` may be traced) and return
JAX arrays. :func:`rotate` refuses a concrete ``R`` that is not orthogonal (``R^T R = I`` and
``det R = +-1`` within ``sqrt(eps)`` of ``R``'s dtype); a traced ``R`` (under ``jax.jit``) has
no value to check at trace time and is used as given.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from ..block import TensorBlock
from ..tensormap import TensorMap
from ._metadata import block_orders, is_vector_component
from .conventions import O3_MU
from .wigner import _determinant_sign, wigner_D_all


def _float_values(values: jax.Array) -> jax.Array:
    values = jnp.asarray(values)
    if not jnp.issubdtype(values.dtype, jnp.inexact):
        values = values.astype(jnp.result_type(float))
    return values


def _apply_along(values: jax.Array, matrix: jax.Array, axis: int) -> jax.Array:
    """``matrix @ v`` for the vectors ``v`` along ``axis`` of ``values``; matrix (k, k)."""
    # HIGHEST: accelerators would otherwise round float32 matmuls to bf16/tf32 (errors ~1e-3)
    out = jnp.tensordot(values, matrix, axes=([axis], [1]), precision=jax.lax.Precision.HIGHEST)
    return jnp.moveaxis(out, -1, axis)


def _transform_block(block: TensorBlock, d: jax.Array, R: jax.Array) -> TensorBlock:
    """Apply ``d`` to the ``o3_mu`` axes and ``R`` to the Cartesian axes of a block and its
    gradients; ``d`` (2l+1, 2l+1) and ``R`` (3, 3) already in the values' dtype."""
    values = _float_values(block.values)
    for axis, component in enumerate(block.components, start=1):
        name = component.names[0]
        if name == O3_MU:
            values = _apply_along(values, d.astype(values.dtype), axis)
        elif is_vector_component(name):
            values = _apply_along(values, R.astype(values.dtype), axis)
    new = TensorBlock(values, block.samples, block.components, block.properties)
    for parameter, gradient in block.gradients():
        new.add_gradient(parameter, _transform_block(gradient, d, R))
    return new


def _with_blocks(tensor: TensorMap, blocks: list[TensorBlock]) -> TensorMap:
    result = TensorMap(tensor.keys, blocks)
    for key, value in tensor.info().items():
        result.set_info(key, value)
    return result


def rotate(tensor: TensorMap, R: jax.Array) -> TensorMap:
    """Apply the orthogonal matrix ``R`` (3, 3), proper or improper, to ``tensor``.

    ``rotate(spherical_harmonics(r), R) == spherical_harmonics(r @ R.T)``, gradients included,
    and ``rotate(rotate(x, R1), R2) == rotate(x, R2 @ R1)``.

    Raises:
        ValueError: when only one of ``o3_lambda``/``o3_sigma`` is a key, when an ``o3_mu``
            component does not match ``o3_lambda``, when ``R`` is not (3, 3), or when a
            concrete ``R`` is not orthogonal (see the module docstring; not checked under jit).
    """
    R = jnp.asarray(R)
    if R.shape != (3, 3):
        raise ValueError(f"rotate needs one (3, 3) matrix, got shape {R.shape}")
    if not jnp.issubdtype(R.dtype, jnp.floating):
        R = R.astype(jnp.result_type(float))
    _check_orthogonal(R, "rotate")
    block_orders(tensor, "rotate")  # clear errors before tracing
    return _rotate(tensor, R)


def _check_orthogonal(R: jax.Array, fname: str) -> None:
    """Refuse a concrete matrix that is not orthogonal; traced matrices cannot be checked."""
    try:
        matrix = np.asarray(R, dtype=np.float64)
    except jax.errors.TracerArrayConversionError:
        return
    tolerance = float(np.sqrt(np.finfo(R.dtype).eps))
    if not np.all(np.isfinite(matrix)):
        raise ValueError(f"{fname}: R must be an orthogonal matrix, but it has non-finite entries")
    deviation = float(np.max(np.abs(matrix.T @ matrix - np.eye(3))))
    determinant = float(np.linalg.det(matrix))
    if deviation > tolerance or abs(abs(determinant) - 1.0) > tolerance:
        raise ValueError(
            f"{fname}: R must be an orthogonal matrix (R^T R = I, det R = +-1), but "
            f"max|R^T R - I| = {deviation:.3g} and det R = {determinant:.6g} (tolerance "
            f"{tolerance:.1e} for {R.dtype}); pass a rotation or a rotation times -I, e.g. "
            "from o3.random_rotation, or orthogonalise R first (e.g. the Q of its QR "
            "decomposition)"
        )


# one compiled program per TensorMap structure: eager callers (tests, notebooks) would otherwise
# compile and dispatch every small tensordot separately
@jax.jit
def _rotate(tensor: TensorMap, R: jax.Array) -> TensorMap:
    orders = block_orders(tensor, "rotate")
    wigner = wigner_D_all(max((l for l, _ in orders), default=0), R)
    det_sign = _determinant_sign(R)
    blocks = [
        _transform_block(block, wigner[l] * det_sign if sigma == -1 else wigner[l], R)
        for (l, sigma), block in zip(orders, tensor.blocks())
    ]
    return _with_blocks(tensor, blocks)


def _scale_block(block: TensorBlock, parity: int) -> TensorBlock:
    """Multiply by the block's parity and by -1 per Cartesian component (gradients too)."""
    n_vectors = sum(is_vector_component(c.names[0]) for c in block.components)
    values = _float_values(block.values) * (parity * (-1) ** n_vectors)
    new = TensorBlock(values, block.samples, block.components, block.properties)
    for parameter, gradient in block.gradients():
        new.add_gradient(parameter, _scale_block(gradient, parity))
    return new


def invert(tensor: TensorMap) -> TensorMap:
    """Apply the inversion ``r -> -r``: same result as ``rotate(tensor, -I)``, by sign flips only.

    A block is multiplied by its parity ``o3_sigma * (-1)**o3_lambda`` and by ``-1`` for each
    Cartesian component.
    """
    block_orders(tensor, "invert")  # clear errors before tracing
    return _invert(tensor)


@jax.jit
def _invert(tensor: TensorMap) -> TensorMap:
    orders = block_orders(tensor, "invert")
    blocks = [
        _scale_block(block, sigma * (-1) ** l) for (l, sigma), block in zip(orders, tensor.blocks())
    ]
    return _with_blocks(tensor, blocks)
