"""eqx_tensor.o3 on plain arrays: conventions, spherical harmonics, Wigner D, Clebsch-Gordan.

Checked against e3nn-jax (after the change of basis), explicit formulas, group properties, and the
featomic spherical expansions of the shared data folder.
"""

import e3nn_jax as e3nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import data_path
from helpers import FLOAT, assert_close, tol

from eqx_tensor.o3.clebsch_gordan import clebsch_gordan, selection_rule
from eqx_tensor.o3.conventions import (
    change_of_basis,
    frame_permutation,
    irrep_to_key,
    key_to_irrep,
    parity_from_sigma,
    product_sigma,
    sigma_from_parity,
)
from eqx_tensor.o3.spherical_harmonics import spherical_harmonics_array
from eqx_tensor.o3.wigner import random_rotation, wigner_D, wigner_D_all

L_MAX = 4


def _vectors(n=16, seed=1, dtype=FLOAT):
    return jax.random.normal(jax.random.key(seed), (n, 3), dtype)


# --------------------------------------------------------------------------- conventions


@pytest.mark.parametrize(
    "irrep, key", [("0e", (0, 1)), ("0o", (0, -1)), ("1o", (1, 1)), ("1e", (1, -1)), ("2e", (2, 1))]
)
def test_irrep_key_table(irrep, key):
    assert irrep_to_key(irrep) == key
    assert irrep_to_key(e3nn.Irrep(irrep)) == key
    assert key_to_irrep(*key) == e3nn.Irrep(irrep)
    l, sigma = key
    assert parity_from_sigma(l, sigma) == e3nn.Irrep(irrep).p
    assert sigma_from_parity(l, e3nn.Irrep(irrep).p) == sigma


def test_product_sigma_matches_e3nn_products():
    for ir1 in e3nn.Irreps("0e+0o+1o+1e+2e+2o+3o"):
        for ir2 in e3nn.Irreps("0e+0o+1o+1e+2e+3e"):
            for ir3 in ir1.ir * ir2.ir:
                l1, s1 = irrep_to_key(ir1.ir)
                l2, s2 = irrep_to_key(ir2.ir)
                assert product_sigma(l1, s1, l2, s2, ir3.l) == irrep_to_key(ir3)[1]


def test_invalid_conventions_raise():
    with pytest.raises(ValueError, match="o3_sigma"):
        parity_from_sigma(1, 0)
    with pytest.raises(ValueError, match="non-negative"):
        change_of_basis(-1)


def test_change_of_basis_is_frame_permutation():
    P = frame_permutation()
    np.testing.assert_array_equal(P @ np.array([1.0, 2.0, 3.0]), [2.0, 3.0, 1.0])
    assert_close(change_of_basis(1), P, atol=1e-15)
    r = np.asarray(_vectors())
    ls = list(range(L_MAX + 1))
    y_e3nn = np.asarray(e3nn.sh(ls, r, True, "integral"))
    y_perm = np.asarray(e3nn.sh(ls, r @ P.T, True, "integral"))
    for l in ls:
        C = change_of_basis(l)
        assert_close(C @ C.T, np.eye(2 * l + 1), atol=1e-14)
        # Y_mts(r) = Y_e3nn(P r) = C Y_e3nn(r)
        part = slice(l**2, (l + 1) ** 2)
        assert_close(y_e3nn[:, part] @ C.T, y_perm[:, part], atol=1e-14)
    # for l >= 2 this is a genuine rotation of the components, not a permutation
    assert np.count_nonzero(np.abs(change_of_basis(2)) > 1e-12) > 5


# --------------------------------------------------------------------- spherical harmonics


def _reference_sh(r):
    """Wikipedia's table of real spherical harmonics, orthonormal, l <= 2 and two l=3 entries."""
    x, y, z = (r / np.linalg.norm(r, axis=-1, keepdims=True)).T
    pi = np.pi
    return {
        0: np.stack([np.full_like(x, 0.5 / np.sqrt(pi))], -1),
        1: np.sqrt(3 / (4 * pi)) * np.stack([y, z, x], -1),
        2: np.stack(
            [
                0.5 * np.sqrt(15 / pi) * x * y,
                0.5 * np.sqrt(15 / pi) * y * z,
                0.25 * np.sqrt(5 / pi) * (3 * z**2 - 1),
                0.5 * np.sqrt(15 / pi) * x * z,
                0.25 * np.sqrt(15 / pi) * (x**2 - y**2),
            ],
            -1,
        ),
        # o3_mu = -3 and +3
        3: np.stack(
            [
                0.25 * np.sqrt(35 / (2 * pi)) * y * (3 * x**2 - y**2),
                0.25 * np.sqrt(35 / (2 * pi)) * x * (x**2 - 3 * y**2),
            ],
            -1,
        ),
    }


