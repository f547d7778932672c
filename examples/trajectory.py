"""The 12-body trajectory study (e3nn tutorial "Neural Networks with Euclidean Symmetries - 2").

Given the positions ``x(t)`` of 12 particles joined by springs, predict the displacement to the
next frame ``dx(t) = x(t+1) - x(t)``. This module holds everything the notebook
``notebooks/trajectory.ipynb`` and the demo ``examples/demo.py`` need, importable and seeded:

* :func:`simulate`, :func:`split`, :func:`zero_predictor_mse`: the data, made here (no download);
* three models of ``dx`` as :class:`FrameModel` (``init`` / ``apply`` on ``(frames, 12, 3)``):
  :func:`mlp_model` (the tutorial's ``MLPBaseline``), :func:`polynomial_model` (its
  ``EquivariantPolynomial``, written with :mod:`eqx_tensor.atomistic` and
  :class:`eqx_tensor.nn.TensorProduct`) and :func:`gate_points_model`
  (:class:`eqx_tensor.nn.GatePointsNetwork`, e3nn's ``gate_points_2101.Network``);
* :func:`train` (optax Adam, one jitted step, one compilation per run), :func:`predict`,
  :func:`evaluate` (test MSE, the tutorial's r^2 columns, equivariance error, seconds per epoch),
  :func:`format_table`;
* the tutorial's plots: :func:`plot_frames`, :func:`plot_correlation`,
  :func:`plot_trajectories`, :func:`plot_losses`.

The simulation
--------------
The tutorial's data (dmol.pub's ``paths.npz``) are inertial: the next frame depends on
velocities the models never see, and every model stays at the zero-predictor loss. Here the next
displacement is a deterministic, smooth function of the current positions, which a
message-passing model of radius 3.5 can represent exactly: overdamped (gradient-descent) dynamics

    x(t+1) = x(t) - eta * grad U(x(t)) [+ kick(t)],      U(x) = sum_{i<j} phi(|x_j - x_i|),

so that ``dx_i = eta * sum_j phi'(r_ij) (x_j - x_i) / r_ij`` (:func:`displacement`): a sum over
neighbours of a radial function times the unit pair vector. The pair potential ``phi``
(:class:`SpringModel`) has three smooth (C^2) parts, all zero beyond ``r = 3.4 < 3.5``:

* springs of rest length 1 between close particles: a well ``-D (1 - u^2)^3`` with
  ``u = (r - 1) / 0.5``, so bonds (``r < 1.5``) are recognisable from distances alone;
* a soft repulsion ``B (1 - r / 0.9)^3`` for ``r < 0.9`` that keeps particles apart;
* a weak cohesion ``c r`` (a constant attraction) switched off smoothly between 2.8 and 3.4,
  which keeps the cloud in one piece within about 3.4 across: every particle has its 11
  neighbours within the radius 3.5 (the tutorial's ``num_neighbors = 11``).

Without forcing, the cloud relaxes to rest and ``dx`` decays to zero; every ``kick_every = 25``
frames a random in-plane Gaussian kick (``kick_scale = 0.1`` per coordinate and particle) is
added to the step. The kick steps are not a function of the positions: they are flagged
(``kicks[t]`` is True when ``x(t+1) - x(t)`` contains a kick), left out of the training loss and
of the metrics by default, and reported apart. The pair forces sum to zero, so the centre of
mass moves only at kicks. The particles stay in the plane ``z = 0`` (3D positions, as in the
tutorial), and an equivariant model cannot tell the plane from any other.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import e3nn_jax as e3nn
import flax.linen as fnn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from tqdm import tqdm  # the text bar: tqdm.auto would want ipywidgets in notebooks

import eqx_tensor as eqt
from eqx_tensor import compiler_options, nn, o3
from eqx_tensor.atomistic import (
    NeighborList,
    Systems,
    edge_spherical_harmonics,
    gather,
    join_systems,
    neighbor_list,
    scatter,
)

__all__ = [
    "HIDDEN_IRREPS",
    "NUM_NEIGHBORS",
    "N_FRAMES",
    "N_PARTICLES",
    "N_TRAIN",
    "RADIUS",
    "EquivariantPolynomial",
    "FrameModel",
    "MLPBaseline",
    "SpringModel",
    "correlation_r2",
    "displacement",
    "equivariance_error",
    "evaluate",
    "fit_pair_forces",
    "format_table",
    "frame_systems",
    "gate_points_model",
    "initial_positions",
    "irreps_features",
    "mlp_model",
    "pair_forces_predict",
    "pair_potential",
    "pair_potential_derivative",
    "plot_correlation",
    "plot_frames",
    "plot_losses",
    "plot_trajectories",
    "polynomial_model",
    "potential",
    "predict",
    "r2_score",
    "reachable_features",
    "rollout",
    "simulate",
    "split",
    "train",
    "zero_predictor_mse",
    "zero_predictor_row",
]

N_PARTICLES = 12
N_FRAMES = 2048
N_TRAIN = 1637  # the tutorial's split: 1637 training frames, 410 test frames
RADIUS = 3.5
NUM_NEIGHBORS = 11
HIDDEN_IRREPS = "8x0e+8x0o+16x1e+16x1o+8x2e+8x2o"
CORRELATION_COLUMNS = ("cm", "p1 cm", "p7 x", "p12 y")

Array = Any


# =============================================================================== simulation
def _smootherstep(t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``6t^5 - 15t^4 + 10t^3`` on [0, 1] (0 below, 1 above) and its derivative: C^2 joins."""
    t = np.clip(t, 0.0, 1.0)
    return t**3 * (10 - 15 * t + 6 * t * t), 30 * t**2 * (1 - t) ** 2


