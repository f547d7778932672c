"""Clebsch-Gordan tensor products of irrep blocks: array-level kernels.

Layout and keys
---------------
An input is a mapping ``{(l, sigma): array}`` of irrep blocks in the metatensor layout
``(*batch, 2l+1, mul)`` (samples, ``o3_mu`` components, properties), keyed by ``(o3_lambda,
o3_sigma)``. The leading ``batch`` axes of the two inputs (and of per-sample weights) broadcast.
A product of ``(l1, sigma1)`` and ``(l2, sigma2)`` contains ``(l3, sigma3)`` for every
``|l1 - l2| <= l3 <= l1 + l2``, with ``sigma3 = sigma1 * sigma2 * (-1)**(l1 + l2 + l3)`` (parities
multiply). One such triple is a *path*.

The kernels only need the Clebsch-Gordan tensors of the basis the blocks are written in
(``clebsch_gordan(l1, l2, l3)``, shape ``(2l1+1, 2l2+1, 2l3+1)``, default
:func:`eqx_tensor.o3.clebsch_gordan`, metatensor basis). Coupling tensors are intertwiners, so a
frame relabelling ``D'(R) = D(P R P^T)`` leaves them unchanged: e3nn-jax's coefficients and ours are
the same numbers, and the kernels give e3nn-jax's results in either basis. Only the shape and the
phase of a provider's tensor are used: each is rescaled to unit Frobenius norm (e3nn's convention)
before the normalisation below is applied.

Modes
-----
With ``y_p[..., k, (u, v)] = sum_ij C_p[i, j, k] x1[..., i, u] x2[..., j, v]`` the normalised
product of path ``p`` (``C_p`` includes the normalisation factors):

``"full"``
    e3nn-jax's ``tensor_product``: output block ``(l3, sigma3)`` is the concatenation over its
    paths of the ``mul1 * mul2`` channels ``y_p`` (u major, v minor). No weights.
``"channelwise"``
    the "uvu" product of NequIP / MACE convolutions: ``mul2`` is 1 (broadcast) or ``mul1``
    (channel ``u`` times channel ``u``); each path gives ``mul1`` channels
    ``sum_ij C_p[i, j, k] x1[..., i, u] x2[..., j, u or 0]``, concatenated over the paths of an
    output, optionally multiplied by one weight per output channel (shared, or per sample, e.g. per
    edge from a radial network).
``"fully_connected"``
    the "uvw" product of ``e3nn.o3.FullyConnectedTensorProduct``:
    ``out[..., k, w] = sum_p sum_uv y_p[..., k, (u, v)] W_p[u, v, w]`` with the output
    multiplicities given by ``irreps_out``; weights required (shared or per sample).

Normalisation (e3nn-jax's defaults)
-----------------------------------
``irrep_normalization="component"`` scales the unit-norm CG tensor by ``sqrt(2l3+1)`` so that
products of unit-variance components have unit-variance components (``"norm"``:
``sqrt((2l1+1)(2l2+1))``, ``"none"``: 1). In ``"fully_connected"`` mode the paths of an output are
summed, so ``path_normalization="element"`` further divides by ``sqrt(sum_p mul1_p mul2_p)`` (the
number of summed terms: every element contributes equally) and ``"path"`` by
``sqrt(n_paths * mul1_p * mul2_p)`` (every path contributes equally). The factor multiplies the
path (e3nn's ``gradient_normalization="path"``), so unit-variance weights give unit-variance
outputs: initialise weights with a standard normal. ``"full"`` and ``"channelwise"`` give each path
its own channels and apply only the irrep normalisation, as ``e3nn_jax.tensor_product`` does.

Implementation
--------------
The paths of one output are stacked into one ``(*batch, 2l3+1, sum_p channels)`` array ``y``;
``"fully_connected"`` then does one matrix product ``y @ W`` per output, all its paths stacked on
the contraction axis. Three ways to build ``y``, same numbers:

- ``"fused"``: ``x2`` is contracted with the coupling coefficients of all paths in one matrix
  product, then each group of ``x1`` blocks of equal ``l`` is multiplied in with one batched
  contraction (in a channel-wise product evaluated without differentiation, a sum over the
  ``2l+1`` components of broadcast products, which XLA runs faster than a batch of tiny matrix
  products); a few traced operations per group and per path, whatever the number of non-zero
  coefficients. Best on channel-wise products of many channels with per-sample weights (the
  convolution workload of ``benchmarks/tensor_product.py``).
- ``"compact"``: the group products of ``"fused"``, each output then taken from them with one
  gather: a few operations per group and per output, none per path, so the fastest to compile;
  its gradient scatters, which runs slower than ``"fused"`` on large batches.
- ``"dense"``: one einsum with the dense coupling tensor per path (e3nn-jax's approach);
  compiles in time proportional to the number of paths. Best on the fully connected product and
  on products of single channels.
- ``"unrolled"``: one element-wise multiply-add per group of non-zero coefficients; fast to run,
  but its compile time grows with the number of non-zero coefficients (minutes for ``l = 5``).

``method="auto"`` (default) takes ``"compact"`` when a call does at most ``2**22`` multiply-adds
(samples times :meth:`TensorProductPlan.multiply_adds`: small graphs, where compiling costs far
more than running), otherwise ``"fused"`` for channel-wise products whose first operand has at
least 4 channels per block and ``"dense"`` for the rest, so that no irreps need a slow compile.
Large fully connected batches on the CPU are cut into chunks (``chunk_size``) so that ``y``
stays in cache. ``benchmarks/tensor_product.py`` times every method against e3nn-jax.
"""

from __future__ import annotations

import functools
import math
import operator
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, fields
from typing import Any, Literal

import jax
import jax.numpy as jnp
import numpy as np

from .clebsch_gordan import clebsch_gordan as _default_clebsch_gordan
from .conventions import product_sigma

Key = tuple[int, int]
"""``(o3_lambda, o3_sigma)`` of an irrep block."""

Irreps = tuple[tuple[Key, int], ...]
"""Blocks of one operand as ``((key, multiplicity), ...)``, in order."""

ClebschGordan = Callable[[int, int, int], np.ndarray]
"""``(l1, l2, l3) -> C`` of shape ``(2l1+1, 2l2+1, 2l3+1)``."""