def test_spherical_harmonics_explicit_formulas():
    r = _vectors()
    sh = spherical_harmonics_array(3, r)
    ref = _reference_sh(np.asarray(r))
    for l in range(3):
        assert_close(sh[l], ref[l], atol=1e-14)
    assert_close(sh[3][:, [0, 6]], ref[3], atol=1e-14)


@pytest.mark.parametrize(
    "normalize, normalization", [(True, "integral"), (False, "component"), (True, "norm")]
)
def test_spherical_harmonics_match_e3nn_and_normalisation(normalize, normalization):
    r = _vectors()
    ls = list(range(L_MAX + 1))
    sh = spherical_harmonics_array(ls, r, normalize=normalize, normalization=normalization)
    ref = e3nn.sh(ls, r, normalize, normalization)
    # |Y_l|^2 on the unit sphere: integral (2l+1)/4pi, component 2l+1, norm 1
    scale = {
        "integral": lambda l: (2 * l + 1) / (4 * np.pi),
        "component": lambda l: 2 * l + 1,
        "norm": lambda l: 1.0,
    }[normalization]
    length = np.linalg.norm(np.asarray(r), axis=-1)
    for l in ls:
        assert_close(sh[l], ref[:, l**2 : (l + 1) ** 2] @ change_of_basis(l).T, atol=1e-12)
        # un-normalised: solid harmonics, homogeneous of degree l
        radius = 1.0 if normalize else length ** (2 * l)
        assert_close(jnp.sum(sh[l] ** 2, -1), scale(l) * radius, rtol=1e-12)


def test_spherical_harmonics_orders_and_errors():
    r = _vectors(4)
    assert list(spherical_harmonics_array([3, 1, 1], r)) == [1, 3]
    assert spherical_harmonics_array(2, r[0])[2].shape == (5,)
    with pytest.raises(ValueError, match="normalization"):
        spherical_harmonics_array(1, r, normalization="unit")
    with pytest.raises(ValueError, match=r"\(\.\.\., 3\)"):
        spherical_harmonics_array(1, r[:, :2])


def test_spherical_harmonics_finite_gradient_at_zero():
    def total(v):
        return sum(jnp.sum(y) for y in spherical_harmonics_array(L_MAX, v).values())

    vectors = jnp.array([[0.0, 0.0, 0.0], [1.0, -2.0, 0.5]])
    grad = jax.grad(total)(vectors)
    assert np.all(np.isfinite(grad))
    y0 = spherical_harmonics_array(2, jnp.zeros(3))
    assert_close(y0[0], [0.5 / np.sqrt(np.pi)])
    np.testing.assert_array_equal(y0[2], np.zeros(5))


@pytest.mark.parametrize(
    "dtype, tolerance",
    [pytest.param(jnp.float64, 1e-12, marks=pytest.mark.x64_only), (jnp.float32, 1e-5)],
)
@pytest.mark.parametrize("improper", [False, True])
def test_spherical_harmonics_equivariance(dtype, tolerance, improper):
    r = _vectors(dtype=dtype)
    for seed in range(2):
        R = random_rotation(jax.random.key(seed), dtype=dtype, improper=improper)
        assert R.dtype == dtype
        sh = spherical_harmonics_array(L_MAX, r)
        sh_rot = spherical_harmonics_array(L_MAX, r @ R.T)
        # every normalisation keeps the input precision (float32 stays float32 under x64)
        for normalization in ("integral", "component", "norm"):
            ys = spherical_harmonics_array(L_MAX, r, normalization=normalization).values()
            assert [y.dtype for y in ys] == [dtype] * (L_MAX + 1), normalization
        for l, D in enumerate(wigner_D_all(L_MAX, R)):
            assert D.dtype == dtype
            assert_close(sh_rot[l], sh[l] @ D.T, atol=tolerance, rtol=0)
            # proper blocks: parity (-1)**l under inversion, built into the polynomial D
            if improper:
                assert_close(D, (-1) ** l * wigner_D(l, -R), atol=tolerance)