@dataclasses.dataclass(frozen=True)
class SpringModel:
    """The pair potential ``phi(r)`` and the step of the overdamped dynamics (module docstring).

    Attributes:
        well_depth, rest_length, well_width: the spring well ``-D (1 - u^2)^3``,
            ``u = (r - rest_length) / well_width`` for ``|u| < 1``.
        repulsion, repulsion_range: ``B (1 - r / r_rep)^3`` for ``r < r_rep``.
        cohesion, cohesion_on, cohesion_off: ``c r`` times a switch from 1 (below ``on``) to 0
            (above ``off``).
        step: ``eta`` in ``x(t+1) = x(t) - eta grad U(x(t))``.
    """

    well_depth: float = 1.0
    rest_length: float = 1.0
    well_width: float = 0.5
    repulsion: float = 10.0
    repulsion_range: float = 0.9
    cohesion: float = 0.02
    cohesion_on: float = 2.8
    cohesion_off: float = 3.4
    step: float = 0.003

    @property
    def cutoff(self) -> float:
        """The range of ``phi``: ``phi(r) = phi'(r) = 0`` for ``r >= cutoff``."""
        return max(self.rest_length + self.well_width, self.repulsion_range, self.cohesion_off)

    @property
    def bond_length(self) -> float:
        """Pairs closer than this are bonded (inside the spring well)."""
        return self.rest_length + self.well_width


def pair_potential(r: np.ndarray, model: SpringModel = SpringModel()) -> np.ndarray:
    """``phi(r)`` for distances ``r`` of any shape (NumPy, float64)."""
    r = np.asarray(r, dtype=np.float64)
    u = (r - model.rest_length) / model.well_width
    well = np.where(np.abs(u) < 1, -model.well_depth * (1 - u * u) ** 3, 0.0)
    t = r / model.repulsion_range
    repulsion = np.where(t < 1, model.repulsion * (1 - t) ** 3, 0.0)
    step, _ = _smootherstep((r - model.cohesion_on) / (model.cohesion_off - model.cohesion_on))
    return well + repulsion + model.cohesion * r * (1 - step)


def pair_potential_derivative(r: np.ndarray, model: SpringModel = SpringModel()) -> np.ndarray:
    """``phi'(r)`` for distances ``r`` of any shape (NumPy, float64); zero for ``r >= cutoff``."""
    r = np.asarray(r, dtype=np.float64)
    u = (r - model.rest_length) / model.well_width
    well = np.where(
        np.abs(u) < 1, 6 * model.well_depth * u * (1 - u * u) ** 2 / model.well_width, 0.0
    )
    t = r / model.repulsion_range
    repulsion = np.where(t < 1, -3 * model.repulsion * (1 - t) ** 2 / model.repulsion_range, 0.0)
    width = model.cohesion_off - model.cohesion_on
    step, dstep = _smootherstep((r - model.cohesion_on) / width)
    cohesion = model.cohesion * ((1 - step) - r * dstep / width)
    return well + repulsion + cohesion


