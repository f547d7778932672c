"""Wigner D matrices in the metatensor basis, and random rotations.

``wigner_D(l, R)`` is the matrix with ``Y_l(R r) = wigner_D(l, R) @ Y_l(r)`` for the real
spherical harmonics of :mod:`eqx_tensor.o3.spherical_harmonics`. It is built without Euler
angles: ``D_1(R) = P R P^T`` (``l=1`` components are ``(y, z, x) = P r``) and
``D_l = Q_l^T (D_{l-1} (x) D_1) Q_l`` with ``Q_l`` the ``(l-1) (x) 1 -> l`` Clebsch-Gordan
isometry. Every entry is thus a degree-``l`` polynomial of the entries of ``R``: exact to rounding
for every rotation (angle-based formulas lose ~1e-8 near the poles of their parametrisation),
smooth, differentiable, jit-able, vmappable and batched over leading axes of ``R``.

Improper matrices (``det R = -1``) are accepted. The polynomial formula gives the action on
functions of vectors, ``(-1)**l`` under inversion, which is the transformation of a proper
(``o3_sigma=+1``) block; ``sigma=-1`` multiplies by ``det R`` for pseudotensors. In general a block
``(l, sigma)`` transforms as ``x -> wigner_D(l, R, sigma=sigma) @ x`` for any orthogonal ``R``.
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from .clebsch_gordan import clebsch_gordan
from .conventions import _check_l, _check_pm1, _coupling_isometry


def _vector_representation(R: jax.Array) -> jax.Array:
    """``D_1(R) = P R P^T``: the action of ``R`` (..., 3, 3) on ``(y, z, x)`` components."""
    # P R P^T permutes rows and columns (x, y, z) -> (y, z, x): a gather, no multiplication
    perm = np.array([1, 2, 0])
    return R[..., perm, :][..., :, perm]


def _determinant_sign(R: jax.Array) -> jax.Array:
    """``sign(det R)`` of (..., 3, 3) matrices, shape (...), exact +-1 for orthogonal R."""
    det = jnp.einsum("...i,...i->...", R[..., 0, :], jnp.cross(R[..., 1, :], R[..., 2, :]))
    return jnp.sign(det)


def wigner_D_all(l_max: int, R: jax.Array) -> list[jax.Array]:
    """Wigner matrices of orders ``0..l_max`` for ``o3_sigma=+1`` blocks, sharing the recursion.

    Args:
        l_max: the largest order.
        R: orthogonal matrices, shape (..., 3, 3).

    Returns:
        ``[D_0, ..., D_l_max]`` with ``D_l`` of shape (..., 2l+1, 2l+1) and the dtype of ``R``.
    """
    l_max = _check_l(l_max)
    R = jnp.asarray(R)
    if not jnp.issubdtype(R.dtype, jnp.floating):
        R = R.astype(jnp.result_type(float))
    if R.shape[-2:] != (3, 3):
        raise ValueError(f"rotation matrices must have shape (..., 3, 3), got {R.shape}")
    return _wigner_D_all(l_max, R)


@partial(jax.jit, static_argnums=0)
def _wigner_D_all(l_max: int, R: jax.Array) -> list[jax.Array]:
    # jitted so that eager calls compile the whole recursion once instead of op by op
    d1 = _vector_representation(R)
    ds = [jnp.ones((*R.shape[:-2], 1, 1), R.dtype), d1][: l_max + 1]
    for l in range(2, l_max + 1):
        q = _coupling_isometry(np.asarray(clebsch_gordan(l - 1, 1, l))).reshape(2 * l - 1, 3, -1)
        q = jnp.asarray(q, R.dtype)
        # HIGHEST: accelerators would otherwise round float32 products to bf16/tf32
        ds.append(
            jnp.einsum(
                "ijk,...ia,...jb,abn->...kn", q, ds[-1], d1, q, precision=jax.lax.Precision.HIGHEST
            )
        )
    return ds


def wigner_D(l: int, R: jax.Array, *, sigma: int = 1) -> jax.Array:
    """Wigner matrix of order ``l`` in our basis: ``Y_l(R r) = wigner_D(l, R) @ Y_l(r)``.

    Args:
        l: the order ``o3_lambda``.
        R: orthogonal matrices, shape (..., 3, 3); proper or improper.
        sigma: ``o3_sigma`` of the block to transform; ``-1`` multiplies by ``det R``.

    Returns:
        shape (..., 2l+1, 2l+1), dtype of ``R``.
    """
    d = wigner_D_all(l, R)[-1]
    if _check_pm1(sigma, "o3_sigma") == -1:
        d = d * _determinant_sign(jnp.asarray(R, d.dtype))[..., None, None]
    return d


def random_rotation(
    key: jax.Array,
    shape: tuple[int, ...] = (),
    dtype: jnp.dtype | None = None,
    *,
    improper: bool = False,
) -> jax.Array:
    """Haar-random rotation matrices, shape (*shape, 3, 3).

    Drawn as normalised Gaussian quaternions (uniform on SO(3)). ``improper=True`` returns
    ``-R``: a uniformly random rotation composed with the inversion (``det = -1``).
    ``dtype`` defaults to JAX's default float type.
    """
    dtype = jnp.result_type(float) if dtype is None else dtype
    q = jax.random.normal(key, (*shape, 4), dtype)
    q = q / jnp.linalg.norm(q, axis=-1, keepdims=True)
    w, x, y, z = q[..., 0], q[..., 1], q[..., 2], q[..., 3]
    rows = [
        [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
        [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
        [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
    ]
    R = jnp.stack([jnp.stack(row, axis=-1) for row in rows], axis=-2)
    return -R if improper else R
