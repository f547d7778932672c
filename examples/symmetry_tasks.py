"""Simple tasks and symmetry (e3nn tutorial by Tess E. Smidt) with :mod:`eqx_tensor`.

Four points in the plane ``z = 0`` carry a spherical-harmonic signal up to ``l = 5``; an
equivariant network (:class:`eqx_tensor.nn.GatePointsNetwork`, irreps ``0e+1o+2e+3o+4e+5o`` in,
hidden and out) maps the input signals on the initial geometry to an output signal per point
whose peak marks the point's displacement. The tasks:

1. a rectangle to a square (the output is more symmetric than the input): learnt;
2. a square to a rectangle (less symmetric): impossible, the loss stops at the bound
   :func:`c4_bound` that every C4-equivariant output obeys;
3. the same with an ``x^2 - y^2`` (``o3_lambda = 2``, ``o3_mu = +2``) input on every point, which
   breaks the square's symmetry: learnt;
4. the same with the input learnt by gradient descent (the tutorial's penalties,
   :func:`input_penalty`): the learnt ``l = 2`` input is the ``x^2 - y^2`` component.

This module holds what the notebook ``notebooks/symmetry_tasks.ipynb`` needs, importable and
seeded: the geometry (:func:`square`, :func:`rectangle`, :func:`c4_rotation`), the signals
(:func:`signal_from_geometry`, :func:`evaluate_signal`, :func:`peak_directions`), the arrays /
TensorMap conversion (:func:`to_tensormap`, :func:`from_tensormap`), the model
(:func:`network`, :class:`PointModel`), the training steps (:func:`make_model_step`,
:func:`make_input_step`, :func:`train`, :func:`train_with_input`), the symmetry checks
(:func:`c4_symmetric_part`, :func:`c4_bound`, :func:`equivariance_error`) and the plots.

Layout and conventions
----------------------
A signal of the ``n`` points is an array ``(n, 36)``: the 36 real spherical-harmonic
coefficients ``l = 0..5``, ``o3_mu = -l..l`` each, concatenated (component ``l*l + l + mu``),
in metatensor's basis (``l = 1`` is ``(y, z, x)``; ``o3_mu = +2`` of ``l = 2`` is
``x^2 - y^2``, index 8, as in the tutorial). As a TensorMap it has keys
``(o3_lambda, o3_sigma) = (l, 1)`` (spherical-harmonic parity ``(-1)^l``) and blocks
``(n, 2l+1, 1)``. The signal on the unit sphere is ``f(u) = sum_lm c_lm Y_lm(u)`` with
*integral*-normalised harmonics (``o3.spherical_harmonics``' default).

The tutorial's ``SphericalTensor.from_geometry(d)`` is the signal whose peak is at ``d / |d|``
with value ``|d|``: ``c = |d| Y(d) / |Y(d)|^2`` (:func:`signal_from_geometry`), and
``|Y(u)|^2 = (lmax + 1)^2 / (4 pi)`` for every unit ``u`` (Unsoeld's theorem), so that
``f(d / |d|) = |d|``. With these conventions the losses are the tutorial's: task 2 stops at
``7.07e-4``, the odd-``l`` part of the targets, which C4 equivariance forbids.

Nothing here turns on ``jax_enable_x64``: the notebook does (the tutorial runs in float64);
the functions follow the dtype of their inputs / JAX's default float.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from eqx_tensor import Labels, TensorBlock, TensorMap, nn, o3
from eqx_tensor.atomistic import NeighborList, Systems, neighbor_list

__all__ = [
    "IRREPS",
    "L_MAX",
    "MAX_RADIUS",
    "N_COMPONENTS",
    "X2_MINUS_Y2",
    "X2_MINUS_Y2_INDEX",
    "PointModel",
    "c4_bound",
    "c4_permutation",
    "c4_rotation",
    "c4_symmetric_part",
    "component_index",
    "equivariance_error",
    "evaluate_signal",
    "features",
    "format_components",
    "from_tensormap",
    "input_penalty",
    "irreps",
    "make_input_step",
    "make_model_step",
    "mse",
    "network",
    "peak_directions",
    "peak_table",
    "plot_in_plane",
    "plot_losses",
    "plot_sphere_map",
    "plot_task",
    "rectangle",
    "signal_from_geometry",
    "sphere_grid",
    "square",
    "to_tensormap",
    "train",
    "train_with_input",
]

L_MAX = 5
IRREPS = "0e+1o+2e+3o+4e+5o"  # the tutorial's Rs = [(1, L) for L in range(6)], with parity
N_COMPONENTS = (L_MAX + 1) ** 2  # 36
MAX_RADIUS = 3.0
X2_MINUS_Y2 = (2, 2)  # (o3_lambda, o3_mu) of x^2 - y^2 in the real spherical harmonics

Array = Any


def component_index(o3_lambda: int, o3_mu: int) -> int:
    """Position of the component ``(o3_lambda, o3_mu)`` in a signal array ``(n, 36)``."""
    if not -o3_lambda <= o3_mu <= o3_lambda:
        raise ValueError(f"component_index: o3_mu={o3_mu} is not in [-{o3_lambda}, {o3_lambda}]")
    return o3_lambda * o3_lambda + o3_lambda + o3_mu


X2_MINUS_Y2_INDEX = component_index(*X2_MINUS_Y2)  # 8, the tutorial's input[:, :, 8]


def _lmax(signal: Array) -> int:
    """``lmax`` of a signal ``(..., (lmax+1)^2)``."""
    return math.isqrt(signal.shape[-1]) - 1


# =============================================================================== geometry
def square() -> np.ndarray:
    """The tutorial's unit square in the plane ``z = 0``, centred: ``(4, 3)`` float64.

    Points in order ``(-1/2, -1/2), (1/2, -1/2), (1/2, 1/2), (-1/2, 1/2)``: counter-clockwise.
    """
    points = np.array([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [1.0, 1.0, 0.0], [0.0, 1.0, 0.0]])
    return points - points.mean(axis=0)


def rectangle(sx: float = 0.5, sy: float = 1.5) -> np.ndarray:
    """The square scaled by ``(sx, sy, 0)``: the tutorial's ``0.5 x 1.5`` rectangle ``(4, 3)``."""
    points = square() * np.array([sx, sy, 0.0])
    return points - points.mean(axis=0)


