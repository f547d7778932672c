"""Real Clebsch-Gordan coefficients in the metatensor (z-polar) basis.

``clebsch_gordan(l1, l2, l3)[i, j, k]`` couples component ``i`` of an order-``l1`` input and
component ``j`` of an order-``l2`` input into component ``k`` of the order-``l3`` output::

    out_k = sum_ij C_ijk x_i y_j,   out(D1 x, D2 y) = D3 out(x, y)

for every rotation, with ``D`` the Wigner matrices of :mod:`eqx_tensor.o3.wigner`. The
normalisation is e3nn-jax's: unit Frobenius norm, ``sum_ijk C_ijk^2 = 1``.

They are the same numbers as ``e3nn_jax.clebsch_gordan``: taking each index to our basis
multiplies by ``change_of_basis(l) = D_e3nn(P)``, the e3nn Wigner matrix of the rotation ``P``,
and CG tensors are invariant under ``D(g) (x) D(g) (x) D(g)`` for every rotation ``g``. So a
contraction with them gives e3nn-jax's result in either basis (checked to 2e-15 in the tests).
"""

from __future__ import annotations

from functools import cache

import numpy as np

from ._coupling import real_clebsch_gordan
from .conventions import _check_l


def selection_rule(l1: int, l2: int, l3: int) -> bool:
    """Whether ``l1 (x) l2`` contains ``l3``: the triangle rule ``|l1 - l2| <= l3 <= l1 + l2``."""
    l1, l2, l3 = _check_l(l1), _check_l(l2), _check_l(l3)
    return abs(l1 - l2) <= l3 <= l1 + l2


def clebsch_gordan(l1: int, l2: int, l3: int) -> np.ndarray:
    """Real CG coefficients in our basis, shape ``(2l1+1, 2l2+1, 2l3+1)``, float64.

    Zero (of the right shape) when the triangle rule fails. Cached and read-only: copy to modify.

    >>> import numpy as np
    >>> from eqx_tensor import o3
    >>> C = o3.clebsch_gordan(1, 1, 0)  # the scalar in 1 x 1 is the dot product
    >>> C.shape, bool(np.allclose(C[:, :, 0], np.eye(3) / np.sqrt(3)))
    ((3, 3, 1), True)
    """
    return _clebsch_gordan(_check_l(l1), _check_l(l2), _check_l(l3))


@cache
def _clebsch_gordan(l1: int, l2: int, l3: int) -> np.ndarray:
    if not selection_rule(l1, l2, l3):
        cg = np.zeros((2 * l1 + 1, 2 * l2 + 1, 2 * l3 + 1))
    else:
        # invariant under the change of basis (module docstring): e3nn's real tensor as is,
        # computed here so that planning a product does not import e3nn-jax
        cg = real_clebsch_gordan(l1, l2, l3)
    cg.setflags(write=False)
    return cg
