"""Real spherical harmonics of vectors, in the metatensor basis, as plain arrays.

``Y_l(r)`` has ``2l+1`` components ``o3_mu = -l..l`` of the standard z-polar real spherical
harmonics (``l=1`` is ``(y, z, x)``), with no Condon-Shortley phase, as in metatensor, featomic and
sphericart. They are computed by e3nn-jax's polynomials on the permuted vector
``P r = (y, z, x)``, since ``Y_mts(r) = Y_e3nn(P r)`` (see :mod:`eqx_tensor.o3.conventions`).

Normalisations (for ``|r| = 1``), as in e3nn:

- ``"integral"`` (default, featomic's): ``int_S2 Y_lm^2 = 1``, ``Y_00 = 1/sqrt(4 pi)``;
- ``"component"``: ``|Y_l|^2 = 2l+1``, ``Y_00 = 1``, ``Y_1 = sqrt(3) (y, z, x)``;
- ``"norm"``: ``|Y_l| = 1``.

With ``normalize=False`` the vectors are not projected on the sphere and ``Y_l`` are the solid
harmonics ``|r|^l Y_l(r_hat)`` (homogeneous polynomials).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import e3nn_jax as e3nn
import jax
import jax.numpy as jnp
import numpy as np

from .conventions import _check_l

Normalization = Literal["integral", "component", "norm"]


def _as_ls(ls: int | Sequence[int]) -> tuple[int, ...]:
    """Sorted distinct orders from ``l_max`` (an int, meaning ``0..l_max``) or a sequence."""
    if isinstance(ls, (int, np.integer)):
        return tuple(range(_check_l(ls) + 1))
    out = tuple(sorted({_check_l(l) for l in ls}))
    if not out:
        raise ValueError("at least one spherical harmonics order is needed")
    return out


def spherical_harmonics_array(
    ls: int | Sequence[int],
    vectors: jax.Array,
    *,
    normalize: bool = True,
    normalization: Normalization = "integral",
) -> dict[int, jax.Array]:
    """Real spherical harmonics of ``vectors`` in the metatensor basis.

    Args:
        ls: ``l_max`` (orders ``0..l_max``) or a sequence of orders.
        vectors: shape (..., 3), Cartesian ``(x, y, z)``.
        normalize: project the vectors on the unit sphere first. The zero vector then gives the
            value and (finite) gradient of the un-normalised polynomials at zero, as e3nn does:
            ``Y_0`` is its constant, ``Y_l`` for ``l >= 1`` is zero.
        normalization: ``"integral"``, ``"component"`` or ``"norm"`` (module docstring).

    Returns:
        ``{l: array of shape (..., 2l+1)}`` for each requested ``l``, in increasing order.
    """
    if normalization not in ("integral", "component", "norm"):
        raise ValueError(
            f"normalization must be 'integral', 'component' or 'norm', got {normalization!r}"
        )
    orders = _as_ls(ls)
    vectors = jnp.asarray(vectors)
    if vectors.shape[-1:] != (3,):
        raise ValueError(f"vectors must have shape (..., 3), got {vectors.shape}")
    if not jnp.issubdtype(vectors.dtype, jnp.floating):
        vectors = vectors.astype(jnp.result_type(float))
    # Y_mts(r) = Y_e3nn(P r), P r = (y, z, x). e3nn guards |r| = 0 with a where on r^2 before the
    # square root, so the gradient at the zero vector is finite (jnp.linalg.norm would give NaN).
    permuted = vectors[..., np.array([1, 2, 0])]
    flat = e3nn.sh(list(orders), permuted, normalize, normalization)
    out, start = {}, 0
    for l in orders:
        out[l] = flat[..., start : start + 2 * l + 1]
        start += 2 * l + 1
    return out