def _pair_geometry(positions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``d[..., i, j] = x_j - x_i``, ``r[..., i, j]``, and the mask ``i != j``."""
    d = positions[..., None, :, :] - positions[..., :, None, :]
    r = np.sqrt(np.sum(d * d, axis=-1))
    off_diagonal = ~np.eye(positions.shape[-2], dtype=bool)
    return d, r, off_diagonal


def potential(positions: np.ndarray, model: SpringModel = SpringModel()) -> np.ndarray:
    """Total energy ``U = sum_{i<j} phi(r_ij)`` of frames ``(..., n, 3)`` -> ``(...)``."""
    _, r, off_diagonal = _pair_geometry(np.asarray(positions, dtype=np.float64))
    return 0.5 * np.sum(np.where(off_diagonal, pair_potential(r, model), 0.0), axis=(-2, -1))


def displacement(positions: np.ndarray, model: SpringModel = SpringModel()) -> np.ndarray:
    """The deterministic step ``-eta grad U(x)`` of frames ``(..., n, 3)`` -> ``(..., n, 3)``.

    ``dx_i = eta sum_{j != i} phi'(r_ij) (x_j - x_i) / r_ij``; only pairs with
    ``r_ij < model.cutoff`` (3.4) contribute. Coincident particles exert no force on each other.
    """
    d, r, off_diagonal = _pair_geometry(np.asarray(positions, dtype=np.float64))
    active = off_diagonal & (r > 0)
    factor = np.where(active, pair_potential_derivative(r, model) / np.where(active, r, 1.0), 0.0)
    return model.step * np.einsum("...ij,...ijc->...ic", factor, d)


def initial_positions(
    n_particles: int = N_PARTICLES, rng: np.random.Generator | None = None, noise: float = 0.05
) -> np.ndarray:
    """A compact patch of the triangular lattice of spacing 1 (``(n, 3)``, ``z = 0``), jittered.

    The ``n`` lattice sites nearest to the centre of a triangle (for 12: rings of 3, 3 and 6),
    centred, plus Gaussian noise of standard deviation ``noise`` in the plane.
    """
    rng = np.random.default_rng(0) if rng is None else rng
    size = math.ceil(math.sqrt(n_particles)) + 2
    i, j = np.meshgrid(np.arange(-size, size + 1), np.arange(-size, size + 1), indexing="ij")
    sites = np.stack([i + 0.5 * j, j * math.sqrt(3) / 2], axis=-1).reshape(-1, 2)
    centre = np.array([0.5, math.sqrt(3) / 6])
    order = np.lexsort((sites[:, 1], sites[:, 0], np.round(np.sum((sites - centre) ** 2, 1), 9)))
    plane = sites[order[:n_particles]] - centre
    plane = plane + noise * rng.normal(size=plane.shape)
    return np.concatenate([plane, np.zeros((n_particles, 1))], axis=1)


def simulate(
    n_frames: int = N_FRAMES,
    seed: int = 0,
    *,
    n_particles: int = N_PARTICLES,
    kick_every: int = 25,
    kick_scale: float = 0.1,
    model: SpringModel = SpringModel(),
) -> dict[str, Any]:
    """Simulate the kicked overdamped spring network (module docstring); NumPy, float64.

    Args:
        n_frames: number of frames.
        seed: seed of the initial jitter and of the kicks (the run is deterministic).
        n_particles: number of particles.
        kick_every: a kick is added to the steps ``t = kick_every - 1, 2 kick_every - 1, ...``
            (``0`` for none).
        kick_scale: standard deviation of the kicks, per in-plane coordinate and particle.
        model: the pair potential and the step ``eta``.

    Returns:
        ``positions`` ``(n_frames, n_particles, 3)`` float64 (``z = 0``); ``kicks``
        ``(n_frames,)`` bool, True at ``t`` when ``positions[t + 1] - positions[t]`` contains a
        kick (never at the last frame); ``model``, ``seed``, ``kick_every``, ``kick_scale``.
        On the other steps ``positions[t + 1] - positions[t] == displacement(positions[t])``.
    """
    if n_frames < 1 or n_particles < 2:
        raise ValueError(f"need n_frames >= 1 and n_particles >= 2, got {n_frames}, {n_particles}")
    rng = np.random.default_rng(seed)
    positions = np.zeros((n_frames, n_particles, 3))
    positions[0] = initial_positions(n_particles, rng)
    kicks = np.zeros(n_frames, dtype=bool)
    for t in range(n_frames - 1):
        positions[t + 1] = positions[t] + displacement(positions[t], model)
        if kick_every and (t + 1) % kick_every == 0:
            kicks[t] = True
            positions[t + 1, :, :2] += kick_scale * rng.normal(size=(n_particles, 2))
    return {
        "positions": positions,
        "kicks": kicks,
        "model": model,
        "seed": seed,
        "kick_every": kick_every,
        "kick_scale": kick_scale,
    }


def split(data: Mapping[str, Any], n_train: int = N_TRAIN) -> dict[str, dict[str, np.ndarray]]:
    """Features ``x(t)``, labels ``dx(t) = x(t+1) - x(t)`` for ``t < n_frames - 1``, split in time.

    Returns:
        ``{"train": {...}, "test": {...}}``, each with ``x`` ``(n, n_particles, 3)``, ``dx``
        (same shape, computed in float64) and ``kicks`` ``(n,)``: the first ``n_train`` steps
        train, the others (410 of 2047 by default) test.
    """
    positions = np.asarray(data["positions"], dtype=np.float64)
    kicks = np.asarray(data["kicks"], dtype=bool)
    x, dx, k = positions[:-1], positions[1:] - positions[:-1], kicks[:-1]
    if not 0 < n_train < len(x):
        raise ValueError(f"n_train must be in (0, {len(x)}), got {n_train}")
    return {
        "train": {"x": x[:n_train], "dx": dx[:n_train], "kicks": k[:n_train]},
        "test": {"x": x[n_train:], "dx": dx[n_train:], "kicks": k[n_train:]},
    }


def zero_predictor_mse(part: Mapping[str, np.ndarray], *, exclude_kicks: bool = True) -> float:
    """MSE of the prediction ``dx = 0`` on a part of :func:`split` (kick steps left out)."""
    dx = np.asarray(part["dx"])
    if exclude_kicks:
        dx = dx[~np.asarray(part["kicks"], dtype=bool)]
    return float(np.mean(dx**2))


def _pair_basis_design(x: np.ndarray, n_basis: int, radius: float) -> np.ndarray:
    """``A[t, i, c, k] = sum_j B_k(r_ij) (x_j - x_i)_c``, Gaussian bumps ``B_k`` on [0, radius]."""
    d, r, off_diagonal = _pair_geometry(np.asarray(x, dtype=np.float64))
    centres = np.linspace(0.0, radius, n_basis)
    width = centres[1] - centres[0]
    basis = np.exp(-(((r[..., None] - centres) / width) ** 2))
    basis = np.where((off_diagonal & (r < radius))[..., None], basis, 0.0)
    return np.einsum("...ijk,...ijc->...ick", basis, d)


def fit_pair_forces(
    part: Mapping[str, np.ndarray], n_basis: int = 40, radius: float = RADIUS
) -> np.ndarray:
    """Least-squares reference: ``dx_i = sum_{r_ij < radius} g(r_ij) (x_j - x_i)``.

    ``g`` is a combination of ``n_basis`` Gaussian bumps on ``[0, radius]``, fitted to the steps
    without kicks of ``part``. This linear, equivariant message-passing model of radius 3.5
    shows what the data allow: its test MSE is orders of magnitude below the zero predictor's.

    Returns:
        the ``(n_basis,)`` coefficients, for :func:`pair_forces_predict`.
    """
    keep = ~np.asarray(part["kicks"], dtype=bool)
    design = _pair_basis_design(np.asarray(part["x"])[keep], n_basis, radius)
    target = np.asarray(part["dx"], dtype=np.float64)[keep]
    coefficients, *_ = np.linalg.lstsq(design.reshape(-1, n_basis), target.reshape(-1), rcond=None)
    return coefficients


def pair_forces_predict(
    coefficients: np.ndarray, x: np.ndarray, radius: float = RADIUS
) -> np.ndarray:
    """Displacements ``(frames, n, 3)`` of :func:`fit_pair_forces` coefficients for frames ``x``."""
    return _pair_basis_design(x, len(coefficients), radius) @ coefficients


# =============================================================================== models
class MLPBaseline(fnn.Module):
    """The tutorial's ``MLPBaseline``: ``36 -> 64 -> 64 -> 36`` on the flattened frame.

    As in the tutorial there is no activation between the layers (the map is affine).
    Input ``(frames, 12, 3)``, output ``(frames, 12, 3)``; parameters in the input's dtype.
    """

    hidden: int = 64

    @fnn.compact
    def __call__(self, x: Array) -> Array:
        frames, n, _ = x.shape
        h = x.reshape(frames, n * 3)
        h = fnn.Dense(self.hidden, param_dtype=x.dtype)(h)
        h = fnn.Dense(self.hidden, param_dtype=x.dtype)(h)
        h = fnn.Dense(n * 3, param_dtype=x.dtype)(h)
        return h.reshape(frames, n, 3)


def irreps_features(irreps: str) -> list[tuple[tuple[int, int], int]]:
    """``"8x0e+16x1o"`` -> ``[((0, 1), 8), ((1, 1), 16)]``: e3nn irreps as ``(key, channels)``."""
    return [(o3.irrep_to_key(ir), mul) for mul, ir in e3nn.Irreps(irreps)]


def reachable_features(
    features: Sequence[tuple[tuple[int, int], int]], x1: eqt.TensorMap, x2: eqt.TensorMap
) -> list[tuple[tuple[int, int], int]]:
    """The ``(key, channels)`` of ``features`` that some block of ``x1`` times ``x2`` reaches.

    e3nn's ``FullyConnectedTensorProduct`` gives unreachable outputs (e.g. ``0o`` from two sets
    of proper spherical harmonics) as channels that are always zero;
    :class:`eqx_tensor.nn.TensorProduct` refuses them. Such channels can only feed products
    with zero, so leaving them out computes the same function with the same weights.
    """
    keys1 = [(int(l), int(s)) for l, s in np.asarray(x1.keys.values)]
    keys2 = [(int(l), int(s)) for l, s in np.asarray(x2.keys.values)]
    names1, names2 = x1.keys.names, x2.keys.names
    if names1 != ["o3_lambda", "o3_sigma"] or names2 != ["o3_lambda", "o3_sigma"]:
        raise ValueError(f"keys must be ('o3_lambda', 'o3_sigma'), got {names1} and {names2}")
    return [
        ((l3, s3), mul)
        for (l3, s3), mul in features
        if any(
            o3.selection_rule(l1, l2, l3) and o3.product_sigma(l1, s1, l2, s2, l3) == s3
            for l1, s1 in keys1
            for l2, s2 in keys2
        )
    ]


def _mean_over_pairs(nodes: eqt.TensorMap, pairs: NeighborList, n_atoms: int) -> eqt.TensorMap:
    """Divide the rows of a scattered sum by the number of pairs of each atom (scatter mean)."""
    counts = jax.ops.segment_sum(
        pairs.mask.astype(jnp.int32), pairs.first_atom, num_segments=n_atoms
    )
    blocks = []
    for block in nodes.blocks():
        # atoms without pairs keep 0, as torch_scatter's reduce="mean"
        scale = (1 / jnp.maximum(counts, 1)).astype(block.values.dtype)
        values = block.values * scale[:, None, None]
        blocks.append(eqt.TensorBlock(values, block.samples, block.components, block.properties))
    return eqt.TensorMap(nodes.keys, blocks)


class EquivariantPolynomial(fnn.Module):
    """The tutorial's ``EquivariantPolynomial`` (e3nn's tetris polynomial with a vector output).

    Node features are the sum of the edge spherical harmonics ``Y(r_ij)`` (``l <= lmax``,
    ``normalize=False``, component normalisation) over the neighbours, divided by
    ``sqrt(num_neighbors)``; then two fully connected tensor products with the edge harmonics,
    each followed by a sum over neighbours: ``/ sqrt(num_neighbors)`` after the first, a mean
    after the second.

    ``__call__(systems, pairs)`` returns a node TensorMap with the single block
    ``(o3_lambda, o3_sigma) = (1, 1)`` of values ``(n_atoms, 3, 1)`` in ``o3_mu`` order
    ``(y, z, x)``.
    """

    irreps_hidden: str = HIDDEN_IRREPS
    irreps_out: str = "1x1o"
    lmax: int = 3
    num_neighbors: float = float(NUM_NEIGHBORS)

    @fnn.compact
    def __call__(self, systems: Systems, pairs: NeighborList) -> eqt.TensorMap:
        norm = math.sqrt(self.num_neighbors)
        sh = edge_spherical_harmonics(pairs, self.lmax, normalize=False, normalization="component")
        nodes = scatter(sh, pairs, systems, normalization=norm)
        for irreps, normalization in ((self.irreps_hidden, norm), (self.irreps_out, None)):
            edges = gather(nodes, pairs)
            features = reachable_features(irreps_features(irreps), edges, sh)
            edges = nn.TensorProduct(mode="fully_connected", out_features=features)(edges, sh)
            nodes = scatter(edges, pairs, systems, normalization=normalization)
        return _mean_over_pairs(nodes, pairs, systems.n_atoms)


@functools.lru_cache(maxsize=32)
def _template_systems(n_frames: int, n_particles: int, dtype: str) -> Systems:
    zeros = np.zeros((n_particles, 3), dtype=dtype)
    # host-side metadata, also when first asked for inside a jitted function
    with jax.ensure_compile_time_eval():
        return join_systems([Systems.from_arrays(zeros) for _ in range(n_frames)])


def frame_systems(x: Array) -> Systems:
    """One :class:`Systems` of ``frames * n`` atoms from frames ``x`` ``(frames, n, 3)``.

    The metadata (system index of each atom, cells) come from :func:`join_systems` once per
    shape; only the positions are replaced, so this works on traced arrays inside ``jit``.
    """
    frames, n, _ = x.shape
    template = _template_systems(frames, n, jnp.dtype(x.dtype).name)
    return dataclasses.replace(template, positions=x.reshape(frames * n, 3))


@dataclasses.dataclass(frozen=True)
class FrameModel:
    """A model of the next displacement of a batch of frames: ``dx = apply(params, x)``.

    Attributes:
        name: shown in tables and plots.
        module: a flax module; ``"frames"`` modules map ``(frames, n, 3) -> (frames, n, 3)``,
            ``"graph"`` modules take ``(systems, pairs)`` and return a node TensorMap whose block
            ``(1, 1)`` holds the vectors (``o3_mu`` order ``y, z, x``).
        kind: ``"frames"`` or ``"graph"``.
        output_scale: the prediction is ``output_scale * module(...)``: a fixed (invariant)
            unit for the outputs, e.g. the RMS of the training displacements, so that a
            network whose outputs start at O(1) needs not learn the scale of ``dx`` first.
        radius: the neighbour-list cutoff of graph models.
    """

    name: str
    module: fnn.Module
    kind: str = "graph"
    output_scale: float = 1.0
    radius: float = RADIUS

    def init(self, key: jax.Array, x: Array) -> Any:
        """Parameters for frames like ``x`` ``(frames, n, 3)``."""
        # jitted: an eager init runs every TensorMap operation op by op, which is much slower
        return _jitted_init(self)(key, jnp.asarray(x))

    def _init(self, key: jax.Array, x: Array) -> Any:
        if self.kind == "frames":
            return self.module.init(key, x)
        systems, pairs = self.graph(x)
        return self.module.init(key, systems, pairs)

    def graph(self, x: Array) -> tuple[Systems, NeighborList]:
        """The systems and the full neighbour list (every pair fits: ``n (n - 1)`` per frame)."""
        frames, n, _ = x.shape
        systems = frame_systems(x)
        return systems, neighbor_list(systems, self.radius, capacity=frames * n * (n - 1))

    def apply(self, params: Any, x: Array) -> Array:
        """Predicted displacements ``(frames, n, 3)`` of frames ``x`` ``(frames, n, 3)``."""
        x = jnp.asarray(x)
        if self.kind == "frames":
            out = self.module.apply(params, x)
        else:
            systems, pairs = self.graph(x)
            tensor = self.module.apply(params, systems, pairs)
            vectors = tensor.block(o3_lambda=1, o3_sigma=1).values
            # o3_mu order (y, z, x) -> Cartesian (x, y, z)
            out = vectors[:, np.array([2, 0, 1]), 0].reshape(x.shape)
        return out * jnp.asarray(self.output_scale, out.dtype)


@functools.lru_cache(maxsize=32)
def _jitted_init(model: FrameModel) -> Callable[[jax.Array, Array], Any]:
    return jax.jit(model._init)


def mlp_model(hidden: int = 64, output_scale: float = 1.0) -> FrameModel:
    """The tutorial's MLP baseline on the flattened positions (:class:`MLPBaseline`)."""
    return FrameModel("MLP", MLPBaseline(hidden), kind="frames", output_scale=output_scale)