# ------------------------------------------------------------------------------ wigner D


def test_random_rotation_is_rotation():
    R = random_rotation(jax.random.key(0), (5,))
    assert R.shape == (5, 3, 3)
    assert_close(R @ jnp.swapaxes(R, -1, -2), np.broadcast_to(np.eye(3), R.shape), atol=1e-14)
    assert_close(jnp.linalg.det(R), 1.0, atol=1e-14)
    improper = random_rotation(jax.random.key(0), improper=True)
    assert_close(jnp.linalg.det(improper), -1.0, atol=1e-14)


def test_wigner_matches_e3nn_conjugated_by_p():
    P = frame_permutation()
    R = random_rotation(jax.random.key(3))
    for l in (3,):
        # e3nn's D_from_matrix goes through Euler angles: accurate to ~1e-14 for generic R
        ref = e3nn.Irrep(l, 1).D_from_matrix(P @ R @ P.T)
        assert_close(wigner_D(l, R), ref, atol=1e-12)


def test_wigner_group_properties():
    R1, R2 = random_rotation(jax.random.key(4), (2,))
    for l in range(L_MAX + 1):
        D1, D2 = wigner_D(l, R1), wigner_D(l, R2)
        assert_close(wigner_D(l, R2 @ R1), D2 @ D1, atol=1e-13)
        assert_close(D1 @ D1.T, np.eye(2 * l + 1), atol=1e-13)
        assert_close(wigner_D(l, jnp.eye(3)), np.eye(2 * l + 1), atol=1e-14)
        # pseudotensors: det R under inversion, so the total parity is sigma * (-1)**l
        assert_close(
            wigner_D(l, -jnp.eye(3), sigma=-1), (-1) ** (l + 1) * np.eye(2 * l + 1), atol=1e-14
        )
        assert_close(wigner_D(l, R1, sigma=-1), D1, atol=1e-15)


def test_wigner_jit_vmap_grad():
    R = random_rotation(jax.random.key(5), (3,))
    batched = wigner_D(3, R)
    assert_close(jax.vmap(lambda r: wigner_D(3, r))(R), batched, atol=1e-15)
    grad = jax.grad(lambda r: jnp.sum(wigner_D(2, r, sigma=-1) ** 3))(R[0])
    assert np.all(np.isfinite(grad))


# ------------------------------------------------------------------------- Clebsch-Gordan


def test_selection_rule():
    assert selection_rule(1, 1, 2) and selection_rule(2, 3, 1) and not selection_rule(1, 1, 3)
    assert not np.any(clebsch_gordan(1, 1, 3))
    assert clebsch_gordan(1, 1, 3).shape == (3, 3, 7)


def test_clebsch_gordan_simple_cases():
    # l=1 x l=1 -> 0 is the dot product, -> 1 the cross product, in (y, z, x) order
    assert_close(clebsch_gordan(1, 1, 0)[:, :, 0], np.eye(3) / np.sqrt(3), atol=1e-15)
    a, b = np.array([0.3, -1.2, 2.0]), np.array([1.5, 0.4, -0.7])  # (x, y, z)
    P = frame_permutation()
    cross = np.einsum("ijk,i,j->k", clebsch_gordan(1, 1, 1), P @ a, P @ b)
    assert_close(cross, P @ np.cross(a, b) / np.sqrt(6), atol=1e-15)
    assert not clebsch_gordan(1, 1, 1).flags.writeable


@pytest.mark.parametrize(
    "dtype, tolerance",
    [pytest.param(np.float64, 1e-12, marks=pytest.mark.x64_only), (np.float32, 1e-5)],
)
def test_clebsch_gordan_equivariance(dtype, tolerance):
    # numpy contractions: the point is the coefficients, not JAX
    R = random_rotation(jax.random.key(6), dtype=dtype)
    D = [np.asarray(d) for d in wigner_D_all(L_MAX, R)]
    rng = np.random.default_rng(7)
    for l1 in range(4):
        for l2 in range(4):
            x = rng.normal(size=2 * l1 + 1).astype(dtype)
            y = rng.normal(size=2 * l2 + 1).astype(dtype)
            for l3 in range(abs(l1 - l2), min(l1 + l2, L_MAX) + 1):
                cg = clebsch_gordan(l1, l2, l3).astype(dtype)
                out = np.einsum("ijk,i,j->k", cg, x, y)
                out_rot = np.einsum("ijk,i,j->k", cg, D[l1] @ x, D[l2] @ y)
                assert out_rot.dtype == dtype
                assert_close(out_rot, D[l3] @ out, atol=tolerance, rtol=0)