def c4_rotation(dtype: Any = np.float64) -> np.ndarray:
    """The rotation by 90 degrees about ``z``: ``(3, 3)``, ``(x, y, z) -> (-y, x, z)``."""
    return np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]], dtype=dtype)


def c4_permutation(positions: np.ndarray, atol: float = 1e-6) -> np.ndarray:
    """``perm`` with ``R positions[i] == positions[perm[i]]`` for ``R`` = :func:`c4_rotation`.

    Args:
        positions: ``(n, 3)``.
        atol: tolerance of the match.

    Raises:
        ValueError: when the rotation does not map the points onto themselves (a rectangle).
    """
    positions = np.asarray(positions, dtype=np.float64)
    rotated = positions @ c4_rotation().T
    distance = np.linalg.norm(rotated[:, None] - positions[None], axis=-1)
    perm = np.argmin(distance, axis=1)
    if np.any(distance[np.arange(len(positions)), perm] > atol) or len(set(perm)) != len(perm):
        raise ValueError(
            "c4_permutation: the rotation by 90 degrees about z does not map these positions "
            "onto themselves; only a C4-symmetric geometry (the square) has a permutation"
        )
    return perm


# =============================================================================== signals
def from_tensormap(tensor: TensorMap, lmax: int = L_MAX) -> Array:
    """The signal array ``(n, (lmax+1)^2)`` of a TensorMap with blocks ``(l, 1)``
    ``(n, 2l+1, 1)`` (the other blocks are ignored)."""
    return jnp.concatenate(
        [tensor.block(o3_lambda=l, o3_sigma=1).values[:, :, 0] for l in range(lmax + 1)], axis=1
    )


def to_tensormap(signal: Array, samples: Labels | None = None) -> TensorMap:
    """The TensorMap of a signal ``(n, (lmax+1)^2)``: keys ``(l, 1)``, blocks ``(n, 2l+1, 1)``.

    Args:
        signal: the coefficients, components in the order of :func:`component_index`.
        samples: ``n`` sample labels; default ``Labels.range("point", n)``.
    """
    signal = jnp.asarray(signal)
    n, dim = signal.shape
    lmax = math.isqrt(dim) - 1
    if (lmax + 1) ** 2 != dim:
        raise ValueError(
            f"to_tensormap: signal has {dim} components, not (lmax + 1)^2 for an integer lmax"
        )
    samples = Labels.range("point", n) if samples is None else samples
    keys = Labels(["o3_lambda", "o3_sigma"], np.array([[l, 1] for l in range(lmax + 1)]))
    blocks = [
        TensorBlock(
            signal[:, l * l : (l + 1) ** 2, None],
            samples,
            [Labels(["o3_mu"], np.arange(-l, l + 1)[:, None])],
            Labels.range("property", 1),
        )
        for l in range(lmax + 1)
    ]
    return TensorMap(keys, blocks)


