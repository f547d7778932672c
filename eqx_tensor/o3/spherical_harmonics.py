"""Real spherical harmonics of vectors in the metatensor basis, as arrays or as a TensorMap.

``Y_l(r)`` has ``2l+1`` components ``o3_mu = -l..l`` of the standard z-polar real spherical
harmonics (``l=1`` is ``(y, z, x)``), with no Condon-Shortley phase, as in metatensor, featomic and
sphericart: e3nn's harmonics of the permuted vector ``P r = (y, z, x)``, since
``Y_mts(r) = Y_e3nn(P r)`` (see :mod:`eqx_tensor.o3.conventions`), computed by the recursion
``Y_l = a_l C(l-1, 1, l) . (Y_{l-1} (x) r)`` with the Clebsch-Gordan coefficients of
:func:`eqx_tensor.o3.clebsch_gordan`, which builds e3nn's polynomials (equal to e3nn-jax's to
round-off, checked in the tests).

Normalisations (for ``|r| = 1``), as in e3nn:

- ``"integral"`` (default, featomic's): ``int_S2 Y_lm^2 = 1``, ``Y_00 = 1/sqrt(4 pi)``;
- ``"component"``: ``|Y_l|^2 = 2l+1``, ``Y_00 = 1``, ``Y_1 = sqrt(3) (y, z, x)``;
- ``"norm"``: ``|Y_l| = 1``.

With ``normalize=False`` the vectors are not projected on the sphere and ``Y_l`` are the solid
harmonics ``|r|^l Y_l(r_hat)`` (homogeneous polynomials).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import cache, partial
from typing import Literal

import jax
import jax.numpy as jnp
import numpy as np

from ..block import TensorBlock
from ..labels import Labels
from ..tensormap import TensorMap
from ._metadata import o3_mu_labels
from .clebsch_gordan import clebsch_gordan
from .conventions import O3_LAMBDA, O3_SIGMA, XYZ, _check_l

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
    return _spherical_harmonics(orders, vectors, bool(normalize), normalization)


@partial(jax.jit, static_argnums=(0, 2, 3))
def _spherical_harmonics(
    orders: tuple[int, ...], vectors: jax.Array, normalize: bool, normalization: str
) -> dict[int, jax.Array]:
    # Y_mts(r) = Y_e3nn(P r), P r = (y, z, x); the coupling coefficients are the same numbers in
    # both bases, so the recursion below on P r gives our components directly
    v = vectors[..., np.array([1, 2, 0])]
    if normalize:
        # a where on r^2 before the square root: the gradient at the zero vector is finite
        # (jnp.linalg.norm would give NaN), the value and gradient of the polynomials at zero
        r2 = jnp.sum(v * v, axis=-1, keepdims=True)
        v = v / jnp.sqrt(jnp.where(r2 == 0, 1.0, r2))
    # Python floats: a NumPy float64 scalar would promote float32 harmonics under x64
    scale = {"component": 1.0, "norm": None, "integral": 1.0 / math.sqrt(4 * math.pi)}[
        normalization
    ]
    harmonics = [jnp.ones_like(v[..., :1])]  # component normalisation: |Y_l|^2 = 2l+1
    for l in range(1, max(orders) + 1):
        coupling = _solid_coupling(l).astype(v.dtype)  # (2l-1, 3, 2l+1)
        outer = harmonics[-1][..., :, None] * v[..., None, :]
        flat = outer.reshape(*outer.shape[:-2], 3 * (2 * l - 1))
        harmonics.append(flat @ coupling.reshape(3 * (2 * l - 1), 2 * l + 1))
    out = {}
    for l in orders:
        factor = 1.0 / math.sqrt(2 * l + 1) if scale is None else scale
        out[l] = harmonics[l] if factor == 1.0 else harmonics[l] * factor
    return out


@cache
def _solid_coupling(l: int) -> np.ndarray:
    """``a_l C(l-1, 1, l)``: ``Y_l = a_l C . (Y_{l-1} (x) r)`` with ``|Y_l|^2 = (2l+1) |r|^(2l)``.

    The projection of ``Y_{l-1} (x) r`` on degree ``l`` is proportional to the solid harmonic
    ``|r|^l Y_l``, so its norm is the same for every unit vector: ``a_l > 0`` is fixed on one.
    Float64, read-only.
    """
    coupling = clebsch_gordan(l - 1, 1, l)
    v = np.array([0.36, 0.48, 0.8])  # a unit vector
    y = np.ones(1)
    for k in range(1, l + 1):
        y = np.einsum("i,j,ijk->k", y, v, _solid_coupling(k) if k < l else coupling)
    result = coupling * (np.sqrt(2 * l + 1) / np.linalg.norm(y))
    result.setflags(write=False)
    return result


def spherical_harmonics(
    vectors: jax.Array,
    ls: int | Sequence[int],
    *,
    samples: Labels | None = None,
    normalize: bool = True,
    normalization: Normalization = "integral",
    gradients: bool = False,
    gradient_parameter: str = "positions",
) -> TensorMap:
    """Real spherical harmonics of ``vectors`` as a TensorMap.

    Args:
        vectors: shape (n, 3), Cartesian ``(x, y, z)``.
        ls: ``l_max`` (orders ``0..l_max``) or a sequence of orders.
        samples: labels of the ``n`` vectors; default ``Labels.range("vector", n)``.
        normalize, normalization: as in :func:`spherical_harmonics_array`.
        gradients: also attach the explicit derivative of each ``Y_l(r_i)`` with respect to its
            own vector ``r_i``, under ``gradient_parameter``: samples ``["sample"]`` (row ``i``),
            components ``[xyz, o3_mu]``, values ``dY_lm / dr_a`` of shape (n, 3, 2l+1, 1).
            At the zero vector it is the finite derivative of the un-normalised polynomial.
        gradient_parameter: the gradient's parameter name.

    Returns:
        keys ``(o3_lambda, o3_sigma)`` = ``(l, +1)`` (spherical harmonics of a polar vector have
        parity ``(-1)**l``); blocks of shape (n, 2l+1, 1) with components ``o3_mu`` and a single
        property (``Labels.single()``).

    >>> import numpy as np
    >>> from eqx_tensor import o3
    >>> sh = o3.spherical_harmonics(np.array([[0.0, 0.0, 2.0]]), 1, normalization="component")
    >>> sh.keys.values.tolist()
    [[0, 1], [1, 1]]
    >>> [round(float(v), 6) for v in sh.block(o3_lambda=1).values[0, :, 0]]  # mu -1, 0, 1: y, z, x
    [0.0, 1.732051, 0.0]
    """
    vectors = jnp.asarray(vectors)
    if vectors.ndim != 2 or vectors.shape[1] != 3:
        raise ValueError(f"vectors must have shape (n, 3), got {vectors.shape}")
    orders = _as_ls(ls)
    n = vectors.shape[0]
    if samples is None:
        samples = Labels.range("vector", n)
    elif len(samples) != n:
        raise ValueError(f"got {len(samples)} samples for {n} vectors")

    if normalization not in ("integral", "component", "norm"):
        raise ValueError(
            f"normalization must be 'integral', 'component' or 'norm', got {normalization!r}"
        )
    values, jacobians = _block_arrays(orders, vectors, bool(normalize), normalization, gradients)
    properties = Labels.single()
    xyz = Labels([XYZ], np.arange(3, dtype=np.int32).reshape(-1, 1))
    blocks = []
    for l in orders:
        components = [o3_mu_labels(l)]
        block = TensorBlock(values[l], samples, components, properties)
        if gradients:
            rows = Labels(["sample"], np.arange(n, dtype=np.int32).reshape(-1, 1))
            block.add_gradient(
                gradient_parameter, TensorBlock(jacobians[l], rows, [xyz, *components], properties)
            )
        blocks.append(block)
    keys = Labels([O3_LAMBDA, O3_SIGMA], np.array([[l, 1] for l in orders], dtype=np.int32))
    return TensorMap(keys, blocks)


@partial(jax.jit, static_argnums=(0, 2, 3, 4))
def _block_arrays(
    orders: tuple[int, ...],
    vectors: jax.Array,
    normalize: bool,
    normalization: str,
    gradients: bool,
) -> tuple[dict[int, jax.Array], dict[int, jax.Array] | None]:
    """Block values (n, 2l+1, 1) and, if asked, gradient values (n, 3, 2l+1, 1) per order."""

    def harmonics(v: jax.Array) -> dict[int, jax.Array]:
        return spherical_harmonics_array(
            orders, v, normalize=normalize, normalization=normalization
        )

    values = {l: y[..., None] for l, y in harmonics(vectors).items()}
    if not gradients:
        return values, None
    # d Y_lm(r_i) / d r_ia: jacfwd gives (n, 2l+1, 3), blocks want (n, xyz, o3_mu, property)
    jacobians = jax.vmap(jax.jacfwd(harmonics))(vectors)
    return values, {l: jnp.swapaxes(j, -1, -2)[..., None] for l, j in jacobians.items()}