def test_clebsch_gordan_matches_e3nn_after_change_of_basis():
    rng = np.random.default_rng(0)
    for l1, l2, l3 in [(1, 2, 3), (2, 2, 2), (3, 2, 4), (4, 4, 0)]:
        x, y = rng.normal(size=2 * l1 + 1), rng.normal(size=2 * l2 + 1)  # e3nn basis
        ref = np.einsum("ijk,i,j->k", e3nn.clebsch_gordan(l1, l2, l3), x, y)
        ours = np.einsum(
            "ijk,i,j->k",
            clebsch_gordan(l1, l2, l3),
            change_of_basis(l1) @ x,
            change_of_basis(l2) @ y,
        )
        assert_close(ours, change_of_basis(l3) @ ref, atol=1e-14)
        assert_close(np.sum(clebsch_gordan(l1, l2, l3) ** 2), 1.0, rtol=1e-13)
        # invariance of CG tensors under the rotation P: the numbers are e3nn's
        assert_close(clebsch_gordan(l1, l2, l3), e3nn.clebsch_gordan(l1, l2, l3), atol=1e-14)


# ------------------------------------------------------------- featomic data conventions


def _load(name):
    metatensor = pytest.importorskip("metatensor")
    return metatensor.load(str(data_path(name)))


def test_featomic_l1_components_are_y_z_x():
    """Gradients of an l=1 expansion w.r.t. positions are symmetric Cartesian matrices.

    A neighbour at r contributes ``f(|r|) r`` to the l=1 block (up to constants), whose Jacobian
    ``f I + f' r r^T / |r|`` is symmetric. Reading ``o3_mu`` as ``(y, z, x)`` makes every
    gradient block symmetric; any other order or sign breaks it.
    """
    tensor = _load("spherical-expansion.mts")
    checked = 0
    for key, block in tensor.items():
        if key["o3_lambda"] != 1:
            continue
        assert list(block.components[0].values[:, 0]) == [-1, 0, 1]
        grad = block.gradient("positions")
        assert grad.components[0].names == ["xyz"]
        # (sample, xyz, o3_mu, n) -> (sample, n, xyz, xyz) with o3_mu reordered to (x, y, z)
        jac = np.moveaxis(grad.values[:, :, [2, 0, 1], :], -1, 1)
        assert_close(jac, np.swapaxes(jac, -1, -2), atol=1e-12)
        # the same check fails for the e3nn (x, y, z) reading, where the gradient is not zero
        # (a lone carbon only has its own, vanishing, self gradient)
        wrong = np.moveaxis(grad.values, -1, 1)
        if np.abs(jac).max() > 0:
            assert np.abs(wrong - np.swapaxes(wrong, -1, -2)).max() > 1e-3 * np.abs(jac).max()
            checked += 1
    assert checked >= 2


def _single_neighbour_pairs(tensor, l_max):
    """(pair vector r, {l: values (2l+1, n)}) for centres with exactly one neighbour of a type.

    ``strain`` gradients are ``dV/de_ab = sum_pairs dV/dr_a r_b``; with one neighbour (and a
    different centre type, so no self term) ``dV/dr`` is the ``positions`` gradient of that
    neighbour, so ``r`` follows by least squares.
    """
    pairs = []
    keys = tensor.keys
    for center, neighbor in {(int(k["center_type"]), int(k["neighbor_type"])) for k in keys}:
        if center == neighbor:
            continue
        blocks = {
            l: tensor.block(o3_lambda=l, center_type=center, neighbor_type=neighbor)
            for l in range(l_max + 1)
        }
        pos, strain = blocks[1].gradient("positions"), blocks[1].gradient("strain")
        for s, (_, atom) in enumerate(blocks[1].samples.values):
            rows = np.flatnonzero(pos.samples.values[:, 0] == s)
            others = [row for row in rows if pos.samples.values[row, 2] != atom]
            if len(others) != 1:
                continue
            g = pos.values[others[0]]  # (xyz, o3_mu, n)
            st = strain.values[np.flatnonzero(strain.samples.values[:, 0] == s)[0]]
            design = np.einsum("amn,bc->abmnc", g, np.eye(3)).reshape(-1, 3)
            r, *_ = np.linalg.lstsq(design, st.reshape(-1), rcond=None)
            assert_close(design @ r, st.reshape(-1), atol=1e-12)
            pairs.append((r, {l: blocks[l].values[s] for l in blocks}))
    return pairs


