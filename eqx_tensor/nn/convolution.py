"""Gated tensor-product point convolutions: e3nn's ``gate_points_2101`` network over TensorMaps.

Layout
------
Node features are TensorMaps keyed by ``(o3_lambda, o3_sigma)`` whose blocks ``(n_atoms, 2l+1,
mul)`` (components ``o3_mu``, metatensor's real spherical-harmonics basis) have one row per atom
slot of the batch. Inside the layers they are plain ``{(l, sigma): array}`` dicts, the layout of
the array-level tensor-product kernel (:func:`eqx_tensor.o3.tensor_product`), so the TensorMap
layer only wraps and unwraps arrays.

Edges are given as index arrays ``senders``/``receivers`` (``(n_pairs,)``) and an ``edge_mask``.
With :mod:`eqx_tensor.atomistic` neighbour lists (``vector = r[second] - r[first]``) the
sender is ``second_atom`` and the receiver ``first_atom``: e3nn's ``edge_vec = pos[src] -
pos[dst]``. Masked (padding) pairs contribute exactly zero.

:class:`Convolution` is e3nn's ``gate_points_2101.Convolution``: self-connection ``sc`` and
``lin1``/``lin2`` (fully connected products with the node attributes), a channel-wise ("uvu")
product of the sender's features with the edge attributes whose per-edge weights come from an
MLP of the radial embedding, a sum over neighbours divided by ``sqrt(num_neighbors)``, and the
``sin(pi/8)``/``cos(pi/8)`` mix with the self-connection. :class:`GatePointsNetwork` is
``gate_points_2101.Network``: radial Gaussian embedding, smooth cutoff, edge spherical
harmonics, ``layers`` convolutions each followed by a :func:`gate`-style nonlinearity, and a
last convolution to ``irreps_out``.

Weights and numbers are e3nn's: the coupling coefficients are basis independent, so with the
weights copied by :func:`gate_points_from_e3nn` the network gives e3nn's outputs (converted
between the two bases, :func:`eqx_tensor.o3.change_of_basis`). Activations are normalised to
unit second moment as in e3nn; e3nn (torch) estimates the constants by Monte Carlo,
:func:`gate_points_from_e3nn` copies them so that the outputs agree to round-off.

Differences from e3nn: pairs come from the caller's neighbour list (e3nn recomputes a radius
graph and drops coincident points, ``r > 0``; ours keeps them, with finite values and
gradients), and irreps that list one irrep twice (``"8x0e+8x0e"``) are refused: a TensorMap
has one block per key (write ``"16x0e"``).
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from ..block import TensorBlock
from ..labels import Labels
from ..o3 import tensor_product as kernel_tensor_product
from ..o3 import tensor_product_plan as kernel_plan
from ..o3.conventions import O3_LAMBDA, O3_MU, O3_SIGMA, irrep_to_key
from ..o3.spherical_harmonics import spherical_harmonics_array
from ..tensormap import TensorMap
from ._compiled import Compiled
from ._utils import range_properties
from .radial import safe_norm, soft_one_hot_linspace

__all__ = [
    "ACTIVATIONS",
    "Convolution",
    "GatePointsNetwork",
    "activation_constants",
    "convolution_structure",
    "smooth_cutoff",
]

Array = Any
Key = tuple[int, int]
Irreps = tuple[tuple[Key, int], ...]

#: e3nn's activations of gate_points: by parity of the scalar (``+1`` even, ``-1`` odd).
ACTIVATIONS = {
    "silu": jax.nn.silu,
    "tanh": jnp.tanh,
    "sigmoid": jax.nn.sigmoid,
}


# ----------------------------------------------------------------------------- irreps helpers
def _segments(irreps: Any, what: str) -> tuple[tuple[Key, int], ...]:
    """e3nn irreps (string, ``e3nn_jax.Irreps`` or ``((key, mul), ...)``) as key, mul pairs."""
    if irreps is None:
        return ()
    if isinstance(irreps, (tuple, list)) and all(
        isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], tuple) for item in irreps
    ):
        segments = tuple((tuple(int(v) for v in key), int(mul)) for key, mul in irreps)
    elif isinstance(irreps, str):  # parsed here: no e3nn-jax import for a string
        segments = tuple(_parse_segment(item, irreps, what) for item in irreps.split("+"))
        segments = () if segments == ((None, 0),) else segments
    else:
        import e3nn_jax as e3nn

        segments = tuple((irrep_to_key(str(ir)), int(mul)) for mul, ir in e3nn.Irreps(irreps))
    keys = [key for key, _ in segments]
    if len(set(keys)) != len(keys):
        raise ValueError(
            f"{what}: {irreps!r} lists an irrep more than once; a TensorMap has one block per "
            "(o3_lambda, o3_sigma): merge them (e.g. '16x0e' instead of '8x0e+8x0e')"
        )
    return tuple((key, mul) for key, mul in segments if mul > 0)


_SEGMENT_RE = re.compile(r"^\s*(?:(\d+)\s*x\s*)?(\d+[eoy])\s*$")


def _parse_segment(item: str, irreps: str, what: str) -> tuple[Key | None, int]:
    """One ``"8x1o"`` / ``"1o"`` item of an e3nn irreps string as ``(key, mul)``."""
    if not item.strip() and not irreps.strip():  # "" is no irreps, as in e3nn
        return None, 0
    match = _SEGMENT_RE.match(item)
    if match is None:
        raise ValueError(
            f"{what}: cannot read {item.strip()!r} in the irreps {irreps!r}; write e3nn's "
            "notation, e.g. '8x0e+16x1o+4x2e'"
        )
    mul, irrep = match.groups()
    return irrep_to_key(irrep), 1 if mul is None else int(mul)


def _coupled(in1: Key, in2: Key) -> list[Key]:
    (l1, s1), (l2, s2) = in1, in2
    return [(l3, s1 * s2 * (-1) ** (l1 + l2 + l3)) for l3 in range(abs(l1 - l2), l1 + l2 + 1)]


def _path_exists(irreps1: Irreps, irreps2: Irreps, out: Key) -> bool:
    return any(out in _coupled(k1, k2) for k1, _ in irreps1 for k2, _ in irreps2)


def _sort_key(key: Key) -> tuple[int, int]:
    return key[0], -key[1]


# ----------------------------------------------------------------------------- static structure
@dataclass(frozen=True)
class ConvolutionStructure:
    """Static description of one convolution: irreps and the four tensor-product plans.

    ``irreps_out`` is the convolution's output in block order; outputs that no path of ``sc`` /
    ``lin2`` reaches are zero there (as in e3nn). ``mid`` is the channel-wise product's output
    (``tp.irreps_out``), whose channels are e3nn's sorted ``irreps_mid``.
    """

    irreps_in: Irreps
    irreps_attr: Irreps
    irreps_edge: Irreps
    irreps_out: Irreps
    sc: Any
    lin1: Any
    tp: Any
    lin2: Any | None

    @property
    def sc_outputs(self) -> frozenset:
        return frozenset(key for key, _ in self.sc.irreps_out) if self.sc else frozenset()


def _fc_plan(irreps1: Irreps, irreps2: Irreps, irreps_out: Irreps):
    reachable = tuple((k, m) for k, m in irreps_out if _path_exists(irreps1, irreps2, k))
    if not reachable:
        return None
    return kernel_plan(irreps1, irreps2, "fully_connected", irreps_out=reachable)


@functools.lru_cache(maxsize=64)
def convolution_structure(
    irreps_in: Irreps, irreps_attr: Irreps, irreps_edge: Irreps, irreps_out: Irreps
) -> ConvolutionStructure:
    """The plans of a :class:`Convolution` (cached: planning walks every coupling once)."""
    out_keys = [key for key, _ in irreps_out]
    tp = kernel_plan(irreps_in, irreps_edge, "channelwise", filter_out=out_keys)
    if not tp.irreps_out:
        raise ValueError(
            f"Convolution: no output of {[k for k, _ in irreps_out]} is reachable from the "
            f"features {[k for k, _ in irreps_in]} and edge attributes "
            f"{[k for k, _ in irreps_edge]}"
        )
    return ConvolutionStructure(
        irreps_in,
        irreps_attr,
        irreps_edge,
        irreps_out,
        _fc_plan(irreps_in, irreps_attr, irreps_out),
        _fc_plan(irreps_in, irreps_attr, irreps_in),
        tp,
        _fc_plan(tp.irreps_out, irreps_attr, irreps_out),
    )


@dataclass(frozen=True)
class GateStructure:
    """e3nn's ``Gate`` of one hidden layer, laid out on blocks.

    ``scalars``: ``((key, mul), ...)`` activated scalars (first channels of their block);
    ``gate_key``: the block holding the gates after the scalars of that key; ``gated``:
    ``((key, mul), ...)`` gated blocks in gate order; ``irreps_in`` the convolution output
    (sorted, one block per key), ``irreps_out`` the gate output in e3nn's order.
    """

    scalars: Irreps
    gate_key: Key
    gated: Irreps
    irreps_in: Irreps
    irreps_out: Irreps


def _gate_structure(hidden: Irreps, irreps: Irreps, edge: Irreps) -> GateStructure:
    scalars = tuple((k, m) for k, m in hidden if k[0] == 0 and _path_exists(irreps, edge, k))
    gated = tuple((k, m) for k, m in hidden if k[0] > 0 and _path_exists(irreps, edge, k))
    gate_key = (0, 1) if _path_exists(irreps, edge, (0, 1)) else (0, -1)
    merged: dict[Key, int] = {}
    for key, mul in (*scalars, *((gate_key, m) for _, m in gated), *gated):
        merged[key] = merged.get(key, 0) + mul
    irreps_in = tuple((key, merged[key]) for key in sorted(merged, key=_sort_key))
    gate_sigma = gate_key[1]
    out = (*scalars, *(((l, sigma * gate_sigma), m) for (l, sigma), m in gated))
    return GateStructure(scalars, gate_key, gated, irreps_in, out)


@dataclass(frozen=True)
class NetworkStructure:
    """Per layer ``(convolution, gate or None)``; the last layer has no gate."""

    layers: tuple[tuple[ConvolutionStructure, GateStructure | None], ...]
    irreps_in: Irreps
    irreps_attr: Irreps
    irreps_edge: Irreps
    irreps_out: Irreps


@functools.lru_cache(maxsize=64)
def network_structure(
    irreps_in: Irreps, hidden: Irreps, irreps_out: Irreps, attr: Irreps, lmax: int, layers: int
) -> NetworkStructure:
    """The static structure of :class:`GatePointsNetwork` (e3nn's construction, step by step)."""
    edge = tuple(((l, 1), 1) for l in range(lmax + 1))
    irreps = irreps_in
    result = []
    for _ in range(layers):
        gate = _gate_structure(hidden, irreps, edge)
        result.append((convolution_structure(irreps, attr, edge, gate.irreps_in), gate))
        irreps = gate.irreps_out
    result.append((convolution_structure(irreps, attr, edge, irreps_out), None))
    return NetworkStructure(tuple(result), irreps_in, attr, edge, irreps_out)


# ----------------------------------------------------------------------------- functions
def smooth_cutoff(x: Array) -> Array:
    """e3nn's ``smooth_cutoff`` of ``x = r / r_max``: 1 below 0.5, ``(1 - cos(2 pi (x-1)))/2`` to
    0 at 1, 0 beyond; shape of ``x``. Smooth derivative everywhere (no NaN at any ``x``)."""
    u = 2.0 * (x - 1.0)
    y = (1.0 - jnp.cos(jnp.pi * u)) / 2.0
    return jnp.where(u > 0, 0.0, jnp.where(u < -1, 1.0, y))


# the same functions in NumPy, for constants computed once in float64 whatever jax_enable_x64 says
_NUMPY_ACTIVATIONS = {
    "silu": lambda v: v / (1 + np.exp(-v)),
    "tanh": np.tanh,
    "sigmoid": lambda v: 1 / (1 + np.exp(-v)),
}


def _second_moment_constant(name: str) -> float:
    # e3nn-jax's normalize_function: mean of f^2 on 1_000_001 normal quantiles, in float64
    from scipy.special import erfinv  # scipy ships with jax

    x = np.sqrt(2.0) * erfinv(np.linspace(-1.0, 1.0, 1_000_003)[1:-1])
    c = float(np.mean(_NUMPY_ACTIVATIONS[name](x) ** 2) ** -0.5)
    return 1.0 if abs(c - 1.0) < 1e-4 else c


@functools.cache
def activation_constants() -> tuple[tuple[str, float], ...]:
    """``((name, c), ...)``: ``c * f`` has unit second moment under ``N(0, 1)`` (quadrature)."""
    return tuple((name, _second_moment_constant(name)) for name in ACTIVATIONS)


def _constants(given: Sequence[tuple[str, float]] | None) -> dict[str, float]:
    constants = dict(activation_constants())
    if given is not None:
        constants.update({name: float(c) for name, c in given})
    return constants


# ----------------------------------------------------------------------------- the layers
def _zeros_like_block(key: Key, mul: int, n: int, dtype) -> Array:
    return jnp.zeros((n, 2 * key[0] + 1, mul), dtype)


def _fc(plan, x1, x2, weight, irreps_out: Irreps, n: int, dtype) -> dict[Key, Array]:
    """Fully connected product; outputs that no path reaches are zero (e3nn's convention)."""
    out = {} if plan is None else kernel_tensor_product(plan, x1, x2, weight)
    return {k: out[k] if k in out else _zeros_like_block(k, m, n, dtype) for k, m in irreps_out}


class Convolution(Compiled, nn.Module):
    """e3nn's ``gate_points_2101.Convolution`` on ``{(l, sigma): (n, 2l+1, mul)}`` blocks.

    Attributes:
        irreps_out: output irreps (e3nn string like ``"8x0e+4x1o"`` or ``((key, mul), ...)``).
        number_of_basis: size of the radial embedding.
        radial_layers, radial_neurons: hidden layers of the radial MLP.
        num_neighbors: typical number of neighbours (the sum is divided by its square root).
        constants: ``((activation name, normalisation constant), ...)`` overriding
            :func:`activation_constants` (the converter passes e3nn's).

    ``__call__(node_features, node_attrs, edge_attrs, edge_embedding, senders, receivers,
    edge_mask=None)``:

    - ``node_features``: TensorMap or ``{key: (n_atoms, 2l+1, mul)}``;
    - ``node_attrs``: same, e.g. ``{(0, 1): ones (n_atoms, 1, 1)}``;
    - ``edge_attrs``: TensorMap or ``{(l, 1): (n_pairs, 2l+1, 1)}`` (cutoff times harmonics);
    - ``edge_embedding``: ``(n_pairs, number_of_basis)``;
    - ``senders``, ``receivers``: ``(n_pairs,)`` atom indices; ``edge_mask`` ``(n_pairs,)`` bool.

    Returns the same kind as ``node_features`` (TensorMap with the same samples, or dict), blocks
    ``(n_atoms, 2l+1, mul)`` for ``irreps_out``.
    """

    irreps_out: Any
    number_of_basis: int = 10
    radial_layers: int = 1
    radial_neurons: int = 100
    num_neighbors: float = 1.0
    constants: tuple[tuple[str, float], ...] | None = None

    @nn.compact
    def __call__(
        self,
        node_features: TensorMap | dict,
        node_attrs: TensorMap | dict,
        edge_attrs: TensorMap | dict,
        edge_embedding: Array,
        senders: Array,
        receivers: Array,
        edge_mask: Array | None = None,
    ) -> TensorMap | dict:
        as_tensor = isinstance(node_features, TensorMap)
        x = _as_blocks(node_features, "node_features")
        z = _as_blocks(node_attrs, "node_attrs")
        y = _as_blocks(edge_attrs, "edge_attrs")
        structure = convolution_structure(
            _irreps(x), _irreps(z), _irreps(y), _segments(self.irreps_out, "irreps_out")
        )
        out = _convolution(self, structure, x, z, y, edge_embedding, senders, receivers, edge_mask)
        if not as_tensor:
            return out
        return _to_tensor(out, node_features.block_by_id(0).samples)


def _convolution(
    module: nn.Module,
    s: ConvolutionStructure,
    x: dict,
    z: dict,
    y: dict,
    embedding: Array,
    senders: Array,
    receivers: Array,
    mask: Array | None,
) -> dict[Key, Array]:
    """The convolution proper, parameters created on ``module`` (see :class:`Convolution`)."""
    n = next(iter(x.values())).shape[0]
    dtype = jnp.result_type(*x.values(), embedding)
    init = nn.initializers.normal(1.0)
    constants = _constants(module.constants)

    def weight(name, plan):
        if plan is None:
            return None
        return module.param(name, init, (plan.n_weights,), dtype)

    sc = _fc(s.sc, x, z, weight("sc", s.sc), s.irreps_out, n, dtype)
    h = _fc(s.lin1, x, z, weight("lin1", s.lin1), s.irreps_in, n, dtype)

    # radial MLP: e3nn's FullyConnectedNet, weights N(0, 1) divided by sqrt(fan_in)
    sizes = [module.number_of_basis, *[module.radial_neurons] * module.radial_layers]
    sizes.append(s.tp.n_weights)
    w = embedding
    for i in range(len(sizes) - 1):
        kernel = module.param(f"fc_{i}", init, (sizes[i], sizes[i + 1]), dtype)
        w = w @ (kernel / math.sqrt(sizes[i]))
        if i < len(sizes) - 2:
            w = constants["silu"] * jax.nn.silu(w)

    sent = {key: jnp.take(h[key], senders, axis=0) for key in h}
    edges = kernel_tensor_product(s.tp, sent, y, w)
    norm = 1.0 / math.sqrt(module.num_neighbors)
    mid = {}
    for key, value in edges.items():
        if mask is not None:
            value = jnp.where(mask[:, None, None], value, 0.0)
        mid[key] = jax.ops.segment_sum(value, receivers, num_segments=n) * norm
    out = _fc(s.lin2, mid, z, weight("lin2", s.lin2), s.irreps_out, n, dtype)
    c_s, c_x = math.sin(math.pi / 8), math.cos(math.pi / 8)
    return {
        key: c_s * sc[key] + c_x * out[key] if key in s.sc_outputs else out[key]
        for key, _ in s.irreps_out
    }


def _gate(g: GateStructure, x: dict[Key, Array], constants: dict[str, float]) -> dict:
    """e3nn's ``Gate`` of gate_points: silu / tanh on scalars, sigmoid / tanh gates."""

    def act(key, values):
        name = "silu" if key[1] == 1 else "tanh"
        return constants[name] * ACTIVATIONS[name](values)

    out: dict[Key, Array] = {}
    used: dict[Key, int] = {}
    for key, mul in g.scalars:
        start = used.get(key, 0)
        out[key] = act(key, x[key][..., start : start + mul])
        used[key] = start + mul
    gate_name = "sigmoid" if g.gate_key[1] == 1 else "tanh"
    gates = x[g.gate_key][..., used.get(g.gate_key, 0) :]
    gates = constants[gate_name] * ACTIVATIONS[gate_name](gates)
    start = 0
    for (l, sigma), mul in g.gated:
        out[(l, sigma * g.gate_key[1])] = x[(l, sigma)] * gates[..., start : start + mul]
        start += mul
    return {key: out[key] for key, _ in g.irreps_out}


class GatePointsNetwork(Compiled, nn.Module):
    """e3nn's ``gate_points_2101.Network`` over TensorMaps.

    Attributes (e3nn's constructor arguments; irreps as e3nn strings or ``((key, mul), ...)``):
        irreps_in: node input features, or ``None`` (a constant ``1x0e`` per atom).
        irreps_hidden: features between layers (gated).
        irreps_out: output features.
        irreps_node_attr: node attributes, or ``None`` (a constant ``1x0e``).
        lmax: edge attributes are the spherical harmonics ``0..lmax`` (e3nn's
            ``irreps_edge_attr = Irreps.spherical_harmonics(lmax)``).
        layers: number of gated layers (a last convolution follows).
        max_radius: radial cutoff of the embedding and of the smooth cutoff.
        number_of_basis, radial_layers, radial_neurons: radial embedding and MLP.
        num_neighbors: typical number of neighbours within ``max_radius``.
        num_nodes: typical number of atoms of a system (for ``reduce_output``).
        reduce_output: sum the outputs over each system's atoms, divided by ``sqrt(num_nodes)``.
        constants: activation normalisation constants (see :class:`Convolution`).

    ``__call__(systems, pairs, node_features=None, node_attrs=None)``:

    - ``systems``: an :class:`eqx_tensor.atomistic.Systems` (reads ``n_atoms``, ``system``,
      ``atom_mask``, ``n_systems`` and ``samples()``);
    - ``pairs``: an :class:`eqx_tensor.atomistic.NeighborList` with ``cutoff >= max_radius``
      (reads ``vectors (n_pairs, 3)``, ``first_atom``/``second_atom``, ``mask``);
    - ``node_features`` / ``node_attrs``: TensorMaps keyed by ``(o3_lambda, o3_sigma)`` with
      blocks ``(n_atoms, 2l+1, mul)`` matching ``irreps_in`` / ``irreps_node_attr``.

    Returns a TensorMap keyed by ``(o3_lambda, o3_sigma)`` (``irreps_out`` order), blocks
    ``(n_atoms, 2l+1, mul)`` with samples ``systems.samples()``, or with
    ``reduce_output`` blocks ``(n_systems, 2l+1, mul)`` with samples ``["system"]``. Padding
    atoms give zero outputs.
    """

    irreps_in: Any = None
    irreps_hidden: Any = "8x0e+8x0o+16x1e+16x1o+8x2e+8x2o"
    irreps_out: Any = "1x1o"
    irreps_node_attr: Any = None
    lmax: int = 3
    layers: int = 3
    max_radius: float = 3.5
    number_of_basis: int = 10
    radial_layers: int = 1
    radial_neurons: int = 128
    num_neighbors: float = 11.0
    num_nodes: float = 12.0
    reduce_output: bool = True
    constants: tuple[tuple[str, float], ...] | None = None

    def structure(self) -> NetworkStructure:
        """The static layer structure (irreps and tensor-product plans of every layer)."""
        irreps_in = _segments(self.irreps_in, "irreps_in") or (((0, 1), 1),)
        attr = _segments(self.irreps_node_attr, "irreps_node_attr") or (((0, 1), 1),)
        return network_structure(
            irreps_in,
            _segments(self.irreps_hidden, "irreps_hidden"),
            _segments(self.irreps_out, "irreps_out"),
            attr,
            int(self.lmax),
            int(self.layers),
        )

    @nn.compact
    def __call__(
        self,
        systems: Any,
        pairs: Any,
        node_features: TensorMap | None = None,
        node_attrs: TensorMap | None = None,
    ) -> TensorMap:
        structure = self.structure()
        n = systems.positions.shape[0]
        vectors = pairs.vectors
        dtype = vectors.dtype
        if self.irreps_in is None:
            if node_features is not None:
                raise ValueError("GatePointsNetwork: irreps_in=None takes no node_features")
            x = {(0, 1): jnp.ones((n, 1, 1), dtype)}
        else:
            x = _checked(node_features, structure.irreps_in, n, "node_features")
        if self.irreps_node_attr is None:
            if node_attrs is not None:
                raise ValueError("GatePointsNetwork: irreps_node_attr=None takes no node_attrs")
            z = {(0, 1): jnp.ones((n, 1, 1), dtype)}
        else:
            z = _checked(node_attrs, structure.irreps_attr, n, "node_attrs")

        mask = pairs.mask
        lengths = safe_norm(vectors)
        embedding = soft_one_hot_linspace(
            lengths,
            start=0.0,
            end=float(self.max_radius),
            number=int(self.number_of_basis),
            basis="gaussian",
            cutoff=False,
        ) * math.sqrt(self.number_of_basis)
        cutoff = smooth_cutoff(lengths / self.max_radius) * mask.astype(dtype)
        harmonics = spherical_harmonics_array(
            self.lmax, vectors, normalize=True, normalization="component"
        )
        y = {(l, 1): (harmonics[l] * cutoff[:, None])[..., None] for l in range(self.lmax + 1)}
        senders, receivers = pairs.second_atom, pairs.first_atom
        constants = _constants(self.constants)

        for i, (conv, gate) in enumerate(structure.layers):
            layer = _Layer(
                self.number_of_basis,
                self.radial_layers,
                self.radial_neurons,
                self.num_neighbors,
                self.constants,
                name=f"layer_{i}",
            )
            x = layer(conv, x, z, y, embedding, senders, receivers, mask)
            if gate is not None:
                x = _gate(gate, x, constants)

        atom_mask = systems.atom_mask
        x = {key: jnp.where(atom_mask[:, None, None], v, 0.0) for key, v in x.items()}
        if not self.reduce_output:
            return _to_tensor(x, systems.samples())
        norm = 1.0 / math.sqrt(self.num_nodes)
        reduced = {
            key: jax.ops.segment_sum(v, systems.system, num_segments=systems.n_systems) * norm
            for key, v in x.items()
        }
        samples = Labels(["system"], jnp.arange(systems.n_systems, dtype=jnp.int32)[:, None])
        return _to_tensor(reduced, samples)


class _Layer(nn.Module):
    """Parameter scope of one convolution of :class:`GatePointsNetwork`."""

    number_of_basis: int
    radial_layers: int
    radial_neurons: int
    num_neighbors: float
    constants: tuple[tuple[str, float], ...] | None

    @nn.compact
    def __call__(self, structure, x, z, y, embedding, senders, receivers, mask):
        return _convolution(self, structure, x, z, y, embedding, senders, receivers, mask)


# ----------------------------------------------------------------------------- TensorMap glue
def _irreps(blocks: dict[Key, Array]) -> Irreps:
    return tuple((key, int(v.shape[-1])) for key, v in blocks.items())


def _as_blocks(tensor: TensorMap | dict, what: str) -> dict[Key, Array]:
    if isinstance(tensor, dict):
        return {tuple(int(v) for v in key): value for key, value in tensor.items()}
    if not isinstance(tensor, TensorMap):
        raise TypeError(f"{what} must be a TensorMap or a dict of blocks, got {type(tensor)}")
    if sorted(tensor.keys.names) != sorted([O3_LAMBDA, O3_SIGMA]):
        raise ValueError(
            f"{what}: keys must be exactly ('o3_lambda', 'o3_sigma'), got {tensor.keys.names}"
        )
    blocks = {}
    for entry, block in zip(tensor.keys, tensor.blocks()):
        key = (int(entry[O3_LAMBDA]), int(entry[O3_SIGMA]))
        if block.gradients_list():
            raise ValueError(
                f"{what}: block {key} has explicit gradients {block.gradients_list()}, which "
                "this layer does not propagate; remove them first (remove_gradients)"
            )
        if block.values.ndim != 3 or block.values.shape[1] != 2 * key[0] + 1:
            raise ValueError(
                f"{what}: block {key} must have shape (n, {2 * key[0] + 1}, mul), got "
                f"{block.values.shape}"
            )
        blocks[key] = jnp.asarray(block.values)
    return blocks


def _checked(tensor: TensorMap | None, irreps: Irreps, n: int, what: str) -> dict[Key, Array]:
    if tensor is None:
        raise ValueError(f"GatePointsNetwork: {what} are required for irreps {irreps}")
    blocks = _as_blocks(tensor, what)
    expected = dict(irreps)
    got = {key: int(v.shape[-1]) for key, v in blocks.items()}
    if got != expected:
        raise ValueError(
            f"GatePointsNetwork: {what} has blocks {got} (key: properties), the network was "
            f"built for {expected}"
        )
    for key, value in blocks.items():
        if value.shape[0] != n:
            raise ValueError(
                f"GatePointsNetwork: block {key} of {what} has {value.shape[0]} samples, the "
                f"systems have {n} atom slots"
            )
    return {key: blocks[key] for key, _ in irreps}


def _to_tensor(blocks: dict[Key, Array], samples: Labels) -> TensorMap:
    keys = Labels([O3_LAMBDA, O3_SIGMA], np.array(list(blocks), dtype=np.int32).reshape(-1, 2))
    out = []
    for (l, _), value in blocks.items():
        mu = Labels([O3_MU], np.arange(-l, l + 1, dtype=np.int32).reshape(-1, 1))
        out.append(TensorBlock(value, samples, [mu], range_properties(value.shape[-1])))
    return TensorMap(keys, out)


# ----------------------------------------------------------------------------- e3nn converter
def gate_points_from_e3nn(
    network: Any, *, dtype: Any = None, **constructor_arguments: Any
) -> tuple[GatePointsNetwork, dict]:
    """Our :class:`GatePointsNetwork` and parameters from a torch e3nn ``gate_points_2101.Network``.

    Args:
        network: the trained torch module, or its ``state_dict()`` together with the
            constructor arguments of ``e3nn.nn.models.gate_points_2101.Network`` as keywords
            (then the module is rebuilt from them; e3nn and torch must be importable).
        dtype: dtype of the parameters (default: float64 if ``jax_enable_x64`` else float32).
        constructor_arguments: see ``network``.

    Returns:
        ``(model, params)`` such that ``model.apply(params, systems, pairs)`` gives e3nn's
        outputs, in our basis (:func:`eqx_tensor.o3.change_of_basis`), for the same points and
        a neighbour list of cutoff ``max_radius``. The activation normalisation constants are
        e3nn's (``e3nn.math.normalize2mom``, a Monte-Carlo estimate) and stored in
        ``model.constants``.

    The uvu weights e3nn orders by instruction become our per-output channel order (a fixed
    permutation of the radial MLP's last layer); the fully connected weights are moved path by
    path. Irreps listing an irrep twice are refused, as in :class:`GatePointsNetwork`.
    """
    import torch
    from e3nn.math import normalize2mom
    from e3nn.nn.models.gate_points_2101 import Network

    if not isinstance(network, torch.nn.Module):
        # float64 parameters, so that a float64 state dict loads without rounding
        module = Network(**constructor_arguments).double()
        module.load_state_dict(network)
        network = module
    elif constructor_arguments:
        raise TypeError("constructor arguments are only for a state_dict, not for a module")
    if dtype is None:
        dtype = jnp.float64 if jax.config.jax_enable_x64 else jnp.float32

    edge = [(irrep_to_key(str(ir)), mul) for mul, ir in network.irreps_edge_attr]
    lmax = len(edge) - 1
    if edge != [((l, 1), 1) for l in range(lmax + 1)]:
        raise ValueError(
            f"irreps_edge_attr must be the spherical harmonics 0..lmax, got "
            f"{network.irreps_edge_attr}"
        )
    convolutions = [layer.first for layer in network.layers[:-1]] + [network.layers[-1]]
    first = convolutions[0]
    hidden_sizes = [first.fc.layer0.weight.shape[1]] if len(list(first.fc.children())) > 1 else []
    radial_layers = len(list(first.fc.children())) - 1

    def irreps(value):
        return None if value is None else str(value)

    constants = tuple(
        (name, float(normalize2mom(fn).cst) if not normalize2mom(fn)._is_id else 1.0)
        for name, fn in (
            ("silu", torch.nn.functional.silu),
            ("tanh", torch.tanh),
            ("sigmoid", torch.sigmoid),
        )
    )
    model = GatePointsNetwork(
        irreps_in=irreps(network.irreps_in),
        irreps_hidden=str(network.irreps_hidden),
        irreps_out=str(network.irreps_out),
        irreps_node_attr=str(network.irreps_node_attr) if network.input_has_node_attr else None,
        lmax=lmax,
        layers=len(network.layers) - 1,
        max_radius=float(network.max_radius),
        number_of_basis=int(network.number_of_basis),
        radial_layers=radial_layers,
        radial_neurons=int(hidden_sizes[0]) if hidden_sizes else 1,
        num_neighbors=float(network.num_neighbors),
        num_nodes=float(network.num_nodes),
        reduce_output=bool(network.reduce_output),
        constants=constants,
    )
    structure = model.structure()
    params = {}
    for i, (conv, (ours, _)) in enumerate(zip(convolutions, structure.layers)):
        layer = {}
        for name, plan in (("sc", ours.sc), ("lin1", ours.lin1), ("lin2", ours.lin2)):
            if plan is not None:
                layer[name] = _fully_connected_weights(getattr(conv, name), plan, dtype)
        fc = [child.weight.detach().cpu().double().numpy() for child in conv.fc.children()]
        fc[-1] = fc[-1][:, _uvu_permutation(conv.tp, ours.tp)]
        for j, w in enumerate(fc):
            layer[f"fc_{j}"] = jnp.asarray(w, dtype)
        params[f"layer_{i}"] = layer
    return model, {"params": params}


def _segment_offsets(irreps: Any) -> list[tuple[Key, int, int]]:
    """``(key, mul, channel offset within our block)`` of each e3nn segment."""
    used: dict[Key, int] = {}
    result = []
    for mul, ir in irreps:
        key = irrep_to_key(str(ir))
        result.append((key, mul, used.get(key, 0)))
        used[key] = used.get(key, 0) + mul
    return result


def _fully_connected_weights(tp: Any, plan: Any, dtype: Any) -> Array:
    """e3nn ``FullyConnectedTensorProduct`` weights in the layout of our fully connected plan."""
    seg1, seg2 = _segment_offsets(tp.irreps_in1), _segment_offsets(tp.irreps_in2)
    seg_out = _segment_offsets(tp.irreps_out)
    muls2, muls_out = dict(plan.irreps_in2), dict(plan.irreps_out)
    out_offset, rows, start = {}, {}, 0
    for out, mul in plan.irreps_out:
        out_offset[out] = start
        start += plan.product_channels(out) * mul
        row = 0
        for path in plan.paths_to(out):
            rows[(path.in1, path.in2, out)] = row
            row += path.mul1 * path.mul2
    weights = np.zeros(plan.n_weights)
    flat = tp.weight.detach().cpu().double().numpy()
    position = 0
    for ins in tp.instructions:
        (k1, m1, o1), (k2, m2, o2) = seg1[ins.i_in1], seg2[ins.i_in2]
        ko, mo, oo = seg_out[ins.i_out]
        w = flat[position : position + m1 * m2 * mo].reshape(m1, m2, mo)
        position += m1 * m2 * mo
        u, v, c = np.meshgrid(np.arange(m1), np.arange(m2), np.arange(mo), indexing="ij")
        row = rows[(k1, k2, ko)] + (o1 + u) * muls2[k2] + (o2 + v)
        weights[out_offset[ko] + row * muls_out[ko] + oo + c] = w
    return jnp.asarray(weights, dtype)


def _uvu_permutation(tp: Any, plan: Any) -> np.ndarray:
    """Column ``j`` of our per-edge weights is e3nn's column ``perm[j]``."""
    seg1, seg2 = _segment_offsets(tp.irreps_in1), _segment_offsets(tp.irreps_in2)
    seg_out = _segment_offsets(tp.irreps_out)
    offset, start = {}, 0
    for out, _ in plan.irreps_out:
        channel = 0
        for path in plan.paths_to(out):
            offset[(path.in1, path.in2, out)] = start + channel
            channel += path.mul1
        start += plan.product_channels(out)
    perm = np.full(plan.n_weights, -1)
    position = 0
    for ins in tp.instructions:
        (k1, m1, o1), (k2, _, _) = seg1[ins.i_in1], seg2[ins.i_in2]
        ko = seg_out[ins.i_out][0]
        perm[offset[(k1, k2, ko)] + o1 + np.arange(m1)] = position + np.arange(m1)
        position += m1
    if (perm < 0).any() or position != plan.n_weights:
        raise ValueError("the e3nn convolution's instructions do not match our plan")
    return perm
