"""e3nn's real Clebsch-Gordan coefficients, computed from Racah's formula (no e3nn-jax import).

The lowest module of :mod:`eqx_tensor.o3`: it imports nothing from the package, so that both
:mod:`~eqx_tensor.o3.conventions` (the change of basis) and
:mod:`~eqx_tensor.o3.clebsch_gordan` (the public, cached tensors) build on it.
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np


def real_clebsch_gordan(l1: int, l2: int, l3: int) -> np.ndarray:
    """e3nn's coupling tensor of real irreps, shape ``(2l1+1, 2l2+1, 2l3+1)``, float64.

    The complex (Condon-Shortley) coefficients taken to e3nn's real basis; unit Frobenius
    norm. Entries below ``1e-14`` (residues of the complex bases where the value is zero) are
    exact zeros, so that sparse contractions count the true non-zeros. ``l3`` must satisfy the
    triangle rule with ``l1`` and ``l2``.
    """
    q1, q2, q3 = (_real_to_complex(l) for l in (l1, l2, l3))
    complex_cg = _complex_clebsch_gordan(l1, l2, l3)
    cg = np.einsum("ij,kl,mn,ikn->jlm", q1, q2, np.conj(q3.T), complex_cg).real
    cg[np.abs(cg) < 1e-14] = 0.0
    return cg


def _complex_clebsch_gordan(l1: int, l2: int, l3: int) -> np.ndarray:
    """``<l1 m1 l2 m2 | l3 m3> / sqrt(2l3+1)`` (Condon-Shortley phases), indexed by ``l + m``.

    Racah's formula in exact rational arithmetic; the tensor has unit Frobenius norm.
    """
    cg = np.zeros((2 * l1 + 1, 2 * l2 + 1, 2 * l3 + 1))
    for m1 in range(-l1, l1 + 1):
        for m2 in range(max(-l2, -l3 - m1), min(l2, l3 - m1) + 1):
            cg[l1 + m1, l2 + m2, l3 + m1 + m2] = _racah(l1, m1, l2, m2, l3)
    return cg / math.sqrt(2 * l3 + 1)


def _racah(l1: int, m1: int, l2: int, m2: int, l3: int) -> float:
    """The Clebsch-Gordan coefficient ``<l1 m1 l2 m2 | l3 (m1 + m2)>`` (Racah's formula)."""
    m3 = m1 + m2
    f = math.factorial
    square = Fraction(
        (2 * l3 + 1) * f(l3 + l1 - l2) * f(l3 - l1 + l2) * f(l1 + l2 - l3),
        f(l1 + l2 + l3 + 1),
    ) * (f(l3 + m3) * f(l3 - m3) * f(l1 - m1) * f(l1 + m1) * f(l2 - m2) * f(l2 + m2))
    low = max(0, l2 - l3 - m1, l1 - l3 + m2)
    high = min(l1 + l2 - l3, l1 - m1, l2 + m2)
    total = sum(
        Fraction(
            (-1) ** k,
            f(k)
            * f(l1 + l2 - l3 - k)
            * f(l1 - m1 - k)
            * f(l2 + m2 - k)
            * f(l3 - l2 + m1 + k)
            * f(l3 - l1 - m2 + k),
        )
        for k in range(low, high + 1)
    )
    if total == 0:
        return 0.0
    # sqrt(square) * total = sign * sqrt(square * total**2), one rounding
    return math.copysign(math.sqrt(square * total * total), total)


def _real_to_complex(l: int) -> np.ndarray:
    """``Q`` with ``Y_complex = Q Y_real`` in e3nn's real basis, times ``(-i)**l`` so that the
    Clebsch-Gordan coefficients of the real basis are real (e3nn's phase convention)."""
    q = np.zeros((2 * l + 1, 2 * l + 1), dtype=np.complex128)
    r = 1 / math.sqrt(2)
    for m in range(-l, 0):
        q[l + m, l - m] = r
        q[l + m, l + m] = -1j * r
    q[l, l] = 1
    for m in range(1, l + 1):
        q[l + m, l + m] = (-1) ** m * r
        q[l + m, l - m] = 1j * (-1) ** m * r
    return (-1j) ** l * q