def signal_from_geometry(vectors: Array, lmax: int = L_MAX) -> Array:
    """The tutorial's ``SphericalTensor.from_geometry``: a signal per vector, peak at the vector.

    ``c = |d| Y(d) / |Y(d)|^2`` with integral-normalised ``Y`` (``o3.spherical_harmonics``), so
    that ``f(u) = c . Y(u)`` is largest at ``u = d / |d|`` where it equals ``|d|`` (a positive
    sum of Legendre polynomials of ``u . d / |d|``); the zero vector gives a zero signal.

    Args:
        vectors: ``(n, 3)`` Cartesian displacements.
        lmax: largest order.

    Returns:
        ``(n, (lmax+1)^2)``.
    """
    vectors = jnp.asarray(vectors)
    harmonics = from_tensormap(o3.spherical_harmonics(vectors, lmax), lmax)
    norm = jnp.linalg.norm(vectors, axis=-1, keepdims=True)
    # Unsoeld: sum_m Y_lm(u)^2 = (2l + 1) / (4 pi) on the unit sphere
    return norm * harmonics / ((lmax + 1) ** 2 / (4 * math.pi))


_CHUNK = 2048  # directions per call of the jitted harmonics: one compilation for every grid


@functools.partial(jax.jit, static_argnums=0)
def _harmonics_chunk(lmax: int, directions: Array) -> Array:
    return jnp.concatenate(list(o3.spherical_harmonics_array(lmax, directions).values()), axis=-1)


