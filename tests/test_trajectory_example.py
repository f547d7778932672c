"""The 12-body trajectory study (``examples/trajectory.py``): simulation, models, metrics."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))
import trajectory as T
from helpers import SLOW_WITH_X64, assert_close, tol


@pytest.fixture(scope="module")
def data():
    return T.simulate()


@pytest.fixture(scope="module")
def parts(data):
    return T.split(data)


# ----------------------------------------------------------------------------- simulation
def test_simulation_is_seeded_and_deterministic():
    a, b, c = T.simulate(120, seed=3), T.simulate(120, seed=3), T.simulate(120, seed=4)
    assert a["positions"].shape == (120, 12, 3) and a["positions"].dtype == np.float64
    np.testing.assert_array_equal(a["positions"], b["positions"])
    np.testing.assert_array_equal(a["kicks"], b["kicks"])
    assert np.abs(a["positions"] - c["positions"]).max() > 0.01
    # kicks on the steps t = 24, 49, 74, 99; the particles stay in the plane z = 0
    assert np.nonzero(a["kicks"])[0].tolist() == [24, 49, 74, 99]
    assert np.all(a["positions"][..., 2] == 0)


def test_displacement_is_the_documented_function_except_at_kicks(data):
    positions, kicks = data["positions"], data["kicks"]
    steps = positions[1:] - positions[:-1]
    predicted = T.displacement(positions[:-1])
    error = np.abs(steps - predicted).max(axis=(1, 2))
    assert error[~kicks[:-1]].max() < 1e-14
    # a kick is not a function of the positions: far above the step's round-off
    assert error[kicks[:-1]].min() > 1e-3
    assert kicks.sum() == (len(positions) - 1) // 25 and not kicks[-1]


def test_displacement_is_minus_eta_grad_potential(data):
    model = T.SpringModel()
    frame = data["positions"][30]
    h = 1e-6
    gradient = np.zeros_like(frame)
    for i in range(12):
        for c in range(3):
            step = np.zeros_like(frame)
            step[i, c] = h
            gradient[i, c] = (T.potential(frame + step) - T.potential(frame - step)) / (2 * h)
    np.testing.assert_allclose(T.displacement(frame), -model.step * gradient, atol=1e-11)
    # phi' is the derivative of phi, and both vanish beyond the cutoff (< the radius 3.5)
    r = np.linspace(0.05, 4.0, 400)
    numeric = (T.pair_potential(r + 1e-6) - T.pair_potential(r - 1e-6)) / 2e-6
    np.testing.assert_allclose(T.pair_potential_derivative(r), numeric, atol=1e-7)
    assert model.cutoff < T.RADIUS
    beyond = np.linspace(model.cutoff, 10, 50)
    assert np.all(T.pair_potential(beyond) == 0) and np.all(
        T.pair_potential_derivative(beyond) == 0
    )


def test_displacement_is_euclidean_and_permutation_equivariant(data):
    x = data["positions"][100:103]
    rng = np.random.default_rng(0)
    q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    R = -q  # with an inversion
    moved = x @ R.T + rng.normal(size=3)
    np.testing.assert_allclose(T.displacement(moved), T.displacement(x) @ R.T, atol=1e-14)
    perm = rng.permutation(12)
    np.testing.assert_allclose(T.displacement(x[:, perm]), T.displacement(x)[:, perm], atol=1e-15)


def test_cloud_stays_within_the_radius(data):
    x = data["positions"]
    r = np.linalg.norm(x[:, :, None] - x[:, None], axis=-1)
    r = r[:, ~np.eye(12, dtype=bool)]
    # every particle has its 11 neighbours within 3.5 (the tutorial's num_neighbors) ...
    assert r.max() < T.RADIUS
    # ... and no two particles come close (the repulsion works)
    assert r.min() > 0.4


def test_split_and_zero_predictor(data, parts):
    train, test = parts["train"], parts["test"]
    assert train["x"].shape == (1637, 12, 3) and test["x"].shape == (410, 12, 3)
    positions = data["positions"]
    np.testing.assert_array_equal(test["x"][-1], positions[-2])
    np.testing.assert_array_equal(train["dx"][5], positions[6] - positions[5])
    np.testing.assert_array_equal(test["kicks"], data["kicks"][1637:-1])
    keep = ~test["kicks"]
    expected = sum(np.sum(test["dx"][t] ** 2) for t in np.nonzero(keep)[0]) / (keep.sum() * 36)
    assert T.zero_predictor_mse(test) == pytest.approx(expected, rel=1e-12)
    assert T.zero_predictor_mse(test, exclude_kicks=False) > 10 * expected


def test_data_are_learnable_by_a_radius_3_5_message_passing_model(parts):
    # a linear radial-basis pair model (equivariant, local) fitted by least squares beats the
    # zero predictor by more than three orders of magnitude on the test frames
    coefficients = T.fit_pair_forces(parts["train"])
    test = parts["test"]
    keep = ~test["kicks"]
    prediction = T.pair_forces_predict(coefficients, test["x"][keep])
    mse = np.mean((prediction - test["dx"][keep]) ** 2)
    assert mse < 1e-3 * T.zero_predictor_mse(test)


# ----------------------------------------------------------------------------- metrics
def test_r2_score_against_a_hand_computation():
    y = np.array([1.0, 2.0, 4.0, 5.0])
    y_hat = np.array([1.5, 2.0, 3.0, 5.5])
    # mean 3, total sum of squares 4 + 1 + 1 + 4 = 10, residuals 0.25 + 0 + 1 + 0.25 = 1.5
    assert T.r2_score(y, y_hat) == pytest.approx(1 - 1.5 / 10, rel=1e-15)
    assert T.r2_score(y, y) == 1.0
    assert T.r2_score(y, np.full(4, 3.0)) == 0.0
    assert math.isnan(T.r2_score(np.ones(3), np.zeros(3)))


def test_correlation_columns_pick_the_tutorials_coordinates():
    rng = np.random.default_rng(1)
    y = rng.normal(size=(20, 12, 3))
    y_hat = y.copy()
    y_hat[:, 6, 0] += 0.5  # only particle 7's x is off
    r2 = T.correlation_r2(y_hat, y)
    assert r2["p12 y"] == 1.0
    expected = T.r2_score(y[:, 6, 0], y_hat[:, 6, 0])
    assert r2["p7 x"] == pytest.approx(expected) and expected < 1
    assert r2["cm"] == pytest.approx(T.r2_score(y.mean((1, 2)), y_hat.mean((1, 2))))
    # the first particle is untouched
    assert r2["p1 cm"] == 1.0
    # pair forces keep the centre of mass of dx at zero: the column is constant, r^2 is nan
    y[:, :, :] -= y.mean(axis=1, keepdims=True)
    assert math.isnan(T.correlation_r2(y_hat, y)["cm"])


def test_batches_pad_with_zero_weights():
    index, weight = T._batches(70, 32)
    assert index.shape == weight.shape == (3, 32)
    assert weight.sum() == 70 and np.all(weight[2, 6:] == 0)
    np.testing.assert_array_equal(index.reshape(-1)[:70], np.arange(70))


# ----------------------------------------------------------------------------- models
def _rotation_and_translation(seed: int, dtype):
    """A random rotation composed with the inversion (``det = -1``), and a translation."""
    # NumPy: each eager jax.random call with a new shape costs a compilation
    rng = np.random.default_rng(seed)
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    R = -q * np.linalg.det(q)
    return jnp.asarray(R, dtype), jnp.asarray(rng.normal(size=3), dtype)


def _random_params(model, x, seed=0):
    """Standard normal parameters of the right structure, without compiling ``model.init``."""
    shapes = jax.eval_shape(model._init, jax.random.key(0), x)
    leaves, treedef = jax.tree_util.tree_flatten(shapes)
    rng = np.random.default_rng(seed)
    values = [jnp.asarray(rng.normal(size=leaf.shape), leaf.dtype) for leaf in leaves]
    return jax.tree_util.tree_unflatten(treedef, values)


SMALLER = {"irreps_hidden": "4x0e+4x1o+4x1e+2x2e", "lmax": 2}


@pytest.mark.parametrize(
    ("dtype", "tolerance", "settings"),
    # smaller irreps by default (one compilation less of the full model), the tutorial's model
    # in the slow step; float64 arrays exist only with x64 on
    [
        pytest.param(jnp.float64, 1e-12, SMALLER, marks=pytest.mark.x64_only),
        pytest.param(jnp.float32, 1e-5, SMALLER, marks=SLOW_WITH_X64),
        pytest.param(jnp.float64, 1e-12, {}, marks=[pytest.mark.slow, pytest.mark.x64_only]),
    ],
    ids=["f64", "f32", "f64-tutorial"],
)
def test_polynomial_model_is_equivariant(data, dtype, tolerance, settings):
    model = T.polynomial_model(**settings)
    x = jnp.asarray(data["positions"][[40, 700]], dtype)
    params = _random_params(model, x)
    assert all(leaf.dtype == dtype for leaf in jax.tree_util.tree_leaves(params))
    R, t = _rotation_and_translation(1, dtype)
    perm = np.random.default_rng(2).permutation(12)
    # one call on the frames x, R x + t and the permuted x: one compilation
    out = jax.jit(model.apply)(params, jnp.concatenate([x, x @ R.T + t, x[:, perm]]))
    assert out.dtype == dtype and out.shape == (6, 12, 3)
    out, moved, permuted = out[:2], out[2:4], out[4:]
    scale = float(jnp.abs(out).max())
    assert scale > 1e-3
    assert float(jnp.abs(moved - out @ R.T).max()) < tolerance * scale
    assert float(jnp.abs(permuted - out[:, perm]).max()) < tolerance * scale


def test_polynomial_model_matches_a_direct_computation(data):
    # the same polynomial written with NumPy for one frame: node features = sum of the solid
    # harmonics of the pair vectors / sqrt(11), two fully connected products, the mean over
    # neighbours. With hidden irreps 1x0e + 1x1o and lmax 1 the products fit on a few lines.
    model = T.polynomial_model(irreps_hidden="1x0e+1x1o", lmax=1)
    x = jnp.asarray(data["positions"][[10]])
    # weights 1 (their layout is the kernel's business): every path counts once
    params = jax.tree_util.tree_map(jnp.ones_like, _random_params(model, x))
    assert sorted(w.size for w in jax.tree_util.tree_leaves(params)) == [2, 4]
    out = np.asarray(jax.jit(model.apply)(params, x)[0])

    frame = np.asarray(x[0])
    d = frame[None, :, :] - frame[:, None, :]  # d[i, j] = x_j - x_i: pair (i first, j second)
    r = np.linalg.norm(d, axis=-1)
    mask = ~np.eye(12, dtype=bool) & (r < T.RADIUS)
    # solid harmonics, component normalisation: Y_0 = 1, Y_1 = sqrt(3) r (any fixed basis of
    # the vectors does here: the products below are basis independent)
    ys = mask.astype(float)
    yv = np.sqrt(3) * d * mask[..., None]
    s = ys.sum(axis=1)[None, :] / np.sqrt(11)  # features of the second atom j
    v = yv.sum(axis=1)[None, :, :] / np.sqrt(11)
    # fully connected products: component-normalised CG (0x0->0: 1, 1x1->0: 1/sqrt(3),
    # 0x1->1 and 1x0->1: 1), "element" path normalisation (1/sqrt(2): two paths per output)
    h_s = (s * ys + np.sum(v * yv, -1) / np.sqrt(3)) / np.sqrt(2)
    h_v = (s[..., None] * yv + v * ys[..., None]) / np.sqrt(2)
    h_s = np.sum(h_s * mask, axis=1) / np.sqrt(11)
    h_v = np.sum(h_v * mask[..., None], axis=1) / np.sqrt(11)
    o = (h_s[None, :, None] * yv + h_v[None, :, :] * ys[..., None]) / np.sqrt(2)
    o = np.sum(o * mask[..., None], axis=1) / mask.sum(axis=1)[:, None]
    assert_close(out, o, atol=1e-12)


def test_training_reduces_the_loss_with_one_compilation(parts):
    small = {
        "train": {k: v[:24] for k, v in parts["train"].items()},
        "test": {k: v[:8] for k, v in parts["test"].items()},
    }
    scale = math.sqrt(T.zero_predictor_mse(parts["train"]))
    model = T.polynomial_model(output_scale=scale, irreps_hidden="2x0e+2x1o", lmax=1)
    params = _random_params(model, jnp.asarray(small["train"]["x"][:8]))
    params, logs = T.train(
        model, small, epochs=6, lr=1e-2, batch_size=8, params=params, progress=False
    )
    assert logs["compilations"] == 1
    assert logs["train_loss"][-1] < 0.5 * logs["train_loss"][0]
    assert np.all(np.isfinite(logs["test_loss"]))
    # the table row
    row = T.evaluate(model, params, small, logs, batch_size=8)
    assert row["prediction"].shape == (8, 12, 3)
    assert row["test_mse"] == pytest.approx(logs["test_loss"][-1], rel=1e-6)
    # an absolute error: float32's relative to the size of the predictions
    scale = float(np.abs(row["prediction"]).max())
    assert row["equivariance"] < tol(1e-10, 1e-5 * scale)
    table = T.format_table([T.zero_predictor_row(small), row])
    assert f"| {model.name} |" in table and "| zero predictor |" in table


def test_mlp_is_not_equivariant_but_the_metric_sees_it(parts):
    model = T.mlp_model()
    x = parts["test"]["x"][:4]
    params = _random_params(model, jnp.asarray(x))
    assert params["params"]["Dense_0"]["kernel"].shape == (36, 64)
    assert T.equivariance_error(model, params, x, jax.random.key(1)) > 1e-2
