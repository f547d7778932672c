"""Real Clebsch-Gordan coefficients in the metatensor (z-polar) basis.

``clebsch_gordan(l1, l2, l3)[i, j, k]`` couples component ``i`` of an order-``l1`` input and
component ``j`` of an order-``l2`` input into component ``k`` of the order-``l3`` output::

    out_k = sum_ij C_ijk x_i y_j,   out(D1 x, D2 y) = D3 out(x, y)

for every rotation, with ``D`` the Wigner matrices of :mod:`eqx_tensor.o3.wigner`. They are
e3nn-jax's coefficients (unit Frobenius norm, ``sum_ijk C_ijk^2 = 1``) with each index taken to
our basis by :func:`~eqx_tensor.o3.conventions.change_of_basis`, so a contraction with them gives
exactly e3nn-jax's result, converted.
"""

from __future__ import annotations

from functools import lru_cache

import e3nn_jax as e3nn
import numpy as np

from .conventions import _check_l, change_of_basis


def selection_rule(l1: int, l2: int, l3: int) -> bool:
    """Whether ``l1 (x) l2`` contains ``l3``: the triangle rule ``|l1 - l2| <= l3 <= l1 + l2``."""
    l1, l2, l3 = _check_l(l1), _check_l(l2), _check_l(l3)
    return abs(l1 - l2) <= l3 <= l1 + l2


def clebsch_gordan(l1: int, l2: int, l3: int) -> np.ndarray:
    """Real CG coefficients in our basis, shape ``(2l1+1, 2l2+1, 2l3+1)``, float64.

    Zero (of the right shape) when the triangle rule fails. Cached and read-only: copy to modify.
    """
    return _clebsch_gordan(_check_l(l1), _check_l(l2), _check_l(l3))


@lru_cache(maxsize=None)
def _clebsch_gordan(l1: int, l2: int, l3: int) -> np.ndarray:
    if not selection_rule(l1, l2, l3):
        cg = np.zeros((2 * l1 + 1, 2 * l2 + 1, 2 * l3 + 1))
    else:
        cg = np.einsum(
            "ia,jb,kc,abc->ijk",
            change_of_basis(l1),
            change_of_basis(l2),
            change_of_basis(l3),
            e3nn.clebsch_gordan(l1, l2, l3),
        )
        # the basis change mixes entries that vanish exactly; keep the zeros exact so that
        # sparse contractions can count the true non-zeros
        cg[np.abs(cg) < 1e-14] = 0.0
    cg.setflags(write=False)
    return cg