Mode = Literal["full", "channelwise", "fully_connected"]
MODES: tuple[str, ...] = ("full", "channelwise", "fully_connected")
Method = Literal["auto", "fused", "compact", "unrolled", "dense"]
METHODS: tuple[str, ...] = ("auto", "fused", "compact", "unrolled", "dense")
IRREP_NORMALIZATIONS: tuple[str, ...] = ("component", "norm", "none")
PATH_NORMALIZATIONS: tuple[str, ...] = ("element", "path")
#: Accepted values of ``unreachable`` (:func:`tensor_product_plan`).
UNREACHABLE: tuple[str, ...] = ("error", "zeros")

# CG entries below this (relative to the largest) are structural zeros left by basis changes
_ZERO_TOLERANCE = 1e-12

# channels from which the channel-wise group contraction is unrolled over components when not
# differentiated (_contract_components): with fewer the unrolled sums compile slower than the
# dot and run no faster
_MIN_UNROLLED_CHANNELS = 4


def _cached_hash(obj: Any) -> int:
    """Hash of a frozen dataclass's fields, computed once and kept on the instance."""
    try:
        return obj.__dict__["_hash"]
    except KeyError:
        value = hash(tuple(getattr(obj, f.name) for f in fields(obj)))
        object.__setattr__(obj, "_hash", value)
        return value


@dataclass(frozen=True)
class Path:
    """One coupling ``in1 (x) in2 -> out`` with its normalised, non-zero CG entries.

    ``coefficients`` holds ``(i, j, k, value)`` sorted by ``k``: ``value`` is the CG entry times the
    irrep and path normalisation factors, i.e. exactly the number the kernel multiplies by.
    """

    in1: Key
    in2: Key
    out: Key
    mul1: int
    mul2: int
    coefficients: tuple[tuple[int, int, int, float], ...]

    @property
    def dims(self) -> tuple[int, int, int]:
        """``(2l1+1, 2l2+1, 2l3+1)``."""
        return 2 * self.in1[0] + 1, 2 * self.in2[0] + 1, 2 * self.out[0] + 1

    def __hash__(self) -> int:
        return _cached_hash(self)

    def dense(self) -> np.ndarray:
        """The normalised CG tensor, shape ``(2l1+1, 2l2+1, 2l3+1)``, float64."""
        tensor = np.zeros(self.dims)
        for i, j, k, value in self.coefficients:
            tensor[i, j, k] = value
        return tensor


@dataclass(frozen=True)
class TensorProductPlan:
    """Static description of a tensor product: hashable, no arrays, safe as a jit static argument.

    Build it with :func:`tensor_product_plan`. ``irreps_out`` lists every output block with its
    multiplicity, in output order; ``paths`` are grouped by output in that order, and within an
    output ordered by the position of ``in1`` in ``irreps_in1``, then of ``in2`` in ``irreps_in2``
    (e3nn-jax's order).
    """

    mode: str
    irreps_in1: Irreps
    irreps_in2: Irreps
    irreps_out: Irreps
    paths: tuple[Path, ...]

    def __hash__(self) -> int:
        # plans key the caches of every eager call (layouts, jit): hash the fields once
        return _cached_hash(self)

    def paths_to(self, out: Key) -> tuple[Path, ...]:
        """The paths into output block ``out``, in order."""
        return tuple(path for path in self.paths if path.out == out)

    def n_channels(self, path: Path) -> int:
        """Channels of the product of one path before weights: ``mul1*mul2``, or ``mul1``."""
        return path.mul1 if self.mode == "channelwise" else path.mul1 * path.mul2

    def product_channels(self, out: Key) -> int:
        """``K``: channels of the stacked products ``y`` of output ``out`` (all its paths)."""
        return sum(self.n_channels(path) for path in self.paths_to(out))

    def weight_shapes(self) -> dict[Key, tuple[int, ...]]:
        """Shape of the shared weights of each output block; empty for ``"full"`` mode.

        ``"fully_connected"``: ``(K, mul_out)``, whose rows are the paths' ``(u, v)`` channels
        stacked in path order, so that the rows of path ``p`` reshape to e3nn's
        ``(mul1, mul2, mul_out)`` weights of the path. ``"channelwise"``: ``(K,)``, one weight per
        output channel. Per-sample weights add the leading batch axes.
        """
        if self.mode == "full":
            return {}
        if self.mode == "channelwise":
            return {out: (self.product_channels(out),) for out, _ in self.irreps_out}
        return {out: (self.product_channels(out), mul) for out, mul in self.irreps_out}

    @property
    def n_weights(self) -> int:
        """Length of the flat weight vector: the weight shapes' sizes, summed in output order."""
        return sum(math.prod(shape) for shape in self.weight_shapes().values())

    def multiply_adds(self) -> dict[str, int]:
        """Useful multiply-adds per sample, counting only non-zero CG entries.

        ``"products"``: building the path products ``y`` (non-zero CG entries times channels);
        ``"weights"``: applying the weights (``(2l3+1) K mul_out`` for a fully connected output,
        ``(2l3+1) K`` for weighted channels); ``"total"``: their sum, the work of this kernel.
        ``"per_path"``: the count of the direct, unfactored per-path contraction
        ``sum_{ijk,uvw} W_p[u, v, w] C_p[i, j, k] x1[i, u] x2[j, v]``, i.e. non-zero CG entries
        times all multiplicities (``mul1 mul2 mul_out`` per path), as often quoted for e3nn.
        """
        products = sum(len(path.coefficients) * self.n_channels(path) for path in self.paths)
        weights = 0
        per_path = products
        if self.mode != "full":
            shapes = self.weight_shapes()
            for out, shape in shapes.items():
                weights += (2 * out[0] + 1) * math.prod(shape)
            if self.mode == "fully_connected":
                muls = dict(self.irreps_out)
                per_path = sum(
                    len(p.coefficients) * p.mul1 * p.mul2 * muls[p.out] for p in self.paths
                )
        return {
            "products": products,
            "weights": weights,
            "total": products + weights,
            "per_path": per_path,
        }


def coupled_keys(in1: Key, in2: Key) -> list[Key]:
    """All ``(l3, sigma3)`` in the product of blocks ``in1`` and ``in2``, by increasing ``l3``.

    ``sigma3 = sigma1 * sigma2 * (-1)**(l1 + l2 + l3)``: parities multiply.
    """
    (l1, sigma1), (l2, sigma2) = in1, in2
    return [
        (l3, product_sigma(l1, sigma1, l2, sigma2, l3)) for l3 in range(abs(l1 - l2), l1 + l2 + 1)
    ]


