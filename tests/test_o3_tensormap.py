"""eqx_tensor.o3 on TensorMaps: spherical harmonics, rotate/invert, equivariance_error, e3nn-jax.

Rotated featomic data is not available, so the real spherical expansions are checked through the
group properties of ``rotate``; its meaning is pinned by ``rotate(sh(r), R) == sh(R r)``.
"""

import e3nn_jax as e3nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import data_path
from helpers import FLOAT, assert_close, from_metatensor, tol

import eqx_tensor as eqt
from eqx_tensor import o3


@pytest.fixture(scope="module")
def expansion():
    """featomic spherical expansion, 12 blocks, l <= 2, positions gradients (numpy values in
    the run's precision, so that exact checks stay exact in float32)."""
    metatensor = pytest.importorskip("metatensor")
    tensor = from_metatensor(metatensor.load(str(data_path("spherical-expansion.mts"))))
    return tensor.to(dtype=FLOAT)


@pytest.fixture(scope="module")
def vectors():
    return jax.random.normal(jax.random.key(0), (6, 3))


def _leaves_close(a, b, atol):
    """Every leaf within ``atol`` (float64), or float32's tolerance (exact if ``atol`` is 0)."""
    assert jax.tree_util.tree_structure(a) == jax.tree_util.tree_structure(b)
    for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)):
        assert_close(np.asarray(x), np.asarray(y), atol=atol, rtol=0, x32=1e-5 if atol else 0)


def _max_abs(tensor):
    return max(float(np.abs(np.asarray(x)).max()) for x in jax.tree_util.tree_leaves(tensor))


# ------------------------------------------------------------------- spherical harmonics


def test_spherical_harmonics_tensormap(vectors):
    samples = eqt.Labels(["pair"], np.arange(10, 16).reshape(-1, 1))
    tensor = o3.spherical_harmonics(vectors, [0, 2], samples=samples, gradients=True)
    assert tensor.keys == eqt.Labels(["o3_lambda", "o3_sigma"], np.array([[0, 1], [2, 1]]))
    block = tensor.block(o3_lambda=2)
    assert block.samples == samples and block.values.shape == (6, 5, 1)
    assert block.components[0] == eqt.Labels(["o3_mu"], np.arange(-2, 3).reshape(-1, 1))
    assert_close(block.values[..., 0], o3.spherical_harmonics_array(2, vectors)[2])
    gradient = block.gradient("positions")
    assert gradient.values.shape == (6, 3, 5, 1)
    assert [c.names[0] for c in gradient.components] == ["xyz", "o3_mu"]
    # explicit gradient == finite differences (float32: a larger step, the error ~2e-5)
    eps = tol(1e-6, 3e-3)
    shift = jnp.zeros_like(vectors).at[:, 1].set(eps)
    fd = (
        o3.spherical_harmonics_array(2, vectors + shift)[2]
        - o3.spherical_harmonics_array(2, vectors - shift)[2]
    ) / (2 * eps)
    np.testing.assert_allclose(gradient.values[:, 1, :, 0], fd, atol=tol(1e-8, 1e-4))
    with pytest.raises(ValueError, match=r"\(n, 3\)"):
        o3.spherical_harmonics(vectors[0], 2)


def test_spherical_harmonics_gradient_finite_at_zero():
    tensor = o3.spherical_harmonics(jnp.zeros((2, 3)), 2, gradients=True)
    for block in tensor.blocks():
        assert np.all(np.isfinite(block.gradient("positions").values))


@pytest.mark.parametrize("improper", [False, True])
def test_rotate_spherical_harmonics_is_harmonics_of_rotated(vectors, improper):
    R = o3.random_rotation(jax.random.key(1), improper=improper)
    tensor = o3.spherical_harmonics(vectors, 3, gradients=True)
    expected = o3.spherical_harmonics(vectors @ R.T, 3, gradients=True)
    _leaves_close(o3.rotate(tensor, R), expected, atol=1e-13)


def test_invert_spherical_harmonics(vectors):
    tensor = o3.spherical_harmonics(vectors, 3, gradients=True)
    _leaves_close(o3.invert(tensor), o3.spherical_harmonics(-vectors, 3, gradients=True), 1e-14)


# -------------------------------------------------------------------- rotate / invert


def test_rotate_real_expansion_group_properties(expansion):
    R1, R2 = o3.random_rotation(jax.random.key(2), (2,))
    once = o3.rotate(expansion, R1)
    assert once.keys == expansion.keys
    changes = [np.abs(np.asarray(a.values) - b.values).max() for a, b in zip(once, expansion)]
    assert max(changes) > 1e-3
    _leaves_close(o3.rotate(once, R2), o3.rotate(expansion, R2 @ R1), atol=1e-13)
    _leaves_close(o3.rotate(o3.rotate(expansion, R1), R1.T), expansion, atol=1e-13)
    _leaves_close(o3.rotate(expansion, jnp.eye(3)), expansion, atol=1e-15)
    # rotations preserve the norm of every o3_mu vector, gradients included
    for before, after in zip(expansion.blocks(), once.blocks()):
        assert_close(
            np.linalg.norm(after.values, axis=1), np.linalg.norm(before.values, axis=1), rtol=1e-12
        )
        g0, g1 = before.gradient("positions").values, after.gradient("positions").values
        assert_close(
            np.linalg.norm(g1, axis=(1, 2)), np.linalg.norm(g0, axis=(1, 2)), rtol=1e-12, atol=1e-15
        )