def polynomial_model(output_scale: float = 1.0, **kwargs: Any) -> FrameModel:
    """The tutorial's small tensor-product model (:class:`EquivariantPolynomial`)."""
    return FrameModel("small TP", EquivariantPolynomial(**kwargs), output_scale=output_scale)


def gate_points_model(output_scale: float = 1.0, **kwargs: Any) -> FrameModel:
    """The tutorial's e3nn ``gate_points_2101.Network`` (:class:`eqx_tensor.nn.GatePointsNetwork`).

    Defaults are the tutorial's ``model_kwargs``; ``kwargs`` override them.
    """
    settings = {
        "irreps_hidden": HIDDEN_IRREPS,
        "irreps_out": "1x1o",
        "lmax": 3,
        "layers": 3,
        "max_radius": RADIUS,
        "number_of_basis": 10,
        "radial_layers": 1,
        "radial_neurons": 128,
        "num_neighbors": float(NUM_NEIGHBORS),
        "num_nodes": float(N_PARTICLES),
        "reduce_output": False,
    }
    settings.update(kwargs)
    return FrameModel(
        "gate points",
        nn.GatePointsNetwork(**settings),
        output_scale=output_scale,
        radius=settings["max_radius"],
    )


# =============================================================================== training
def _batches(
    n: int, batch_size: int, order: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Index and weight arrays ``(n_batches, batch_size)``; the last batch is padded with
    weight-0 copies of frame 0 so that every batch has the same shape."""
    order = np.arange(n) if order is None else order
    n_batches = -(-n // batch_size)
    index = np.zeros(n_batches * batch_size, dtype=np.int64)
    weight = np.zeros(n_batches * batch_size)
    index[:n], weight[:n] = order, 1.0
    return index.reshape(n_batches, batch_size), weight.reshape(n_batches, batch_size)


def _weighted_mse(prediction: Array, target: Array, weight: Array) -> Array:
    """Mean squared error over the frames of weight 1 (weights ``(frames,)``)."""
    per_frame = jnp.mean((prediction - target) ** 2, axis=(-2, -1))
    return jnp.sum(weight * per_frame) / jnp.maximum(jnp.sum(weight), 1)


def _masked_mse(
    apply: Callable[[Any, Array], Array],
    params: Any,
    dataset: Mapping[str, np.ndarray],
    index: np.ndarray,
    weight: np.ndarray,
) -> float:
    """The weighted MSE of ``apply`` over batches of ``dataset`` (``index``, ``weight``)."""
    total = 0.0
    for rows, w in zip(index, weight):
        error = np.asarray(apply(params, dataset["x"][rows])) - dataset["dx"][rows]
        total += float(np.sum(w * np.mean(error**2, axis=(1, 2))))
    return total / max(float(weight.sum()), 1.0)


def _dataset(part: Mapping[str, np.ndarray], dtype: Any, exclude_kicks: bool) -> dict:
    weight = np.ones(len(part["x"]))
    if exclude_kicks:
        weight = np.where(part["kicks"], 0.0, 1.0)
    return {
        "x": np.asarray(part["x"], dtype=dtype),
        "dx": np.asarray(part["dx"], dtype=dtype),
        "w": weight.astype(dtype),
    }


def train(
    model: FrameModel,
    data: Mapping[str, Mapping[str, np.ndarray]],
    *,
    epochs: int = 100,
    lr: float = 1e-3,
    batch_size: int = 32,
    seed: int = 0,
    shuffle: bool = False,
    exclude_kicks: bool = True,
    dtype: Any = None,
    params: Any = None,
    progress: bool = True,
) -> tuple[Any, dict[str, np.ndarray]]:
    """Train ``model`` on ``data["train"]`` with optax Adam and an MSE loss.

    Every step sees ``batch_size`` frames (one :class:`Systems` of ``batch_size * 12`` atoms
    for graph models, the neighbour list built inside the jitted step); the last batch of an
    epoch is padded with frames of weight 0, so one compilation serves the whole run. Kick steps
    have weight 0 when ``exclude_kicks`` (they are not a function of the positions).

    Args:
        model: a :class:`FrameModel`.
        data: from :func:`split`; ``data["test"]`` is evaluated after every epoch.
        epochs, lr, batch_size, seed: training settings (``seed`` draws the initial parameters
            and the shuffling).
        shuffle: shuffle the training frames every epoch (the tutorial's "shuffle" runs).
        exclude_kicks: give kick steps weight 0 in the loss and in the test MSE.
        dtype: float dtype of the data and parameters; default JAX's default float.
        params: start from these parameters instead of a fresh initialisation.
        progress: show a tqdm progress bar.

    Returns:
        ``(params, logs)``, logs with ``train_loss``, ``test_loss`` and ``seconds`` (wall time
        of each epoch, the first includes compilation), arrays of ``(epochs,)``, and
        ``compilations``, the number of programs the step compiled (1).
    """
    dtype = jnp.result_type(float) if dtype is None else jnp.dtype(dtype)
    train_set = _dataset(data["train"], dtype, exclude_kicks)
    test_set = _dataset(data["test"], dtype, exclude_kicks)
    key_init, key_shuffle = jax.random.split(jax.random.key(seed))
    if params is None:
        params = model.init(key_init, train_set["x"][:batch_size])
    optimizer = optax.adam(lr)
    opt_state = optimizer.init(params)

    def loss_fn(params, x, dx, w):
        return _weighted_mse(model.apply(params, x), dx, w)

    # compile-time-favouring options: the step compiles once per run of a few minutes
    @functools.partial(jax.jit, compiler_options=compiler_options())
    def step(params, opt_state, x, dx, w):
        loss, grads = jax.value_and_grad(loss_fn)(params, x, dx, w)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    # the test loss goes through the compiled program of predict() and evaluate()
    apply = _jitted_apply(model)
    test_index, test_weight = _batches(len(test_set["x"]), batch_size)
    test_weight = test_weight * test_set["w"][test_index]
    rng = np.random.default_rng(np.asarray(jax.random.key_data(key_shuffle))[-1])
    logs = {name: np.zeros(epochs) for name in ("train_loss", "test_loss", "seconds")}
    bar = tqdm(range(epochs), disable=not progress, desc=model.name, mininterval=1.0)
    for epoch in bar:
        start = time.perf_counter()
        order = rng.permutation(len(train_set["x"])) if shuffle else None
        index, pad = _batches(len(train_set["x"]), batch_size, order)
        losses, weights = [], []
        for rows, keep in zip(index, pad):
            w = train_set["w"][rows] * keep.astype(dtype)
            params, opt_state, loss = step(
                params, opt_state, train_set["x"][rows], train_set["dx"][rows], w
            )
            losses.append(loss)
            weights.append(w.sum())
        # one transfer per epoch: the steps are dispatched without waiting for each loss
        logs["train_loss"][epoch] = np.dot(jax.device_get(losses), weights) / max(sum(weights), 1)
        logs["test_loss"][epoch] = _masked_mse(apply, params, test_set, test_index, test_weight)
        logs["seconds"][epoch] = time.perf_counter() - start
        bar.set_description(
            f"{model.name} | epoch {epoch + 1:4d} | train MSE {logs['train_loss'][epoch]:.3e} "
            f"| test MSE {logs['test_loss'][epoch]:.3e}"
        )
    logs["compilations"] = step._cache_size() if hasattr(step, "_cache_size") else -1
    return params, logs


@functools.lru_cache(maxsize=32)
def _jitted_apply(model: FrameModel) -> Callable[[Any, Array], Array]:
    # one compiled program per model and input shape, shared by predict and the metrics
    return jax.jit(model.apply)


def predict(model: FrameModel, params: Any, x: np.ndarray, batch_size: int = 32) -> np.ndarray:
    """Predicted displacements ``(frames, n, 3)`` (NumPy) of frames ``x``, in fixed-size batches."""
    x = np.asarray(x)
    leaves = jax.tree_util.tree_leaves(params)
    dtype = leaves[0].dtype if leaves else jnp.result_type(float)
    index, _ = _batches(len(x), batch_size)
    apply = _jitted_apply(model)
    out = [np.asarray(apply(params, jnp.asarray(x[rows], dtype))) for rows in index]
    return np.concatenate(out)[: len(x)]


def rollout(model: FrameModel, params: Any, x0: np.ndarray, n_steps: int) -> np.ndarray:
    """Iterate the model from one frame: ``x(t+1) = x(t) + model(x(t))``.

    Returns ``(n_steps + 1, n, 3)`` frames starting with ``x0`` ``(n, 3)`` (one compiled
    ``lax.scan``). Compare with ``simulate``'s dynamics without kicks, e.g.
    ``x(t+1) = x(t) + displacement(x(t))``.
    """
    dtype = jax.tree_util.tree_leaves(params)[0].dtype

    @jax.jit
    def run(params, x0):
        def step(x, _):
            x = x + model.apply(params, x[None])[0]
            return x, x

        _, frames = jax.lax.scan(step, x0, length=n_steps)
        return jnp.concatenate([x0[None], frames])

    return np.asarray(run(params, jnp.asarray(x0, dtype)))


# =============================================================================== metrics
def r2_score(y: np.ndarray, y_hat: np.ndarray) -> float:
    """Coefficient of determination ``1 - sum (y - y_hat)^2 / sum (y - mean y)^2`` (1-D inputs).

    ``nan`` when ``y`` is constant (scikit-learn's ``r2_score`` without its special cases).
    """
    y, y_hat = np.asarray(y, dtype=np.float64), np.asarray(y_hat, dtype=np.float64)
    total = np.sum((y - y.mean()) ** 2)
    if total == 0:
        return math.nan
    return float(1 - np.sum((y - y_hat) ** 2) / total)


def correlation_r2(y_hat: np.ndarray, y: np.ndarray, rtol: float = 1e-12) -> dict[str, float]:
    """The tutorial's ``show_correlation`` r^2 columns of frames ``(frames, 12, 3)``.

    ``cm``: the mean over particles and xyz; ``p1 cm``: the first particle's mean over xyz;
    ``p7 x``: particle 7's x; ``p12 y``: the last particle's y. A column whose variance is below
    ``rtol`` times the mean square of ``y`` is constant up to rounding (e.g. the centre of mass of
    the displacements, which pair forces keep at zero): its r^2 is ``nan``.
    """
    y_hat, y = np.asarray(y_hat, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if y_hat.shape != y.shape:
        raise ValueError(f"shapes differ: {y_hat.shape} and {y.shape}")
    columns = {
        "cm": (y.mean(axis=(-2, -1)), y_hat.mean(axis=(-2, -1))),
        "p1 cm": (y.mean(axis=-1)[:, 0], y_hat.mean(axis=-1)[:, 0]),
        "p7 x": (y[:, 6, 0], y_hat[:, 6, 0]),
        "p12 y": (y[:, -1, 1], y_hat[:, -1, 1]),
    }
    scale = np.mean(y**2)
    result = {}
    for name, (truth, guess) in columns.items():
        constant = np.var(truth) <= rtol * scale
        result[name] = math.nan if constant else r2_score(truth, guess)
    return result


@functools.partial(jax.jit, static_argnums=1)
def _random_transform(key: jax.Array, dtype: Any) -> tuple[Array, Array]:
    """A Haar-random rotation times the inversion, and a standard normal translation."""
    key_r, key_t = jax.random.split(key)
    R = o3.random_rotation(key_r, dtype=dtype, improper=True)
    return R, jax.random.normal(key_t, (3,), dtype)


def equivariance_error(
    model: FrameModel, params: Any, x: np.ndarray, key: jax.Array, translation: float = 1.0
) -> float:
    """``max |f(x R^T + t) - f(x) R^T|`` for a random rotation composed with the inversion.

    ``R = -Q`` with ``Q`` Haar-random, ``t`` Gaussian of standard deviation ``translation``
    (displacements do not change under translations); ``x`` ``(frames, n, 3)`` in the dtype of
    the parameters.
    """
    x = jnp.asarray(x, jax.tree_util.tree_leaves(params)[0].dtype)
    R, t = _random_transform(key, x.dtype)
    t = translation * t
    apply = _jitted_apply(model)
    moved = apply(params, x @ R.T + t)
    expected = apply(params, x) @ R.T
    return float(jnp.max(jnp.abs(moved - expected)))


def evaluate(
    model: FrameModel,
    params: Any,
    data: Mapping[str, Mapping[str, np.ndarray]],
    logs: Mapping[str, Any] | None = None,
    *,
    batch_size: int = 32,
    key: jax.Array | None = None,
) -> dict[str, Any]:
    """One row of the study's table for a trained model, on the test frames.

    Returns:
        ``model``; ``test_mse`` (steps without kicks), ``kick_mse`` (kick steps); ``r2_x``: the
        :func:`correlation_r2` columns of the predicted positions ``x + dx_hat`` against
        ``x(t+1)``, and ``r2_dx`` of ``dx_hat`` against ``dx`` (steps without kicks);
        ``equivariance``: :func:`equivariance_error` on the first ``batch_size`` test frames;
        ``seconds_per_epoch`` (median over the epochs after the first, from ``logs``);
        ``prediction``: ``dx_hat`` of every test frame.
    """
    test = data["test"]
    keep = ~np.asarray(test["kicks"], dtype=bool)
    dx_hat = predict(model, params, test["x"], batch_size)
    x, dx = np.asarray(test["x"]), np.asarray(test["dx"])
    row = {
        "model": model.name,
        "test_mse": float(np.mean((dx_hat[keep] - dx[keep]) ** 2)),
        "kick_mse": float(np.mean((dx_hat[~keep] - dx[~keep]) ** 2)) if (~keep).any() else math.nan,
        "r2_x": correlation_r2(x[keep] + dx_hat[keep], x[keep] + dx[keep]),
        "r2_dx": correlation_r2(dx_hat[keep], dx[keep]),
        "equivariance": equivariance_error(
            model, params, x[:batch_size], jax.random.key(1) if key is None else key
        ),
        "seconds_per_epoch": math.nan,
        "prediction": dx_hat,
    }
    if logs is not None and len(logs["seconds"]) > 0:
        seconds = np.asarray(logs["seconds"])
        row["seconds_per_epoch"] = float(np.median(seconds[1:] if len(seconds) > 1 else seconds))
    return row


def zero_predictor_row(data: Mapping[str, Mapping[str, np.ndarray]]) -> dict[str, Any]:
    """The table row of the prediction ``dx = 0``."""
    test = data["test"]
    keep = ~np.asarray(test["kicks"], dtype=bool)
    x, dx = np.asarray(test["x"]), np.asarray(test["dx"])
    return {
        "model": "zero predictor",
        "test_mse": zero_predictor_mse(test),
        "kick_mse": float(np.mean(dx[~keep] ** 2)) if (~keep).any() else math.nan,
        "r2_x": correlation_r2(x[keep], x[keep] + dx[keep]),
        "r2_dx": correlation_r2(np.zeros_like(dx[keep]), dx[keep]),
        "equivariance": 0.0,
        "seconds_per_epoch": math.nan,
        "prediction": np.zeros_like(dx),
    }


def format_table(rows: Sequence[Mapping[str, Any]]) -> str:
    """A Markdown table of :func:`evaluate` rows: MSE, r^2 on positions and displacements, ..."""
    header = ["model", "test MSE", "kick MSE"]
    header += [f"x {c}" for c in CORRELATION_COLUMNS] + [f"dx {c}" for c in CORRELATION_COLUMNS]
    header += ["equivariance err", "s / epoch"]

    def number(value: float, fmt: str) -> str:
        return "n/a" if value is None or math.isnan(value) else format(value, fmt)

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        cells = [row["model"], number(row["test_mse"], ".2e"), number(row["kick_mse"], ".2e")]
        cells += [number(row["r2_x"][c], ".6f") for c in CORRELATION_COLUMNS]
        cells += [number(row["r2_dx"][c], ".4f") for c in CORRELATION_COLUMNS]
        cells += [number(row["equivariance"], ".2e"), number(row["seconds_per_epoch"], ".2f")]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


# =============================================================================== plots
def _save(fig: Any, path: str | Path | None) -> Any:
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=100, bbox_inches="tight")
    return fig


def _bonds(frame: np.ndarray, bond_length: float) -> list[tuple[int, int]]:
    r = np.linalg.norm(frame[:, None] - frame[None], axis=-1)
    i, j = np.nonzero(np.triu(r < bond_length, k=1))
    return list(zip(i.tolist(), j.tolist()))


def plot_frames(
    positions: np.ndarray,
    frames: Sequence[int] = (0, 1, 2, 9, 500, 2000),
    bond_length: float = SpringModel().bond_length,
    path: str | Path | None = None,
) -> Any:
    """The tutorial's first plot (frames 0, 1, 2, 9) and two later frames, bonds drawn.

    Bonds are the pairs closer than ``bond_length`` (inside the spring well).
    """
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 6))
    colors = plt.get_cmap("tab10")
    for k, t in enumerate(t for t in frames if t < len(positions)):
        frame = positions[t]
        for i, j in _bonds(frame, bond_length):
            ax.plot(frame[[i, j], 0], frame[[i, j], 1], "-", color=colors(k), alpha=0.4)
        ax.plot(frame[:, 0], frame[:, 1], "o", color=colors(k), alpha=0.6, label=f"frame {t}")
    ax.set_aspect("equal")
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return _save(fig, path)


def plot_correlation(
    y_hat: np.ndarray, y: np.ndarray, title: str = "", path: str | Path | None = None
) -> Any:
    """The tutorial's ``show_correlation``: the four r^2 columns as scatter plots."""
    import matplotlib.pyplot as plt

    r2 = correlation_r2(y_hat, y)
    columns = {
        "cm": (y.mean(axis=(-2, -1)), y_hat.mean(axis=(-2, -1))),
        "p1 cm": (y.mean(axis=-1)[:, 0], y_hat.mean(axis=-1)[:, 0]),
        "p7 x": (y[:, 6, 0], y_hat[:, 6, 0]),
        "p12 y": (y[:, -1, 1], y_hat[:, -1, 1]),
    }
    fig, axes = plt.subplots(1, 4, figsize=(20, 5))
    for ax, (name, (truth, guess)) in zip(axes, columns.items()):
        ax.plot(truth, truth, "-", color="black")
        ax.plot(truth, guess, ".")
        ax.set_title(f"{title} {name}, rsq = {r2[name]: .4f}".strip())
    return _save(fig, path)


def plot_trajectories(
    y_hat: np.ndarray,
    y: np.ndarray,
    interval: int = 25,
    title: str = "",
    bond_length: float = SpringModel().bond_length,
    path: str | Path | None = None,
) -> Any:
    """The tutorial's ``compare_trajectories``: every ``interval``-th frame, true and predicted.

    Frames ``(n_frames, n, 3)`` are drawn in the plane, coloured by time (blue to red), with the
    bonds of the true frame (``r < bond_length``) in both panels.
    """
    import matplotlib.pyplot as plt

    n = y.shape[0]
    fig, axes = plt.subplots(1, 2, squeeze=True, figsize=(12, 6))
    axes[0].set_title("Trajectory")
    axes[1].set_title(f"Predicted trajectory {title}".strip())
    cmap = plt.get_cmap("coolwarm")
    for i in range(0, n, interval):
        bonds = _bonds(y[i], bond_length)
        for ax, frames in zip(axes, (y, y_hat)):
            for a, b in bonds:
                ax.plot(
                    frames[i, [a, b], 0], frames[i, [a, b], 1], "-", alpha=0.2, color=cmap(i / n)
                )
            ax.plot(frames[i, :, 0], frames[i, :, 1], ".", alpha=0.5, color=cmap(i / n))
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_aspect("equal")
    return _save(fig, path)


def plot_losses(
    logs: Mapping[str, Mapping[str, np.ndarray]],
    zero_mse: float | None = None,
    path: str | Path | None = None,
) -> Any:
    """Train and test MSE per epoch of several runs (``{name: logs}``), zero predictor dashed."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5))
    for k, (name, log) in enumerate(logs.items()):
        color = plt.get_cmap("tab10")(k)
        epochs = np.arange(1, len(log["test_loss"]) + 1)
        ax.plot(epochs, log["train_loss"], "--", color=color, alpha=0.6)
        ax.plot(epochs, log["test_loss"], "-", color=color, label=f"{name} (test)")
    if zero_mse is not None:
        ax.axhline(zero_mse, color="black", linestyle=":", label="zero predictor (test)")
    ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel("MSE (dashed: train)")
    ax.legend(loc="upper right")
    return _save(fig, path)