def _harmonics(lmax: int, directions: np.ndarray, dtype: Any) -> np.ndarray:
    """Integral-normalised ``Y_lm`` of directions ``(m, 3)``: ``(m, (lmax+1)^2)`` NumPy.

    Evaluated in zero-padded chunks of a fixed size: tracing the harmonics (e3nn-jax builds
    their polynomials symbolically) for every new grid shape would dominate the peak search.
    """
    directions = np.asarray(directions, dtype=dtype).reshape(-1, 3)
    m = directions.shape[0]
    padded = np.zeros((-(-m // _CHUNK) * _CHUNK, 3), dtype=dtype)
    padded[:m] = directions
    chunks = [np.asarray(_harmonics_chunk(lmax, c)) for c in padded.reshape(-1, _CHUNK, 3)]
    return np.concatenate(chunks)[:m]


def evaluate_signal(signal: Array, directions: Array) -> np.ndarray:
    """``f(u) = sum_lm c_lm Y_lm(u)`` for signals ``(n, dim)`` at directions ``(..., 3)``.

    Returns:
        ``(n, ...)`` NumPy: every signal at every direction (directions are normalised first).
    """
    signal = np.asarray(signal)
    directions = np.asarray(directions)
    harmonics = _harmonics(_lmax(signal), directions, signal.dtype)
    return (signal @ harmonics.T).reshape(signal.shape[:1] + directions.shape[:-1])


def _evaluate_each(signal: Array, directions: np.ndarray) -> np.ndarray:
    """Signal ``i`` of ``(n, dim)`` at its own directions ``(n, m, 3)``: ``(n, m)`` NumPy."""
    signal = np.asarray(signal)
    n, m, _ = directions.shape
    harmonics = _harmonics(_lmax(signal), directions, signal.dtype).reshape(n, m, -1)
    return np.einsum("nd,nmd->nm", signal, harmonics)


def sphere_grid(n_theta: int = 91, n_phi: int = 181) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``theta (n_theta,)`` (from ``+z``, ``0..pi``), ``phi (n_phi,)`` (``-pi..pi``) and the unit
    vectors ``(n_theta, n_phi, 3)`` of the grid."""
    theta = np.linspace(0.0, np.pi, n_theta)
    phi = np.linspace(-np.pi, np.pi, n_phi)
    t, p = np.meshgrid(theta, phi, indexing="ij")
    directions = np.stack([np.sin(t) * np.cos(p), np.sin(t) * np.sin(p), np.cos(t)], axis=-1)
    return theta, phi, directions


def _grid_around(centers: np.ndarray, width: float, n: int) -> np.ndarray:
    """Unit vectors ``(k, n * n, 3)`` within about ``width`` radians of each unit vector of
    ``centers`` ``(k, 3)``: a square grid on the tangent plane, projected on the sphere."""
    # an orthonormal frame (e1, e2) of the tangent plane at each center
    helper = np.where(np.abs(centers[:, :1]) < 0.9, [[1.0, 0.0, 0.0]], [[0.0, 1.0, 0.0]])
    e1 = np.cross(centers, helper)
    e1 /= np.linalg.norm(e1, axis=1, keepdims=True)
    e2 = np.cross(centers, e1)
    a, b = (v.reshape(1, -1, 1) for v in np.meshgrid(*2 * [np.linspace(-width, width, n)]))
    points = centers[:, None] + a * e1[:, None] + b * e2[:, None]
    return points / np.linalg.norm(points, axis=-1, keepdims=True)


def peak_directions(
    signal: Array, n_theta: int = 91, n_phi: int = 181, refine: int = 2
) -> tuple[np.ndarray, np.ndarray]:
    """Direction and value of the maximum of each signal on the sphere.

    A grid search (:func:`sphere_grid`, 2 degree steps by default) followed by ``refine``
    searches on finer grids (each 20 times finer) around the best point.

    Args:
        signal: ``(n, dim)``.

    Returns:
        ``directions (n, 3)`` (unit vectors) and ``values (n,)``, float64 NumPy arrays.
    """
    signal = np.asarray(signal)
    _, _, grid = sphere_grid(n_theta, n_phi)
    grid = grid.reshape(-1, 3)
    values = evaluate_signal(signal, grid)
    best = grid[np.argmax(values, axis=1)]
    width = np.pi / (n_theta - 1)
    for _ in range(refine):
        candidates = _grid_around(best, width, 41)
        local = _evaluate_each(signal, candidates)
        best = candidates[np.arange(len(best)), np.argmax(local, axis=1)]
        width /= 20
    values = _evaluate_each(signal, best[:, None])[:, 0]
    return best, values.astype(np.float64)


def _angle_degrees(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Angles ``(n,)`` in degrees between the rows of ``a`` and ``b`` ``(n, 3)``."""
    a = a / np.linalg.norm(a, axis=-1, keepdims=True)
    b = b / np.linalg.norm(b, axis=-1, keepdims=True)
    return np.degrees(np.arccos(np.clip(np.sum(a * b, axis=-1), -1.0, 1.0)))


def peak_table(output: Array, displacements: np.ndarray) -> str:
    """Per point: the displacement, the output's peak and the signal at ``+-d / |d|``.

    Args:
        output: the network's signals ``(n, dim)``.
        displacements: the targets' displacements ``(n, 3)``.

    Returns:
        a text table: ``|d|``, the in-plane angle of ``d``, the peak's polar and in-plane
        angles, its value, its angle to ``d``, and ``f(d / |d|)``, ``f(-d / |d|)``.
    """
    displacements = np.asarray(displacements, dtype=np.float64)
    peaks, values = peak_directions(output)
    unit = displacements / np.linalg.norm(displacements, axis=1, keepdims=True)
    ahead = _evaluate_each(output, unit[:, None])[:, 0]
    behind = _evaluate_each(output, -unit[:, None])[:, 0]
    errors = _angle_degrees(peaks, displacements)
    lines = [
        "point   |d|   phi(d)  | peak: theta    phi   value  angle to d | f(+d/|d|)  f(-d/|d|)"
    ]
    for i in range(len(displacements)):
        phi_d = np.degrees(np.arctan2(displacements[i, 1], displacements[i, 0]))
        theta_p = np.degrees(np.arccos(np.clip(peaks[i, 2], -1, 1)))
        phi_p = np.degrees(np.arctan2(peaks[i, 1], peaks[i, 0]))
        lines.append(
            f"{i:5d} {np.linalg.norm(displacements[i]):6.3f} {phi_d:7.1f}  |"
            f" {theta_p:11.1f} {phi_p:6.1f} {values[i]:7.3f} {errors[i]:9.2f}  |"
            f" {ahead[i]:9.3f} {behind[i]:10.3f}"
        )
    return "\n".join(lines)


def features(
    n: int = 4,
    scalar: float = 1.0,
    x2_minus_y2: float = 0.0,
    lmax: int = L_MAX,
    dtype: Any = None,
) -> np.ndarray:
    """The tutorial's input signals ``(n, (lmax+1)^2)``: ``scalar`` on ``l = 0`` and
    ``x2_minus_y2`` on the ``x^2 - y^2`` component (``o3_lambda = 2, o3_mu = +2``) of every
    point, zero elsewhere (``lmax >= 2``). ``dtype`` defaults to JAX's default float."""
    if lmax < 2:
        raise ValueError(f"features: lmax={lmax} has no x^2 - y^2 component, use lmax >= 2")
    dtype = jnp.result_type(float) if dtype is None else dtype
    signal = np.zeros((n, (lmax + 1) ** 2), dtype=dtype)
    signal[:, 0] = scalar
    signal[:, X2_MINUS_Y2_INDEX] = x2_minus_y2
    return signal


def format_components(signal: Array, lmax: int = L_MAX, decimals: int = 3) -> str:
    """The tutorial's printout of a signal ``(n, dim)``, one ``L=l`` section per order."""
    signal = np.asarray(signal, dtype=np.float64).round(decimals) + 0.0  # -0.0 -> 0.0
    lines = []
    with np.printoptions(precision=decimals, suppress=True, floatmode="fixed", linewidth=120):
        for l in range(lmax + 1):
            lines.append(f"L={l}")
            lines.append(str(signal[:, l * l : (l + 1) ** 2]))
    return "\n".join(lines)


# =============================================================================== model
def irreps(lmax: int = L_MAX) -> str:
    """``"0e+1o+2e+..."`` up to ``lmax``: one irrep per order, spherical-harmonic parity."""
    return "+".join(f"{l}{'eo'[l % 2]}" for l in range(lmax + 1))


def network(lmax: int = L_MAX, **overrides: Any) -> nn.GatePointsNetwork:
    """The tutorial's ``GatedConvNetwork`` as a :class:`eqx_tensor.nn.GatePointsNetwork`.

    Defaults: irreps :func:`irreps` ``(lmax)`` (``0e+1o+2e+3o+4e+5o``) in, hidden and out,
    edge harmonics up to ``lmax`` (5), 3 gated layers, ``max_radius = 3`` (every pair of the
    four points is an edge), 3 radial basis functions into a radial MLP of 3 layers of 100
    neurons (the old e3nn defaults of ``GatedConvNetwork``), ``num_neighbors = 3``, no
    reduction (one signal per point). ``overrides`` replace any of these.
    """
    settings = {
        "irreps_in": irreps(lmax),
        "irreps_hidden": irreps(lmax),
        "irreps_out": irreps(lmax),
        "lmax": lmax,
        "layers": 3,
        "max_radius": MAX_RADIUS,
        "number_of_basis": 3,
        "radial_layers": 3,
        "radial_neurons": 100,
        "num_neighbors": 3.0,
        "num_nodes": 4.0,
        "reduce_output": False,
    }
    settings.update(overrides)
    return nn.GatePointsNetwork(**settings)


@dataclasses.dataclass(frozen=True)
class PointModel:
    """A :class:`GatePointsNetwork` on one set of ``n`` points, signals in and out as arrays.

    Attributes:
        network: the network; its ``irreps_in`` / ``irreps_out`` must be ``l = 0..lmax`` once
            each, parity ``(-1)^l`` (the signals' layout).
    """

    network: nn.GatePointsNetwork

    @property
    def lmax_out(self) -> int:
        """The largest order of the output signals."""
        return max(key[0] for key, _ in self.network.structure().irreps_out)

    def graph(self, positions: Array) -> tuple[Systems, NeighborList]:
        """One :class:`Systems` of the points ``(n, 3)`` and its full neighbour list.

        Traceable: the metadata come from NumPy zeros, the positions are swapped in.
        """
        n = positions.shape[0]
        template = Systems.from_arrays(np.zeros((n, 3), dtype=jnp.dtype(positions.dtype)))
        systems = dataclasses.replace(template, positions=positions)
        pairs = neighbor_list(systems, float(self.network.max_radius), capacity=n * (n - 1))
        return systems, pairs

    def apply(self, params: Any, positions: Array, signal: Array) -> Array:
        """Output signals ``(n, (lmax_out+1)^2)`` of points ``(n, 3)`` with input signals."""
        positions = jnp.asarray(positions)
        systems, pairs = self.graph(positions)
        tensor = self.network.apply(params, systems, pairs, to_tensormap(signal, systems.samples()))
        return from_tensormap(tensor, self.lmax_out)

    def init(self, key: jax.Array, positions: Array, signal: Array) -> Any:
        """Fresh parameters (jitted: one compilation per shape, shared by every task)."""
        return _jitted_init(self)(key, jnp.asarray(positions), jnp.asarray(signal))

    def predict(self, params: Any, positions: Array, signal: Array) -> Array:
        """:meth:`apply`, jitted (one compilation per shape)."""
        return _jitted_apply(self)(params, jnp.asarray(positions), jnp.asarray(signal))


@functools.cache
def _jitted_init(model: PointModel) -> Callable:
    def init(key, positions, signal):
        systems, pairs = model.graph(positions)
        tensor = to_tensormap(signal, systems.samples())
        return model.network.init(key, systems, pairs, tensor)

    return jax.jit(init)


@functools.cache
def _jitted_apply(model: PointModel) -> Callable:
    return jax.jit(model.apply)


# =============================================================================== training
def mse(prediction: Array, target: Array) -> Array:
    """``torch.nn.MSELoss``: the mean of the squared differences over all entries."""
    return jnp.mean((prediction - target) ** 2)


def input_penalty(signal: Array) -> Array:
    """The tutorial's penalties on a learnt input ``(n, (lmax+1)^2)`` (task 4), added to the MSE.

    ``mean|c_0 - 1| + mean|c_{l>=3}| + mean|c_1| + mean (c_2 - c_2[point 0])^2 +
    1e-3 mean|c_2|``: keep the scalars at 1 and the ``l = 1`` and ``l >= 3`` parts at zero,
    prefer one ``l = 2`` input shared by all points, and a mild L1 on it.
    """
    scalar, vector, quadratic, rest = signal[:, :1], signal[:, 1:4], signal[:, 4:9], signal[:, 9:]
    penalty = (
        jnp.mean(jnp.abs(scalar - 1.0))
        + jnp.mean(jnp.abs(vector))
        + jnp.mean((quadratic - quadratic[0]) ** 2)
        + 1e-3 * jnp.mean(jnp.abs(quadratic))
    )
    # lmax = 2 has no l >= 3 part (and the mean of nothing is NaN)
    return penalty + jnp.mean(jnp.abs(rest)) if rest.shape[1] else penalty


def make_model_step(model: PointModel, optimizer: optax.GradientTransformation) -> Callable:
    """A jitted Adam step of the network's parameters on the MSE of the output signals.

    ``step(params, opt_state, positions (n, 3), signal (n, 36), target (n, 36))`` returns
    ``(params, opt_state, loss)``, ``loss`` at the parameters before the update. Geometry,
    input and target are arguments, so one compilation serves every task of the same shapes.
    """

    def loss_fn(params, positions, signal, target):
        return mse(model.apply(params, positions, signal), target)

    @jax.jit
    def step(params, opt_state, positions, signal, target):
        loss, grads = jax.value_and_grad(loss_fn)(params, positions, signal, target)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    return step


def make_input_step(model: PointModel, optimizer: optax.GradientTransformation) -> Callable:
    """A jitted Adam step of the input signals on MSE + :func:`input_penalty` (task 4).

    ``step(signal, opt_state, params, positions, target)`` returns ``(signal, opt_state,
    loss)``, ``loss`` (MSE plus penalties) before the update.
    """

    def loss_fn(signal, params, positions, target):
        return mse(model.apply(params, positions, signal), target) + input_penalty(signal)

    @jax.jit
    def step(signal, opt_state, params, positions, target):
        loss, grads = jax.value_and_grad(loss_fn)(signal, params, positions, target)
        updates, opt_state = optimizer.update(grads, opt_state, signal)
        return optax.apply_updates(signal, updates), opt_state, loss

    return step


def _ready(tree: Any) -> Any:
    return jax.block_until_ready(tree)


def train(
    step: Callable,
    params: Any,
    opt_state: Any,
    positions: Array,
    signal: Array,
    target: Array,
    iterations: int,
    print_every: int = 10,
) -> tuple[Any, Any, dict[str, Any]]:
    """``iterations`` steps of :func:`make_model_step`'s ``step``; prints every ``print_every``.

    Returns:
        ``(params, opt_state, logs)``: ``logs["loss"]`` ``(iterations,)`` (before each update),
        ``logs["first_seconds"]`` (the first call: compilation when the step is new) and
        ``logs["seconds_per_iteration"]`` (the mean over the other calls).
    """
    positions, signal, target = (jnp.asarray(a) for a in (positions, signal, target))
    losses = np.zeros(iterations)
    start = time.perf_counter()
    first = math.nan
    for i in range(iterations):
        params, opt_state, loss = step(params, opt_state, positions, signal, target)
        losses[i] = float(loss)
        if i == 0:
            first = time.perf_counter() - start
            start = time.perf_counter()
        if i % print_every == 0:
            print(f"iteration {i:4d}  loss {losses[i]:.4e}")
    _ready(params)
    rest = (time.perf_counter() - start) / max(iterations - 1, 1)
    logs = {"loss": losses, "first_seconds": first, "seconds_per_iteration": rest}
    return params, opt_state, logs


def train_with_input(
    model_step: Callable,
    input_step: Callable,
    params: Any,
    opt_state: Any,
    signal: Array,
    input_state: Any,
    positions: Array,
    target: Array,
    iterations: int,
    print_every: int = 10,
) -> tuple[Any, Any, Array, Any, dict[str, Any]]:
    """Task 4: alternate one model step and one input step (the input step sees the updated
    model), as the tutorial does; prints the model loss every ``print_every`` iterations and the
    input loss every ``2 * print_every``.

    Returns:
        ``(params, opt_state, signal, input_state, logs)``, logs with ``loss`` and
        ``input_loss`` ``(iterations,)``, ``first_seconds`` (the first alternation) and
        ``seconds_per_iteration`` (one model step plus one input step).
    """
    positions, target = jnp.asarray(positions), jnp.asarray(target)
    signal = jnp.asarray(signal)
    losses, input_losses = np.zeros(iterations), np.zeros(iterations)
    start = time.perf_counter()
    first = math.nan
    for i in range(iterations):
        params, opt_state, loss = model_step(params, opt_state, positions, signal, target)
        signal, input_state, input_loss = input_step(signal, input_state, params, positions, target)
        losses[i], input_losses[i] = float(loss), float(input_loss)
        if i == 0:
            first = time.perf_counter() - start
            start = time.perf_counter()
        if i % print_every == 0:
            print(f"iteration {i:4d}  model loss {losses[i]:.4e}")
        if i % (2 * print_every) == 0:
            print(f"iteration {i:4d}  input loss {input_losses[i]:.4e}")
    _ready(signal)
    rest = (time.perf_counter() - start) / max(iterations - 1, 1)
    logs = {
        "loss": losses,
        "input_loss": input_losses,
        "first_seconds": first,
        "seconds_per_iteration": rest,
    }
    return params, opt_state, signal, input_state, logs


# =============================================================================== symmetry
def c4_symmetric_part(positions: np.ndarray, signal: Array) -> Array:
    """The average of ``signal`` ``(n, dim)`` over the square's C4 group (rotations about ``z``).

    ``g . s`` moves the signal of point ``i``, rotated by ``R^k``, to the point ``R^k p_i``. For
    points and inputs invariant under C4, every C4-equivariant model's output ``o`` satisfies
    ``g . o = o``; the average is the orthogonal projection onto those signals.
    """
    perm = c4_permutation(positions)
    signal = jnp.asarray(signal)
    rotation = jnp.asarray(c4_rotation(), signal.dtype)
    total = jnp.zeros_like(signal)
    moved = signal
    for _ in range(4):
        total = total + moved
        rotated = from_tensormap(o3.rotate(to_tensormap(moved), rotation), _lmax(moved))
        moved = jnp.zeros_like(moved).at[perm].set(rotated)
    return total / 4


def c4_bound(positions: np.ndarray, target: Array) -> float:
    """The smallest MSE a C4-equivariant model can reach on the square: ``mse(P t, t)``.

    ``P`` is :func:`c4_symmetric_part`, an orthogonal projection: for every output ``o = P o``,
    ``|o - t|^2 = |o - P t|^2 + |P t - t|^2 >= |P t - t|^2``.
    """
    target = jnp.asarray(target)
    return float(mse(c4_symmetric_part(positions, target), target))


def equivariance_error(
    model: PointModel, params: Any, positions: Array, signal: Array, rotation: Array
) -> float:
    """``max |f(R p, R . s) - R . f(p, s)|`` over all output entries (``o3.rotate``).

    Args:
        model, params: the network.
        positions: ``(n, 3)``; signal: the inputs ``(n, dim)``, rotated with the geometry.
        rotation: ``(3, 3)`` orthogonal (proper or improper).
    """
    signal = jnp.asarray(signal)
    rotation = jnp.asarray(rotation, signal.dtype)
    positions = jnp.asarray(positions, signal.dtype)
    lmax_in = _lmax(signal)
    rotated_in = from_tensormap(o3.rotate(to_tensormap(signal), rotation), lmax_in)
    moved = model.predict(params, positions @ rotation.T, rotated_in)
    output = model.predict(params, positions, signal)
    expected = from_tensormap(o3.rotate(to_tensormap(output), rotation), _lmax(output))
    return float(jnp.max(jnp.abs(moved - expected)))


# =============================================================================== plots
def plot_task(
    ax: Any, start: np.ndarray, finish: np.ndarray, title: str, marker: str = "o"
) -> None:
    """The tutorial's picture of a task: the start and finish points, arrows between them."""
    start, finish = np.asarray(start), np.asarray(finish)
    closed = np.r_[np.arange(len(start)), 0]
    ax.plot(start[closed, 0], start[closed, 1], "-", marker=marker, markersize=12, label="start")
    ax.plot(finish[closed, 0], finish[closed, 1], "o-", markersize=8, label="finish")
    for a, b in zip(start, finish):
        ax.arrow(
            a[0],
            a[1],
            b[0] - a[0],
            b[1] - a[1],
            length_includes_head=True,
            head_width=0.05,
            facecolor="black",
            zorder=100,
        )
    ax.set_title(title)
    ax.set_aspect("equal")
    ax.set_axis_off()


def plot_in_plane(
    ax: Any,
    positions: np.ndarray,
    signal: Array,
    target: Array | None = None,
    finish: np.ndarray | None = None,
    title: str = "",
    label: str = "output",
    legend: str = "center",
    n_phi: int = 361,
) -> None:
    """The signals ``(n, dim)`` in the plane ``z = 0``: around each point ``p`` ``(n, 3)`` the
    curve ``p + max(f(u), 0) u``, ``u = (cos phi, sin phi, 0)`` (the top view of the tutorial's
    3-D surfaces); with ``target`` its curves dashed (a target's tip is the finish point), with
    ``finish`` the finish points. ``legend`` is the legend's ``loc``."""
    positions = np.asarray(positions)
    phi = np.linspace(-np.pi, np.pi, n_phi)
    u = np.stack([np.cos(phi), np.sin(phi), np.zeros_like(phi)], axis=-1)
    curves = [(label, signal, "-", "tab:blue")]
    if target is not None:
        curves.append(("target", target, "--", "tab:orange"))
    for name, coefficients, style, color in curves:
        radius = np.maximum(evaluate_signal(coefficients, u), 0.0)
        for i, p in enumerate(positions):
            ax.plot(
                p[0] + radius[i] * u[:, 0],
                p[1] + radius[i] * u[:, 1],
                style,
                color=color,
                label=name if i == 0 else None,
            )
    ax.plot(positions[:, 0], positions[:, 1], "ko", markersize=5, label="start")
    if finish is not None:
        finish = np.asarray(finish)
        ax.plot(finish[:, 0], finish[:, 1], "o", color="tab:green", markersize=7, label="finish")
    ax.set_title(title)
    ax.set_aspect("equal")
    ax.legend(loc=legend, fontsize="small")


def plot_sphere_map(
    ax: Any,
    signal: Array,
    title: str = "",
    mark: np.ndarray | None = None,
    n_theta: int = 91,
    n_phi: int = 181,
) -> Any:
    """One signal ``(dim,)`` as a map over ``(phi, theta)``, the direction ``mark`` as a cross
    and the signal's peak as a circle; returns the image (for a colorbar)."""
    theta, phi, grid = sphere_grid(n_theta, n_phi)
    signal = np.asarray(signal)[None]
    values = evaluate_signal(signal, grid)[0]
    image = ax.pcolormesh(np.degrees(phi), np.degrees(theta), values, shading="auto", cmap="RdBu_r")
    limit = np.abs(values).max()
    image.set_clim(-limit, limit)
    peaks, _ = peak_directions(signal)
    peak = peaks[0]
    ax.plot(
        np.degrees(np.arctan2(peak[1], peak[0])),
        np.degrees(np.arccos(np.clip(peak[2], -1, 1))),
        "o",
        markerfacecolor="none",
        markeredgecolor="black",
        markersize=12,
        label="peak",
    )
    if mark is not None:
        mark = np.asarray(mark) / np.linalg.norm(mark)
        ax.plot(
            np.degrees(np.arctan2(mark[1], mark[0])),
            np.degrees(np.arccos(np.clip(mark[2], -1, 1))),
            "kx",
            markersize=10,
            label="displacement",
        )
    ax.set_xlabel("phi (degrees)")
    ax.set_ylabel("theta (degrees)")
    ax.invert_yaxis()
    ax.set_title(title)
    return image


def plot_losses(ax: Any, losses: dict[str, np.ndarray], bound: float | None = None) -> None:
    """Loss curves of the tasks on a log scale, with the C4 bound of task 2 as a line."""
    for name, loss in losses.items():
        ax.semilogy(np.asarray(loss), label=name)
    if bound is not None:
        ax.axhline(bound, color="black", linestyle=":", label="C4 bound")
    ax.set_xlabel("iteration")
    ax.set_ylabel("MSE")
    ax.legend()