def test_featomic_expansion_is_radial_times_our_harmonics():
    """featomic's l = 0..4 blocks are ``c_nl(|r|) Y_lm(r_hat)`` with our Y, for one neighbour."""
    pairs = _single_neighbour_pairs(_load("qm7-spherical-expansion.mts"), l_max=4)
    assert len(pairs) > 20
    for r, values in pairs:
        sh = spherical_harmonics_array(4, r)
        for l, v in values.items():
            y = np.asarray(sh[l])
            radial = y @ v / (y @ y)
            # float32: our harmonics are rounded to ~1e-7 relative
            atol = tol(1e-14, 1e-6) * np.abs(v).max() + 1e-15
            np.testing.assert_allclose(v, np.outer(y, radial), atol=atol)


def test_featomic_uses_integral_normalisation():
    """The l-dependence of featomic's radial factors is exactly that of orthonormal harmonics.

    A Gaussian density ``exp(-|x - r|^2 / 2 s^2)`` expands on orthonormal ``Y_lm`` as
    ``4 pi exp(-(r^2 + x^2) / 2 s^2) i_l(r x / s^2) Y_lm(r_hat) Y_lm(x_hat)``; projected on the
    GTO radial basis (cutoff 3.5, 4 functions, width 0.3) the coefficients are ``M g_l(r)`` with
    the same basis-mixing matrix M for every l. Fitting M on l = 0 predicts the l > 0 data with a
    scale s_l = 1; component normalisation would give sqrt(4 pi / (2l + 1)).
    """
    special = pytest.importorskip("scipy.special")
    integrate = pytest.importorskip("scipy.integrate")
    pairs = _single_neighbour_pairs(_load("qm7-spherical-expansion.mts"), l_max=4)
    # distinct distances inside the flat part of the cutoff function (cutoff 3.5, width 0.5)
    by_distance = {}
    for r, values in pairs:
        if np.linalg.norm(r) < 3.0:
            by_distance.setdefault(round(float(np.linalg.norm(r)), 3), (r, values))
    chosen = list(by_distance.values())[:8]
    assert len(chosen) >= 6
    width, cutoff, n_radial = 0.3, 3.5, 4

    def gto_integral(l, k, distance):
        sigma_k = cutoff * max(np.sqrt(k), 1) / n_radial

        def integrand(x):
            arg = distance * x / width**2
            # i_l(arg) exp(-arg), with the remaining exponent combined to avoid overflow
            bessel = special.ive(l + 0.5, arg) * np.sqrt(np.pi / (2 * arg))
            return (
                x ** (2 + k)
                * np.exp(-(x**2) / (2 * sigma_k**2))
                * np.exp(-((distance - x) ** 2) / (2 * width**2))
                * bessel
            )

        return integrate.quad(integrand, 0, np.inf, epsabs=0, epsrel=1e-12, limit=200)[0]

    def coefficients(l):
        data, model = [], []
        for r, values in chosen:
            y = np.asarray(spherical_harmonics_array([l], r)[l])
            data.append(y @ values[l] / (y @ y))
            model.append([gto_integral(l, k, np.linalg.norm(r)) for k in range(n_radial)])
        return np.array(data), np.array(model)

    data0, model0 = coefficients(0)
    mixing, *_ = np.linalg.lstsq(model0, data0, rcond=None)
    # float32: the data are projected on our harmonics, rounded to ~1e-7 relative
    np.testing.assert_allclose(model0 @ mixing, data0, rtol=tol(1e-10, 1e-5), atol=1e-12)
    for l in (1, 2, 4):
        data, model = coefficients(l)
        predicted = model @ mixing
        scale = np.sum(predicted * data) / np.sum(predicted**2)
        np.testing.assert_allclose(scale, 1.0, atol=tol(1e-9, 1e-5))
        np.testing.assert_allclose(predicted, data, atol=tol(1e-9, 1e-5) * np.abs(data).max())