def test_invert_real_expansion(expansion):
    inverted = o3.invert(expansion)
    _leaves_close(o3.invert(inverted), expansion, atol=0)
    _leaves_close(inverted, o3.rotate(expansion, -jnp.eye(3)), atol=1e-15)
    for key, block in inverted.items():
        parity = key["o3_sigma"] * (-1) ** key["o3_lambda"]
        np.testing.assert_array_equal(block.values, parity * expansion.block(key).values)
        # one more sign for the xyz axis of the positions gradient
        np.testing.assert_array_equal(
            block.gradient("positions").values,
            -parity * expansion.block(key).gradient("positions").values,
        )


def test_rotate_invariant_tensor_only_rotates_xyz():
    metatensor = pytest.importorskip("metatensor")
    radial = from_metatensor(metatensor.load(str(data_path("radial-spectrum.mts"))))
    R = o3.random_rotation(jax.random.key(3), improper=True)
    rotated = o3.rotate(radial, R)
    for before, after in zip(radial.blocks(), rotated.blocks()):
        assert_close(after.values, before.values, atol=0)
        grad = before.gradient("positions").values  # (sample, xyz, n)
        assert_close(
            after.gradient("positions").values, np.einsum("ab,sbn->san", R, grad), atol=1e-14
        )


def test_rotate_is_jittable_and_pseudotensors_follow_det(vectors):
    pseudo = _cross_product(
        o3.spherical_harmonics(vectors, 1), o3.spherical_harmonics(vectors[::-1], 1)
    )
    assert pseudo.keys.entry(0) == (1, -1)
    R = o3.random_rotation(jax.random.key(4))
    jitted = jax.jit(o3.rotate)(pseudo, -R)
    _leaves_close(jitted, o3.rotate(pseudo, -R), atol=1e-15)
    # pseudovector: rotates with R, no sign under inversion
    _leaves_close(jitted, o3.rotate(pseudo, R), atol=1e-14)


def test_rotate_errors(vectors):
    tensor = o3.spherical_harmonics(vectors, 1)
    only_lambda = eqt.TensorMap(eqt.Labels(["o3_lambda"], np.array([[0], [1]])), tensor.blocks())
    with pytest.raises(ValueError, match="'o3_sigma' is missing"):
        o3.rotate(only_lambda, jnp.eye(3))
    block = tensor.block(1)
    wrong = eqt.TensorMap(eqt.Labels(["o3_lambda", "o3_sigma"], np.array([[2, 1]])), [block])
    with pytest.raises(ValueError, match=r"must be \[-2, -1, 0, 1, 2\]"):
        o3.invert(wrong)
    no_keys = eqt.TensorMap(eqt.Labels(["l"], np.array([[1]])), [block])
    with pytest.raises(ValueError, match="no 'o3_lambda'"):
        o3.rotate(no_keys, jnp.eye(3))
    with pytest.raises(ValueError, match=r"\(3, 3\)"):
        o3.rotate(tensor, jnp.eye(2))


# --------------------------------------------------------------------- equivariance_error


def _cross_product(a, b):
    """CG (1 x 1 -> 1) of the l=1 blocks of two TensorMaps: a pseudovector TensorMap."""
    cg = jnp.asarray(o3.clebsch_gordan(1, 1, 1))
    x, y = a.block(o3_lambda=1), b.block(o3_lambda=1)
    values = jnp.einsum("ijk,sip,sjp->skp", cg, x.values, y.values)
    sigma = o3.product_sigma(1, 1, 1, 1, 1)
    keys = eqt.Labels(["o3_lambda", "o3_sigma"], np.array([[1, sigma]]))
    return eqt.TensorMap(keys, [eqt.TensorBlock(values, x.samples, x.components, x.properties)])


def test_equivariance_error_small_for_equivariant_functions(vectors):
    def harmonics(v):
        return o3.spherical_harmonics(v, 3, gradients=True)

    assert o3.equivariance_error(harmonics, vectors, input_kinds="vector") < tol(1e-12, 1e-5)

    def cross(u, v):
        return _cross_product(o3.spherical_harmonics(u, 1), o3.spherical_harmonics(v, 1))

    args = (vectors, 2 * vectors[::-1] + 1)
    assert o3.equivariance_error(cross, args, input_kinds="vector") < tol(1e-12, 1e-5)


def test_equivariance_error_float32(vectors):
    v32 = vectors.astype(jnp.float32)
    error = o3.equivariance_error(lambda v: o3.spherical_harmonics(v, 3), v32, input_kinds="vector")
    assert error < 1e-5