def irreps_of(blocks: Mapping[Key, jax.Array]) -> Irreps:
    """``((key, mul), ...)`` of a mapping of ``(*batch, 2l+1, mul)`` blocks, in mapping order."""
    return tuple((_check_key(key), int(array.shape[-1])) for key, array in blocks.items())


def key_order(key: Key) -> tuple[int, int]:
    """Sort key of e3nn-jax's irreps order: by ``l``, then ``o3_sigma=+1`` first: 0e 0o 1o 1e."""
    return key[0], -key[1]


def tensor_product_plan(
    irreps_in1: Iterable[tuple[Key, int]],
    irreps_in2: Iterable[tuple[Key, int]],
    mode: Mode = "fully_connected",
    *,
    irreps_out: Iterable[tuple[Key, int]] | None = None,
    filter_out: Iterable[int | Key] | None = None,
    irrep_normalization: str = "component",
    path_normalization: str = "element",
    clebsch_gordan: ClebschGordan | None = None,
    unreachable: str = "error",
) -> TensorProductPlan:
    """Plan the tensor product of two sets of irrep blocks.

    Args:
        irreps_in1, irreps_in2: ``((l, sigma), mul)`` of each input block, in order (e.g.
            :func:`irreps_of` of the input mappings).
        mode: ``"full"``, ``"channelwise"`` or ``"fully_connected"`` (see the module docstring).
        irreps_out: ``"fully_connected"`` only, and required there: ``((l, sigma), mul_out)`` of
            each output block, in output order. See ``unreachable`` for blocks that no path
            produces.
        filter_out: keep only the outputs whose key (``(l, sigma)``) or ``o3_lambda`` (an ``int``)
            is listed; ``None`` keeps every output.
        irrep_normalization: ``"component"`` (default), ``"norm"`` or ``"none"``.
        path_normalization: ``"element"`` (default) or ``"path"``; used by ``"fully_connected"``.
        clebsch_gordan: CG provider; default :func:`eqx_tensor.o3.clebsch_gordan`.
        unreachable: what to do with blocks of ``irreps_out`` that no path of the inputs (and
            filter) produces: ``"error"`` (default) raises a ``ValueError`` naming them;
            ``"zeros"`` keeps them, with no paths and no weights, and :func:`tensor_product`
            returns zeros for them (e3nn's ``FullyConnectedTensorProduct`` does that).

    Returns:
        The plan. Outputs of ``"full"`` / ``"channelwise"`` are every reachable block passing the
        filter, in e3nn-jax's order (:func:`key_order`), with multiplicity ``sum_p mul1*mul2`` /
        ``sum_p mul1``.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if unreachable not in UNREACHABLE:
        raise ValueError(f"unreachable must be one of {UNREACHABLE}, got {unreachable!r}")
    if irrep_normalization not in IRREP_NORMALIZATIONS:
        raise ValueError(
            f"irrep_normalization must be one of {IRREP_NORMALIZATIONS}, "
            f"got {irrep_normalization!r}"
        )
    if path_normalization not in PATH_NORMALIZATIONS:
        raise ValueError(
            f"path_normalization must be one of {PATH_NORMALIZATIONS}, got {path_normalization!r}"
        )
    clebsch_gordan = clebsch_gordan or _default_clebsch_gordan
    irreps_in1 = _check_irreps(irreps_in1, "irreps_in1")
    irreps_in2 = _check_irreps(irreps_in2, "irreps_in2")
    keep = _output_filter(filter_out)

    couplings = [
        (in1, mul1, in2, mul2, out)
        for in1, mul1 in irreps_in1
        for in2, mul2 in irreps_in2
        for out in coupled_keys(in1, in2)
        if keep(out)
    ]
    if mode == "channelwise":
        for in1, mul1, in2, mul2, _ in couplings:
            if mul2 not in (1, mul1):
                raise ValueError(
                    f"channelwise product needs mul2 = 1 or mul2 = mul1, got {mul1} for {in1} "
                    f"and {mul2} for {in2}"
                )
    reachable = {out for *_, out in couplings}

    if mode == "fully_connected":
        if irreps_out is None:
            raise ValueError("a fully connected product needs irreps_out")
        irreps_out = _check_irreps(irreps_out, "irreps_out")
        missing = [out for out, _ in irreps_out if out not in reachable]
        if missing and unreachable == "error":
            raise ValueError(
                f"no path of the inputs (and filter) produces the outputs {missing}; remove them "
                "from irreps_out, or pass unreachable='zeros' to get zero blocks for them (as "
                "e3nn does)"
            )
    else:
        if irreps_out is not None:
            raise ValueError(f"irreps_out is for fully connected products, not {mode!r} ones")
        channels = {}
        for _, mul1, _, mul2, out in couplings:
            channels[out] = channels.get(out, 0) + (mul1 if mode == "channelwise" else mul1 * mul2)
        irreps_out = tuple((out, channels[out]) for out in sorted(channels, key=key_order))

    paths = []
    for out, _ in irreps_out:
        into = [(in1, mul1, in2, mul2) for in1, mul1, in2, mul2, o in couplings if o == out]
        elements = [mul1 * mul2 for _, mul1, _, mul2 in into]
        for (in1, mul1, in2, mul2), n_elements in zip(into, elements):
            scale = _irrep_factor(in1[0], in2[0], out[0], irrep_normalization)
            if mode == "fully_connected":
                # number of (path, u, v) terms summed into one output entry
                summed = (
                    sum(elements) if path_normalization == "element" else len(into) * n_elements
                )
                scale /= math.sqrt(summed)
            cg = _unit_cg(clebsch_gordan, in1[0], in2[0], out[0])
            paths.append(Path(in1, in2, out, mul1, mul2, _sparse_entries(scale * cg)))
    return TensorProductPlan(mode, irreps_in1, irreps_in2, irreps_out, tuple(paths))


def tensor_product(
    plan: TensorProductPlan,
    x1: Mapping[Key, jax.Array],
    x2: Mapping[Key, jax.Array],
    weights: jax.Array | Mapping[Key, jax.Array] | None = None,
    *,
    method: Method = "auto",
    chunk_size: int | Literal["auto"] | None = "auto",
) -> dict[Key, jax.Array]:
    """Apply a planned tensor product to blocks.

    Args:
        plan: from :func:`tensor_product_plan`.
        x1: ``{key: (*batch, 2l+1, mul)}`` for every block of ``plan.irreps_in1`` (extra blocks
            are ignored).
        x2: same for ``plan.irreps_in2``; batch axes broadcast with ``x1``'s.
        weights: ``"full"``: ``None``. ``"channelwise"``: optional. ``"fully_connected"``: required.
            Either flat, shape ``(n_weights,)`` shared or ``(*batch, n_weights)`` per sample
            (``plan.n_weights``, outputs in order, each output's weights row-major), or a mapping
            ``{out: w}`` with ``w`` of ``plan.weight_shapes()[out]``, optionally with leading
            per-sample batch axes.
        method: ``"auto"`` (default), ``"fused"``, ``"compact"``, ``"dense"`` or
            ``"unrolled"``: how the path products are built (module docstring,
            "Implementation"). Same numbers.
        chunk_size: process the (flattened, broadcast) batch in chunks of this many samples with
            ``lax.map``, so that the products ``y`` of a chunk stay in cache instead of making a
            round trip through memory before the weight matrix product. ``"auto"``: chunks of
            about 8 MiB of products, for fully connected products on the CPU backend only, when
            the batch has at least two; ``None``: never.

    Returns:
        ``{out: (*batch, 2l3+1, mul_out)}`` for every block of ``plan.irreps_out``, in order
        (``jax.jit`` returns dicts with sorted keys), in the dtype of the inputs and weights.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    _check_blocks(x1, plan.irreps_in1, "x1")
    _check_blocks(x2, plan.irreps_in2, "x2")
    if not plan.irreps_out:  # e.g. a filter that keeps nothing
        return {}
    x1 = {key: x1[key] for key, _ in plan.irreps_in1}
    x2 = {key: x2[key] for key, _ in plan.irreps_in2}
    weights_out = _split_weights(plan, weights)
    shapes = plan.weight_shapes()
    per_sample = {out: w for out, w in weights_out.items() if w.ndim > len(shapes[out])}
    batch_shape = jnp.broadcast_shapes(
        *(x.shape[:-2] for x in (*x1.values(), *x2.values())),
        *(w.shape[: -len(shapes[out])] for out, w in per_sample.items()),
    )

    n_samples = math.prod(batch_shape)
    if method == "auto":
        method = auto_method(plan, n_samples)

    def apply(x1, x2, per_sample):
        return _apply(plan, x1, x2, {**weights_out, **per_sample}, method)

    chunk = _chunk_samples(plan, chunk_size, jnp.result_type(*x1.values()).itemsize)
    if chunk is None or n_samples < 2 * chunk:
        return apply(x1, x2, per_sample)
    trailing = {out: len(shapes[out]) for out in per_sample}
    chunks = (
        {key: _to_chunks(x, batch_shape, 2, chunk) for key, x in x1.items()},
        {key: _to_chunks(x, batch_shape, 2, chunk) for key, x in x2.items()},
        {out: _to_chunks(w, batch_shape, trailing[out], chunk) for out, w in per_sample.items()},
    )
    outputs = jax.lax.map(lambda args: apply(*args), chunks)
    return {out: _from_chunks(outputs[out], batch_shape, n_samples) for out, _ in plan.irreps_out}


def auto_method(plan: TensorProductPlan, n_samples: int | None = None) -> str:
    """The method ``method="auto"`` takes for ``plan`` on ``n_samples`` samples (module doc)."""
    if n_samples is not None and n_samples * _work(plan) <= _COMPACT_WORK:
        return "compact"
    if plan.mode == "channelwise" and min(mul for _, mul in plan.irreps_in1) >= 4:
        return "fused"
    return "dense"


# below this many multiply-adds per call the run time is negligible next to the compile time
_COMPACT_WORK = 2**22


@functools.lru_cache(maxsize=256)
def _work(plan: TensorProductPlan) -> int:
    return plan.multiply_adds()["total"]


def _apply(
    plan: TensorProductPlan,
    x1: Mapping[Key, jax.Array],
    x2: Mapping[Key, jax.Array],
    weights: Mapping[Key, jax.Array],
    method: Method,
) -> dict[Key, jax.Array]:
    """The tensor product on validated blocks, weights split by output (see tensor_product)."""
    diagonal = plan.mode == "channelwise"
    rows1, rows2 = _ComponentRows(x1, diagonal, 1), _ComponentRows(x2, diagonal, 2)
    if all(key[0] == 0 for key, _ in plan.irreps_in2):
        fused = _products_scalar_second(plan, x1, x2)  # any method: the same, simplest program
    else:
        fused = {"fused": _products_fused, "compact": _products_compact}.get(method)
        fused = None if fused is None else fused(plan, x1, x2)
    result = {}
    for out, mul in plan.irreps_out:
        paths = plan.paths_to(out)
        if not paths:  # an unreachable output kept as zeros (unreachable="zeros")
            result[out] = _zeros(out, mul, x1, x2, weights, plan)
            continue
        if fused is not None:
            y = fused[out]
        elif method == "unrolled":
            y = _products_unrolled(paths, rows1, rows2, diagonal)
        else:
            y = _products_dense(paths, x1, x2, diagonal)
        w = weights.get(out)
        if w is None:
            result[out] = y
        elif plan.mode == "channelwise":
            result[out] = y * w[..., None, :]
        elif w.ndim == 2:
            result[out] = y @ w
        else:
            result[out] = jnp.einsum("...kc,...cw->...kw", y, w)
    return result


def _zeros(
    out: Key,
    mul: int,
    x1: Mapping[Key, jax.Array],
    x2: Mapping[Key, jax.Array],
    weights: Mapping[Key, jax.Array],
    plan: TensorProductPlan,
) -> jax.Array:
    """Zeros ``(*batch, 2l+1, mul)`` in the dtype and batch shape of the other outputs."""
    shapes = plan.weight_shapes()
    per_sample = [w.shape[: w.ndim - len(shapes[o])] for o, w in weights.items() if o in shapes]
    batch = jnp.broadcast_shapes(*(x.shape[:-2] for x in (*x1.values(), *x2.values())), *per_sample)
    dtype = jnp.result_type(*x1.values(), *x2.values(), *weights.values())
    return jnp.zeros((*batch, 2 * out[0] + 1, mul), dtype)


class _ComponentRows:
    """Component slices ``x[key][..., i, :]`` of one operand, each traced once per call.

    For the outer product (``diagonal=False``) the rows of the first operand get a trailing axis
    and those of the second a penultimate one, so that their product is ``(*batch, u, v)``.
    """

    def __init__(self, blocks: Mapping[Key, jax.Array], diagonal: bool, operand: int):
        self._blocks = blocks
        self._expand = None if diagonal else (-1 if operand == 1 else -2)
        self._rows: dict[tuple[Key, int], jax.Array] = {}

    def __call__(self, key: Key, i: int) -> jax.Array:
        if (key, i) not in self._rows:
            row = self._blocks[key][..., i, :]
            self._rows[(key, i)] = (
                row if self._expand is None else jnp.expand_dims(row, self._expand)
            )
        return self._rows[(key, i)]


@dataclass(frozen=True, eq=False)
class _FusedGroup:
    """Paths sharing ``l1`` and the multiplicity ``mul2`` of ``x2``: one coefficient matrix.

    ``combos`` are the distinct ``(in2, l3)`` couplings of the group, each ``2l3+1`` columns of
    ``matrix`` (shape ``(J, (2l1+1) K)``, rows the components of ``blocks2`` concatenated, columns
    ``(i, k)`` row-major); ``blocks1`` the ``x1`` blocks of degree ``l1`` the group reads,
    concatenated along channels.
    """

    l1: int
    mul2: int
    combos: tuple[tuple[Key, int], ...]
    blocks1: tuple[Key, ...]
    blocks2: tuple[Key, ...]
    matrix: np.ndarray


@functools.lru_cache(maxsize=256)
def _fused_layout(
    plan: TensorProductPlan,
) -> tuple[tuple[_FusedGroup, ...], dict[Path, tuple[int, int, float]]]:
    """Groups of :func:`_products_fused` and, per path, ``(group, combo, scale)``.

    ``scale`` is the path's normalisation relative to the group's coefficients (fully connected
    products normalise the paths of one coupling differently when their outputs differ).
    """
    muls2 = dict(plan.irreps_in2)
    order1 = {key: i for i, (key, _) in enumerate(plan.irreps_in1)}
    order2 = {key: i for i, (key, _) in enumerate(plan.irreps_in2)}
    grouped: dict[tuple[int, int], list[Path]] = {}
    for path in plan.paths:
        grouped.setdefault((path.in1[0], muls2[path.in2]), []).append(path)
    groups, where = [], {}
    for (l1, mul2), paths in sorted(grouped.items()):
        reference: dict[tuple[Key, int], np.ndarray] = {}
        for path in paths:
            reference.setdefault((path.in2, path.out[0]), path.dense())
        combos = sorted(reference, key=lambda c: (order2[c[0]], c[1]))
        blocks1 = tuple(sorted({path.in1 for path in paths}, key=order1.get))
        blocks2 = tuple(sorted({in2 for in2, _ in combos}, key=order2.get))
        starts, rows = {}, 0
        for key in blocks2:
            starts[key] = rows
            rows += 2 * key[0] + 1
        d1 = 2 * l1 + 1
        columns = []
        for combo in combos:
            cg = reference[combo]  # (d1, d2, d3)
            block = np.zeros((rows, d1, cg.shape[2]))
            block[starts[combo[0]] : starts[combo[0]] + cg.shape[1]] = cg.transpose(1, 0, 2)
            columns.append(block)
        matrix = np.concatenate(columns, axis=2).reshape(rows, -1)
        groups.append(_FusedGroup(l1, mul2, tuple(combos), blocks1, blocks2, matrix))
        for path in paths:
            ref = reference[(path.in2, path.out[0])]
            scale = float(np.sum(path.dense() * ref) / np.sum(ref * ref))
            where[path] = (len(groups) - 1, combos.index((path.in2, path.out[0])), scale)
    return tuple(groups), where


def _group_products(
    plan: TensorProductPlan, x1: Mapping[Key, jax.Array], x2: Mapping[Key, jax.Array]
) -> list[list[jax.Array]]:
    """The products of every group of :func:`_fused_layout`, before they are cut into paths.

    Per group (paths of one ``l1`` and one ``x2`` multiplicity): ``M = x2 @ C``, one matrix
    product over all the group's couplings, shape ``(*batch, 2l1+1, K, mul2)``; then one
    contraction over the ``2l1+1`` components with the ``x1`` blocks of degree ``l1``. Returns,
    per group, the arrays holding its paths: one ``(*batch, K, U[, mul2])`` array (the group's
    ``x1`` blocks concatenated along channels, ``U`` channels), or for the channel-wise product
    with ``mul2 > 1`` one ``(*batch, K, mul1)`` array per ``x1`` block.
    """
    groups, _ = _fused_layout(plan)
    diagonal = plan.mode == "channelwise"
    dtype = jnp.result_type(*x1.values(), *x2.values())
    products = []
    for group in groups:
        d1 = 2 * group.l1 + 1
        second = jnp.concatenate([x2[key] for key in group.blocks2], axis=-2)
        m = jnp.einsum("...jv,jx->...xv", second, jnp.asarray(group.matrix, dtype))
        n_columns = group.matrix.shape[1] // d1
        m = m.reshape(*m.shape[:-2], d1, n_columns, group.mul2)  # (*batch, d1, K, v)
        if diagonal and group.mul2 > 1:
            # channel u of x1 meets channel u of x2: one contraction per x1 block
            products.append(
                [jnp.einsum("...iku,...iu->...ku", m, x1[key]) for key in group.blocks1]
            )
            continue
        first = jnp.concatenate([x1[key] for key in group.blocks1], axis=-1)  # (*batch, d1, U)
        if diagonal:
            m = m[..., 0]
            unrolled = first.shape[-1] >= _MIN_UNROLLED_CHANNELS
            products.append([(_contract_components if unrolled else _dot_components)(m, first)])
        else:
            products.append([jnp.einsum("...ikv,...iu->...kuv", m, first)])
    return products


def _dot_components(m: jax.Array, x: jax.Array) -> jax.Array:
    """``(*batch, d1, K)`` x ``(*batch, d1, U)`` -> ``(*batch, K, U)``, summed over ``d1``."""
    return jnp.einsum("...ik,...iu->...ku", m, x)


@jax.custom_jvp
def _contract_components(m: jax.Array, x: jax.Array) -> jax.Array:
    """:func:`_dot_components` as a sum of ``d1`` (``2l1+1``) broadcast products.

    Evaluated without differentiation (inference), one loop kernel: XLA's CPU backend runs the
    batched product of tiny matrices as a dot several times slower
    (``benchmarks/tensor_product.py``, channel-wise forward). Under differentiation value and
    tangents are the dot's: their transposes are dots that run well, and an unrolled value
    there fuses into every consumer of the products, which costs seconds of compilation of a
    training step for no faster step. Forward and reverse mode and their compositions all work.
    """
    return functools.reduce(
        operator.add, (m[..., i, :, None] * x[..., i, None, :] for i in range(m.shape[-2]))
    )


def _contract_components_jvp(primals, tangents):
    m, x = primals
    dm, dx = tangents
    terms = []
    if not isinstance(dm, jax.custom_derivatives.SymbolicZero):
        terms.append(_dot_components(dm, x))
    if not isinstance(dx, jax.custom_derivatives.SymbolicZero):
        terms.append(_dot_components(m, dx))
    value = _dot_components(m, x)
    tangent = functools.reduce(operator.add, terms) if terms else jnp.zeros_like(value)
    return value, tangent


# symbolic zeros: a tangent that is zero (e.g. of the harmonics when only weights are trained)
# costs nothing, instead of a product with an array of zeros
_contract_components.defjvp(_contract_components_jvp, symbolic_zeros=True)


def _products_fused(
    plan: TensorProductPlan, x1: Mapping[Key, jax.Array], x2: Mapping[Key, jax.Array]
) -> dict[Key, jax.Array]:
    """Stacked path products ``y`` of every output, ``{out: (*batch, 2l3+1, K)}`` (module doc).

    The group products of :func:`_group_products`, each path a piece of them cut out with
    ``jnp.split`` (whose transpose is a concatenation, not a pad per piece), then concatenated
    per output: a few operations per group and per path whatever the number of non-zero
    Clebsch-Gordan entries.
    """
    groups, where = _fused_layout(plan)
    diagonal = plan.mode == "channelwise"
    muls1 = dict(plan.irreps_in1)
    pieces = []  # per group, per combo, per x1 block: (*batch, 2l3+1, mul1[*mul2])
    for group, arrays in zip(groups, _group_products(plan, x1, x2)):
        sizes = np.cumsum([2 * l3 + 1 for _, l3 in group.combos])[:-1]
        if len(arrays) > 1:  # one array per x1 block
            per_block = [jnp.split(y, sizes, axis=-2) for y in arrays]
            pieces.append([[blocks[c] for blocks in per_block] for c in range(len(sizes) + 1)])
            continue
        (y,) = arrays
        channel_sizes = np.cumsum([muls1[key] for key in group.blocks1])[:-1]
        per_combo = []
        for piece in jnp.split(y, sizes, axis=y.ndim - (2 if diagonal else 3)):
            blocks = jnp.split(piece, channel_sizes, axis=piece.ndim - (1 if diagonal else 2))
            if not diagonal:  # u major, v minor
                blocks = [b.reshape(*b.shape[:-2], b.shape[-2] * b.shape[-1]) for b in blocks]
            per_combo.append(blocks)
        pieces.append(per_combo)

    result = {}
    for out, _ in plan.irreps_out:
        columns = []
        for path in plan.paths_to(out):
            g, c, scale = where[path]
            piece = pieces[g][c][groups[g].blocks1.index(path.in1)]
            columns.append(piece if scale == 1.0 else piece * scale)
        if columns:  # outputs without paths (unreachable="zeros") are filled in by _apply
            result[out] = columns[0] if len(columns) == 1 else jnp.concatenate(columns, axis=-1)
    return result


@functools.lru_cache(maxsize=256)
def _compact_layout(
    plan: TensorProductPlan,
) -> tuple[dict[Key, np.ndarray], dict[Key, np.ndarray | None]]:
    """Per output, where :func:`_products_compact` takes its entries, and their scales.

    ``index[out]`` (shape ``(2l3+1, K)``) points into the concatenation of the flattened group
    products of :func:`_group_products`; ``scales[out]`` (``(K,)``) is ``None`` when every path
    has scale 1.
    """
    groups, where = _fused_layout(plan)
    diagonal = plan.mode == "channelwise"
    muls1 = dict(plan.irreps_in1)
    # offsets of every group array in the flat concatenation, and the layout of each
    arrays, base = [], 0
    for group in groups:
        n_rows = group.matrix.shape[1] // (2 * group.l1 + 1)
        rows = np.cumsum([0] + [2 * l3 + 1 for _, l3 in group.combos])
        if diagonal and group.mul2 > 1:
            per_block = {}
            for key in group.blocks1:
                per_block[key] = (base, muls1[key], 0)
                base += n_rows * muls1[key]
            arrays.append((rows, per_block, 1))
            continue
        width = sum(muls1[key] for key in group.blocks1)
        starts = np.cumsum([0] + [muls1[key] for key in group.blocks1])
        per_block = {key: (base, width, int(s)) for key, s in zip(group.blocks1, starts)}
        mul2 = 1 if diagonal else group.mul2
        base += n_rows * width * mul2
        arrays.append((rows, per_block, mul2))
    index, scales = {}, {}
    for out, _ in plan.irreps_out:
        columns, column_scales = [], []
        k = np.arange(2 * out[0] + 1)[:, None]
        for path in plan.paths_to(out):
            g, c, scale = where[path]
            rows, per_block, mul2 = arrays[g]
            start, width, channel = per_block[path.in1]
            u = np.arange(path.mul1)[:, None]
            v = np.arange(mul2)[None, :]
            # element (row, channel u, channel v) of a (*batch, rows, width, mul2) array
            flat = ((channel + u) * mul2 + v).reshape(-1)[None, :]
            columns.append(start + (rows[c] + k) * width * mul2 + flat)
            column_scales.append(np.full(flat.shape[1], scale))
        if columns:  # outputs without paths (unreachable="zeros") are filled in by _apply
            index[out] = np.concatenate(columns, axis=1).astype(np.int32)
            scale = np.concatenate(column_scales)
            scales[out] = None if np.all(scale == 1.0) else scale
    return index, scales


def _products_compact(
    plan: TensorProductPlan, x1: Mapping[Key, jax.Array], x2: Mapping[Key, jax.Array]
) -> dict[Key, jax.Array]:
    """:func:`_products_fused` with every output taken by one gather from the group products.

    The program has a few operations per group and per output, none per path, so it compiles
    fastest; a gather's transpose is a scatter, slower to run than the concatenations of
    ``"fused"`` on large batches.
    """
    index, scales = _compact_layout(plan)
    trailing = 2 if plan.mode == "channelwise" else 3
    flat = [  # explicit sizes: a -1 cannot be resolved on an empty batch
        y.reshape(*y.shape[: y.ndim - trailing], math.prod(y.shape[y.ndim - trailing :]))
        for arrays in _group_products(plan, x1, x2)
        for y in arrays
    ]
    batch = jnp.broadcast_shapes(*(y.shape[:-1] for y in flat))
    flat = [jnp.broadcast_to(y, (*batch, y.shape[-1])) for y in flat]
    flat = flat[0] if len(flat) == 1 else jnp.concatenate(flat, axis=-1)
    result = {}
    for out, idx in index.items():
        y = jnp.take(flat, idx, axis=-1, mode="clip", unique_indices=True)
        result[out] = y if scales[out] is None else y * jnp.asarray(scales[out], y.dtype)
    return result


def _products_scalar_second(
    plan: TensorProductPlan, x1: Mapping[Key, jax.Array], x2: Mapping[Key, jax.Array]
) -> dict[Key, jax.Array]:
    """:func:`_products_fused` when every ``x2`` block is a scalar (e.g. node attributes).

    A coupling with ``l2 = 0`` is a multiple of the identity: each path is ``c x1 (x) x2``, one
    element-wise product, with no coefficient matrix to contract.
    """
    diagonal = plan.mode == "channelwise"
    result = {}
    for out, _ in plan.irreps_out:
        columns = []
        for path in plan.paths_to(out):
            scale = path.coefficients[0][3]  # every diagonal entry is the same
            a, b = x1[path.in1], x2[path.in2][..., 0:1, :]  # (*batch, d, mul1), (*batch, 1, mul2)
            if diagonal:
                piece = a * b
            else:
                piece = a[..., :, None] * b[..., None, :]
                piece = piece.reshape(*a.shape[:-1], a.shape[-1] * b.shape[-1])
            columns.append(piece * scale)
        if columns:  # outputs without paths (unreachable="zeros") are filled in by _apply
            result[out] = columns[0] if len(columns) == 1 else jnp.concatenate(columns, axis=-1)
    return result


def _products_unrolled(
    paths: tuple[Path, ...], rows1: _ComponentRows, rows2: _ComponentRows, diagonal: bool
) -> jax.Array:
    """Stacked path products ``y`` of one output, shape ``(*batch, 2l3+1, K)``.

    Element-wise multiply-adds of component slices only, so XLA fuses the whole output (all
    paths, all components) into one loop that reads the inputs once and writes ``y`` once;
    measured 1.2-1.6x faster than per-path einsums, which become tiny batched matrix products.
    Entries are grouped by ``(k, i)``: the few ``x2`` rows of a group are combined first (cheap:
    ``x2`` has the fewer channels in the usual features x spherical harmonics product), so the
    full-width ``(u, v)`` arrays see one multiply-add per ``(k, i)`` pair, not one per entry.
    """
    columns = []
    for path in paths:
        groups: dict[tuple[int, int], list[tuple[int, float]]] = {}
        for i, j, k, value in path.coefficients:
            groups.setdefault((k, i), []).append((j, value))
        rows = [None] * path.dims[2]
        for (k, i), entries in groups.items():
            second = functools.reduce(
                operator.add, (value * rows2(path.in2, j) for j, value in entries)
            )
            term = rows1(path.in1, i) * second
            rows[k] = term if rows[k] is None else rows[k] + term
        if not diagonal:  # (*batch, u, v) -> (*batch, u*v)
            rows = [row.reshape(*row.shape[:-2], row.shape[-2] * row.shape[-1]) for row in rows]
        columns.append(jnp.stack(rows, axis=-2))
    return columns[0] if len(columns) == 1 else jnp.concatenate(columns, axis=-1)


def _products_dense(
    paths: tuple[Path, ...],
    x1: Mapping[Key, jax.Array],
    x2: Mapping[Key, jax.Array],
    diagonal: bool,
) -> jax.Array:
    """Same as :func:`_products_unrolled` with one dense-CG einsum per path."""
    columns = []
    for path in paths:
        a, b = x1[path.in1], x2[path.in2]
        cg = path.dense().astype(a.dtype)
        if diagonal:
            columns.append(jnp.einsum("...iu,...ju,ijk->...ku", a, b, cg))
        else:
            y = jnp.einsum("...iu,...jv,ijk->...kuv", a, b, cg)
            columns.append(y.reshape(*y.shape[:-2], y.shape[-2] * y.shape[-1]))
    return columns[0] if len(columns) == 1 else jnp.concatenate(columns, axis=-1)


# products of one chunk: a few MiB, the size of a last-level cache slice on current CPUs
_CHUNK_BYTES = 8 * 2**20


def _chunk_samples(plan: TensorProductPlan, chunk_size, itemsize: int) -> int | None:
    """Samples per chunk, or None for no chunking (see ``chunk_size`` of tensor_product)."""
    if chunk_size is None:
        return None
    if chunk_size != "auto":
        if int(chunk_size) < 1:
            raise ValueError(f"chunk_size must be positive, 'auto' or None, got {chunk_size!r}")
        return int(chunk_size)
    if jax.default_backend() != "cpu":  # accelerators want the whole batch in one kernel
        return None
    if plan.mode != "fully_connected":
        # only the fully connected product has a large y feeding a matrix product; elsewhere the
        # loop over chunks costs more (3x on the per-edge channel-wise product) than it saves
        return None
    per_sample = sum((2 * out[0] + 1) * plan.product_channels(out) for out, _ in plan.irreps_out)
    samples = max(1, _CHUNK_BYTES // max(1, per_sample * itemsize))
    return max(64, 2 ** int(math.log2(samples)))


def _to_chunks(x: jax.Array, batch_shape: tuple[int, ...], trailing: int, chunk: int) -> jax.Array:
    """``(*batch, *core)``, broadcast to ``batch_shape`` -> ``(n_chunks, chunk, *core)``, padded."""
    core = x.shape[x.ndim - trailing :]
    n = math.prod(batch_shape)
    n_chunks = -(-n // chunk)
    x = jnp.broadcast_to(x, (*batch_shape, *core)).reshape(n, *core)
    x = jnp.pad(x, [(0, n_chunks * chunk - n)] + [(0, 0)] * trailing)
    return x.reshape(n_chunks, chunk, *core)


def _from_chunks(x: jax.Array, batch_shape: tuple[int, ...], n: int) -> jax.Array:
    """Inverse of :func:`_to_chunks` for an output ``(n_chunks, chunk, *core)``."""
    core = x.shape[2:]
    return x.reshape(x.shape[0] * x.shape[1], *core)[:n].reshape(*batch_shape, *core)


def _split_weights(
    plan: TensorProductPlan, weights: jax.Array | Mapping[Key, jax.Array] | None
) -> dict[Key, jax.Array]:
    """Weights per output block, shapes ``weight_shapes()[out]`` with optional batch axes."""
    shapes = plan.weight_shapes()
    if weights is None:
        if plan.mode == "fully_connected":
            raise ValueError("a fully connected product needs weights")
        return {}
    if plan.mode == "full":
        raise ValueError("a full tensor product takes no weights")
    if isinstance(weights, Mapping):
        # outputs without paths (unreachable="zeros") have no weights to give
        missing = [out for out in shapes if out not in weights and math.prod(shapes[out])]
        if missing:
            raise ValueError(f"weights are missing for the outputs {missing}")
        result = {out: weights[out] for out in shapes if out in weights}
        for out, shape in shapes.items():
            if out not in result:
                continue
            if tuple(result[out].shape[-len(shape) :]) != shape:
                raise ValueError(
                    f"weights of output {out} must end with shape {shape}, got {result[out].shape}"
                )
        return result
    if weights.shape[-1] != plan.n_weights:
        raise ValueError(
            f"flat weights must have {plan.n_weights} entries on the last axis, got {weights.shape}"
        )
    # one split, whose transpose (the gradient) is one concatenation, not a pad per output
    sizes = [math.prod(shape) for shape in shapes.values()]
    pieces = jnp.split(weights, np.cumsum(sizes)[:-1], axis=-1) if len(sizes) > 1 else [weights]
    return {
        out: piece.reshape(*weights.shape[:-1], *shape)
        for (out, shape), piece in zip(shapes.items(), pieces)
    }


def _unit_cg(provider: ClebschGordan, l1: int, l2: int, l3: int) -> np.ndarray:
    """The provider's CG tensor rescaled to unit Frobenius norm, float64."""
    cg = np.asarray(provider(l1, l2, l3), dtype=np.float64)
    expected = (2 * l1 + 1, 2 * l2 + 1, 2 * l3 + 1)
    if cg.shape != expected:
        raise ValueError(f"clebsch_gordan({l1}, {l2}, {l3}) has shape {cg.shape}, not {expected}")
    norm = np.linalg.norm(cg)
    if norm == 0:
        raise ValueError(f"clebsch_gordan({l1}, {l2}, {l3}) is zero for an allowed coupling")
    return cg / norm


def _irrep_factor(l1: int, l2: int, l3: int, normalization: str) -> float:
    if normalization == "component":
        return math.sqrt(2 * l3 + 1)
    if normalization == "norm":
        return math.sqrt((2 * l1 + 1) * (2 * l2 + 1))
    return 1.0


def _sparse_entries(tensor: np.ndarray) -> tuple[tuple[int, int, int, float], ...]:
    """Non-zero ``(i, j, k, value)`` of a CG tensor, sorted by ``(k, i, j)``."""
    nonzero = np.abs(tensor) > _ZERO_TOLERANCE * np.max(np.abs(tensor))
    # a coupling tensor is an isometry up to scale: every output component is reached
    if not nonzero.any(axis=(0, 1)).all():
        raise ValueError(
            f"a Clebsch-Gordan tensor of shape {tensor.shape} misses output components"
        )
    entries = [
        (int(i), int(j), int(k), float(tensor[i, j, k])) for i, j, k in zip(*np.nonzero(nonzero))
    ]
    return tuple(sorted(entries, key=lambda e: (e[2], e[0], e[1])))


def _output_filter(filter_out: Iterable[int | Key] | None) -> Callable[[Key], bool]:
    if filter_out is None:
        return lambda key: True
    items = list(filter_out)
    lambdas = {int(item) for item in items if isinstance(item, (int, np.integer))}
    keys = {_check_key(item) for item in items if not isinstance(item, (int, np.integer))}
    return lambda key: key in keys or key[0] in lambdas


def _check_key(key) -> Key:
    try:
        l, sigma = (int(v) for v in key)
    except (TypeError, ValueError):
        raise ValueError(f"a block key must be (o3_lambda, o3_sigma), got {key!r}") from None
    if l < 0 or sigma not in (1, -1):
        raise ValueError(f"a block key must be (o3_lambda >= 0, o3_sigma = +-1), got {key!r}")
    return l, sigma


def _check_irreps(irreps: Iterable[tuple[Key, int]], name: str) -> Irreps:
    result = tuple((_check_key(key), int(mul)) for key, mul in irreps)
    keys = [key for key, _ in result]
    if len(set(keys)) != len(keys):
        raise ValueError(f"{name} lists a block more than once: {keys}")
    if any(mul <= 0 for _, mul in result):
        raise ValueError(f"{name} has a non-positive multiplicity: {result}")
    return result


def _check_blocks(blocks: Mapping[Key, jax.Array], irreps: Irreps, name: str) -> None:
    for key, mul in irreps:
        if key not in blocks:
            raise KeyError(f"{name} has no block {key}; the plan needs {[k for k, _ in irreps]}")
        shape = blocks[key].shape
        if len(shape) < 2 or tuple(shape[-2:]) != (2 * key[0] + 1, mul):
            raise ValueError(
                f"{name}[{key}] must have shape (..., {2 * key[0] + 1}, {mul}), got {shape}"
            )
