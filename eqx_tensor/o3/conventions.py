"""O(3) conventions of eqx_tensor: keys, component order, parity, and the e3nn-jax basis.

Keys and components (metatensor / featomic / sphericart conventions)
--------------------------------------------------------------------
- ``o3_lambda`` is the angular order ``l``; a block has ``2l+1`` components named ``o3_mu`` with
  values ``-l..l``.
- The ``o3_mu`` components are the standard **z-polar real spherical harmonics** (the table of
  real spherical harmonics on Wikipedia, no Condon-Shortley phase left in the real functions), so
  ``l=1`` is ``(y, z, x)``, ``l=2`` is ``(xy, yz, 3z^2-r^2, xz, x^2-y^2)`` up to positive factors.
- ``o3_sigma`` is ``+1`` for a proper tensor and ``-1`` for a pseudotensor. Under inversion a block
  is multiplied by ``o3_sigma * (-1)**l``; under a proper rotation ``R`` it transforms with the
  Wigner matrix ``D_l(R)`` of :mod:`eqx_tensor.o3.wigner`.

e3nn-jax
--------
e3nn-jax labels an irrep by ``(l, p)`` where ``p`` is the parity under inversion, so
``o3_sigma = p * (-1)**l``: ``"0e" -> (0, +1)``, ``"0o" -> (0, -1)``, ``"1o" -> (1, +1)``,
``"1e" -> (1, -1)``. Parities multiply in products (``p = p1 * p2``), hence
``sigma = sigma1 * sigma2 * (-1)**(l1 + l2 + l)``.

e3nn-jax (like torch e3nn and cuEquivariance) uses **y as the polar axis** with ``l=1 = (x, y, z)``.
Both bases are real spherical harmonics of a relabelled frame: with the cyclic permutation
``P = [[0,1,0],[0,0,1],[1,0,0]]`` (a proper rotation, ``P r = (y, z, x)``)::

    Y_mts(r) = Y_e3nn(P r) = D_e3nn(P) Y_e3nn(r)
    D_mts(R) = D_e3nn(P R P^T)

so the matrix taking e3nn-basis components to metatensor-basis components is
``change_of_basis(l) = D_e3nn(P)``. It is a permutation for ``l=1`` (``P`` itself) and a full
orthogonal matrix for ``l >= 2``. Because it is the representation of a rotation, Clebsch-Gordan
tensors (rotation invariant) are the same numbers in both bases.

Normalisation and phase of featomic data (checked on the shared ``.mts`` files)
-------------------------------------------------------------------------------
featomic spherical expansions use exactly these functions with the ``"integral"`` normalisation
(orthonormal on the sphere, ``Y_00 = 1/sqrt(4 pi)``). On ``qm7-spherical-expansion.mts`` the
pair vector of a centre with a single neighbour of a type follows from the ``strain`` and
``positions`` gradients (``dV/d strain_ab = dV/dr_a r_b``); the block values are then
``c_nl(r) * Y_l(r_hat)`` to 1e-15 relative for ``l = 0..4`` with our ``Y_l``, and fitting the
radial factors with featomic's GTO radial integrals gives a scale of 1 (to 1e-12) between ``l``
and ``l = 0``: no extra ``l``- or ``m``-dependent phase or factor (``tests/test_o3_arrays.py``).
"""

from __future__ import annotations

import re
from functools import cache
from typing import TYPE_CHECKING, Any

import numpy as np

from ._coupling import real_clebsch_gordan

if TYPE_CHECKING:
    import e3nn_jax as e3nn

# e3nn's irrep notation, "1o", "0e", "2y" (y: the parity of a spherical harmonic, (-1)**l)
_IRREP_RE = re.compile(r"^\s*(\d+)([eoy])\s*$")

# metatensor names of the O(3) dimensions
O3_LAMBDA = "o3_lambda"
O3_SIGMA = "o3_sigma"
O3_MU = "o3_mu"
XYZ = "xyz"