def test_equivariance_error_invariant_outputs(expansion):
    def norms(tensor):
        # sum over o3_mu of squares: rotation and inversion invariant
        return {
            str(i): jnp.sum(jnp.asarray(b.values) ** 2, axis=1)
            for i, b in enumerate(tensor.blocks())
        }

    # float32: relative to the size of the squares
    error = o3.equivariance_error(norms, expansion, output_kinds="scalar")
    assert error < tol(1e-12, 1e-5 * _max_abs(expansion) ** 2)


def test_equivariance_error_large_for_non_equivariant_function(expansion, vectors):
    def square(tensor):
        return jax.tree_util.tree_map(lambda x: jnp.asarray(x) ** 2, tensor)

    assert o3.equivariance_error(square, expansion) > 1e-3 * _max_abs(expansion) ** 2

    # a pseudovector labelled as a vector is equivariant under rotations but not inversion
    def mislabelled(u, v):
        pseudo = _cross_product(o3.spherical_harmonics(u, 1), o3.spherical_harmonics(v, 1))
        return eqt.TensorMap(
            eqt.Labels(["o3_lambda", "o3_sigma"], np.array([[1, 1]])), pseudo.blocks()
        )

    args = (vectors, vectors[::-1])
    kinds = {"input_kinds": "vector"}
    assert o3.equivariance_error(mislabelled, args, inversion=False, **kinds) < tol(1e-12, 1e-5)
    assert o3.equivariance_error(mislabelled, args, **kinds) > 1e-2


# ------------------------------------------------------------------------- e3nn interop


def test_to_irreps_array_matches_e3nn_spherical_harmonics(vectors):
    tensor = o3.spherical_harmonics(vectors, 3)
    array = o3.to_irreps_array(tensor)
    assert array.irreps == e3nn.Irreps("0e + 1o + 2e + 3o")
    reference = e3nn.spherical_harmonics(
        array.irreps, e3nn.IrrepsArray("1o", vectors), True, "integral"
    )
    assert_close(array.array, reference.array, atol=1e-14)


def test_irreps_array_round_trip_and_rotation(expansion):
    # the O-O blocks share their samples: one IrrepsArray of 5x0e + 5x1o + 5x2e
    blocks = [expansion.block(o3_lambda=l, center_type=8, neighbor_type=8) for l in range(3)]
    keys = eqt.Labels(["o3_lambda", "o3_sigma"], np.array([[0, 1], [1, 1], [2, 1]]))
    tensor = eqt.remove_gradients(eqt.TensorMap(keys, blocks))
    array = o3.to_irreps_array(tensor)
    assert array.irreps == e3nn.Irreps("5x0e + 5x1o + 5x2e") and array.shape == (2, 45)
    back = o3.from_irreps_array(array, blocks[0].samples, blocks[0].properties)
    assert back.keys == keys
    for a, b in zip(back.blocks(), blocks):
        assert a.samples == b.samples and a.properties == b.properties
        assert not a.gradients_list()
        assert_close(a.values, b.values, atol=1e-15)


def test_rotation_agrees_with_e3nn_frame(vectors):
    """Our rotation, converted, is e3nn's action of the same matrix (here through e3nn's own
    spherical harmonics of the rotated vectors, improper rotation included)."""
    R = o3.random_rotation(jax.random.key(5), improper=True)
    rotated = o3.to_irreps_array(o3.rotate(o3.spherical_harmonics(vectors, 3), R))
    reference = e3nn.spherical_harmonics(
        rotated.irreps, e3nn.IrrepsArray("1o", vectors @ R.T), True, "integral"
    )
    assert_close(rotated.array, reference.array, atol=1e-13)


def test_e3nn_layer_inside_tensormap_function(vectors):
    def product(u, v):
        a = o3.to_irreps_array(o3.spherical_harmonics(u, 2))
        b = o3.to_irreps_array(o3.spherical_harmonics(v, 1))
        return o3.from_irreps_array(e3nn.tensor_product(a, b).regroup())

    product = jax.jit(product)
    out = product(vectors, vectors[::-1])
    assert {tuple(k) for k in out.keys} >= {(1, -1), (3, 1), (0, 1)}
    args = (vectors, vectors[::-1])
    assert o3.equivariance_error(product, args, input_kinds="vector") < tol(1e-12, 1e-5)


def test_irreps_array_errors(expansion, vectors):
    with pytest.raises(ValueError, match="keys_to_properties"):
        o3.to_irreps_array(expansion)
    repeated = e3nn.IrrepsArray("1x0e + 1x0e", jnp.ones((2, 2)))
    with pytest.raises(ValueError, match="regroup"):
        o3.from_irreps_array(repeated)
    array = o3.to_irreps_array(o3.spherical_harmonics(vectors, 1))
    with pytest.raises(ValueError, match="multiplicity 1"):
        o3.from_irreps_array(array, properties=eqt.Labels.range("n", 2))
    with pytest.raises(ValueError, match="samples"):
        o3.from_irreps_array(array, samples=eqt.Labels.range("s", 2))