def frame_permutation() -> np.ndarray:
    """The proper rotation ``P`` with ``P @ (x, y, z) = (y, z, x)``, shape (3, 3), float64.

    ``Y_mts(r) = Y_e3nn(P r)``: P maps a vector to the frame in which e3nn's y-polar harmonics are
    the metatensor z-polar ones. A fresh array each call, so callers may modify it.
    """
    return np.array([[0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [1.0, 0.0, 0.0]])


def _check_l(l: int) -> int:
    if int(l) != l or l < 0:
        raise ValueError(f"o3_lambda must be a non-negative integer, got {l!r}")
    return int(l)


def _check_pm1(value: int, name: str) -> int:
    if value not in (1, -1):
        raise ValueError(f"{name} must be +1 or -1, got {value!r}")
    return int(value)


def sigma_from_parity(l: int, parity: int) -> int:
    """``o3_sigma`` of an irrep of order ``l`` with e3nn parity ``parity`` (+1 even, -1 odd)."""
    l = _check_l(l)
    return _check_pm1(parity, "parity") * (-1) ** l


def parity_from_sigma(l: int, sigma: int) -> int:
    """e3nn parity (sign under inversion) of a block with ``o3_lambda=l``, ``o3_sigma=sigma``."""
    l = _check_l(l)
    return _check_pm1(sigma, "o3_sigma") * (-1) ** l


def product_sigma(l1: int, sigma1: int, l2: int, sigma2: int, l3: int) -> int:
    """``o3_sigma`` of the order-``l3`` part of ``(l1, sigma1) (x) (l2, sigma2)``.

    Parities multiply: ``p3 = p1 * p2``, so ``sigma3 = sigma1 * sigma2 * (-1)**(l1 + l2 + l3)``.
    """
    p3 = parity_from_sigma(l1, sigma1) * parity_from_sigma(l2, sigma2)
    return sigma_from_parity(l3, p3)


def irrep_to_key(irrep: str | e3nn.Irrep | Any) -> tuple[int, int]:
    """``(o3_lambda, o3_sigma)`` of an e3nn irrep (str or Irrep): ``"1o" -> (1, 1)``.

    Strings are parsed here (``"1o"``, ``"0e"``, ``"2y"``), so that reading irreps does not import
    e3nn-jax; ``e3nn_jax.Irrep`` (or e3nn's torch ``Irrep``) objects are read by their ``l``, ``p``.
    """
    if isinstance(irrep, str):
        match = _IRREP_RE.match(irrep)
        if match is None:
            raise ValueError(f"invalid irrep {irrep!r}: expected e3nn's notation, e.g. '1o', '0e'")
        l = int(match.group(1))
        p = {"e": 1, "o": -1, "y": (-1) ** l}[match.group(2)]
        return l, sigma_from_parity(l, p)
    if hasattr(irrep, "l") and hasattr(irrep, "p"):
        return int(irrep.l), sigma_from_parity(int(irrep.l), int(irrep.p))
    if isinstance(irrep, tuple) and len(irrep) == 2:
        l, p = (int(v) for v in irrep)
        return l, sigma_from_parity(l, p)
    raise TypeError(f"irrep_to_key expects an irrep string or e3nn Irrep, got {irrep!r}")


def key_to_irrep(l: int, sigma: int) -> e3nn.Irrep:
    """The e3nn irrep of a block with ``o3_lambda=l`` and ``o3_sigma=sigma``: ``(1, 1) -> 1o``."""
    import e3nn_jax as e3nn

    return e3nn.Irrep(int(l), parity_from_sigma(l, sigma))


def _coupling_isometry(cg: np.ndarray) -> np.ndarray:
    """``sqrt(2l+1) * CG(l-1, 1, l)`` as a ``(3(2l-1), 2l+1)`` matrix with orthonormal columns."""
    d1, d2, d3 = cg.shape
    # e3nn normalises each CG tensor to unit Frobenius norm, i.e. sum_ij C_ijk C_ijk' = d3^-1 delta
    return np.sqrt(d3) * cg.reshape(d1 * d2, d3)


def _wigner_from_vector_rep(l: int, d1: np.ndarray, cg) -> np.ndarray:
    """D_l from D_1 by coupling: ``D_l = Q^T (D_{l-1} (x) D_1) Q`` with Q the CG isometry.

    ``cg(l1, l2, l3)`` supplies coupling coefficients in the basis of ``d1``; float64 numpy.
    """
    d = np.ones((1, 1))
    for k in range(1, l + 1):
        q = _coupling_isometry(cg(k - 1, 1, k))
        d = q.T @ np.kron(d, d1) @ q
    return d


def change_of_basis(l: int) -> np.ndarray:
    """Orthogonal matrix ``C`` (2l+1, 2l+1), float64, taking e3nn-basis components to ours.

    ``x_mts = C @ x_e3nn`` and ``x_e3nn = C.T @ x_mts``, for the ``2l+1`` components of one irrep.
    ``C = D_e3nn(P)``: the e3nn Wigner matrix of the frame permutation (see module docstring),
    built from e3nn's Clebsch-Gordan coefficients in float64 (no angles, so exact to ~1e-16).
    The array is cached and read-only; copy it to modify it.
    """
    return _change_of_basis(_check_l(l))


@cache
def _change_of_basis(l: int) -> np.ndarray:
    # e3nn's l=1 basis is (x, y, z), so D_e3nn^1(P) = P; e3nn's coupling coefficients are ours
    c = _wigner_from_vector_rep(l, frame_permutation(), real_clebsch_gordan)
    c.setflags(write=False)
    return c
