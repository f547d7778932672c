"""Clebsch-Gordan tensor products of two TensorMaps, as a flax module over the fused kernel.

Inputs
------
Two TensorMaps ``x1`` and ``x2`` whose keys are exactly ``(o3_lambda, o3_sigma)``, whose blocks
have the single component ``o3_mu`` and whose blocks all share the same samples (e.g. per-edge
features and the spherical harmonics of the same edges). Block ``(l, sigma)`` with values
``(n, 2l+1, mul)`` is already the layout of the array kernel
(:func:`eqx_tensor.o3.tensor_product`), so the values go in as they are: no transposition, no
concatenation, no copy. Explicit gradient blocks are refused (remove them first).

Modes
-----
``"full"``
    every product ``x1[u] (x) x2[v]`` of every pair of blocks, projected on every allowed
    ``l3``; no weights (``e3nn_jax.tensor_product``).
``"channelwise"``
    channel ``u`` of ``x1`` times channel ``u`` of ``x2`` (or its single channel): the "uvu"
    product of NequIP / MACE convolutions; optionally one weight per output channel, internal
    (shared) or per sample (e.g. per edge from :class:`~eqx_tensor.nn.RadialMLP`).
``"fully_connected"``
    every path mixed into ``out_features`` new channels per output block (e3nn's
    ``FullyConnectedTensorProduct``); weights internal or per sample.

Output
------
Keys ``(o3_lambda, o3_sigma)`` with ``o3_sigma = sigma1 * sigma2 * (-1)**(l1 + l2 + l3)`` (parities
multiply), components ``o3_mu``, the samples of ``x1``. Property labels describe the channels:

* ``"full"``: ``["o3_lambda_1", "o3_sigma_1", *<x1 property names>_1, "o3_lambda_2",
  "o3_sigma_2", *<x2 property names>_2]``: the input block and channel of each factor;
* ``"channelwise"``: ``["o3_lambda_1", "o3_sigma_1", "o3_lambda_2", "o3_sigma_2",
  *<x1 property names>]``: the two input blocks and the channel of ``x1``;
* ``"fully_connected"``: ``out_properties`` if given, else ``Labels.range("_", mul)`` (the default
  of the other nn layers).

Output keys and channel order are the kernel's: e3nn-jax's order for ``"full"`` and
``"channelwise"``, the ``out_features`` order for ``"fully_connected"``. The input blocks are
taken in e3nn-jax's irreps order (``o3_lambda``, then ``o3_sigma=+1`` first) whatever the order
of the input's keys, so that the channels and the weights' layout depend on the keys, not on
their order.

A fully connected product asked for an output that no path produces refuses it, naming it;
``unreachable="zeros"`` gives a zero block instead (as e3nn does).

Weights
-------
A flat vector of ``plan.n_weights`` entries (:meth:`TensorProduct.n_weights`), laid out as in
:func:`eqx_tensor.o3.tensor_product`. Internal weights are the parameter
``weight`` of that shape, drawn from ``N(0, 1)`` (the kernel's path normalisation makes
unit-variance weights give unit-variance outputs). Per-sample weights have shape
``(n_samples, n_weights)`` and are passed as ``weights=`` at call time, replacing the internal
ones.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from .. import o3 as kernel
from ..block import TensorBlock
from ..labels import Labels, same_labels
from ..o3 import block_orders, o3_mu_labels
from ..o3.conventions import O3_LAMBDA, O3_MU, O3_SIGMA, irrep_to_key
from ..tensormap import TensorMap
from . import _utils
from ._compiled import Compiled

__all__ = ["TensorProduct", "tensor_product", "tensor_product_plan"]

Array = Any
Key = tuple[int, int]
Initializer = Any  # flax-style: (key, shape, dtype) -> Array
OutFeatures = int | Mapping[Any, int] | Sequence[tuple[Any, int]]
MODES = kernel.TENSOR_PRODUCT_MODES


# ----------------------------------------------------------------------------- metadata helpers
def check_o3_tensor(tensor: Any, name: str, layer: str) -> list[Key]:
    """``(o3_lambda, o3_sigma)`` of each block; keys, components and gradients checked."""
    if not isinstance(tensor, TensorMap):
        raise TypeError(f"{layer}: {name} must be a TensorMap, got {type(tensor).__name__}")
    if sorted(tensor.keys.names) != sorted([O3_LAMBDA, O3_SIGMA]):
        raise ValueError(
            f"{layer}: the keys of {name} must be exactly ('o3_lambda', 'o3_sigma'), got "
            f"{tensor.keys.names}; move other key dimensions to samples or properties first"
        )
    if len(tensor) == 0:
        raise ValueError(f"{layer}: {name} has no blocks")
    if tensor.component_names != [O3_MU]:
        raise ValueError(
            f"{layer}: the blocks of {name} must have the single component 'o3_mu', got "
            f"{tensor.component_names}"
        )
    orders = block_orders(tensor, layer)
    for key, block in zip(orders, tensor.blocks()):
        if block.gradients_list():
            raise ValueError(
                f"{layer}: block {key} of {name} has explicit gradients "
                f"{block.gradients_list()}, which this layer does not propagate; remove them "
                "(eqx_tensor.operations.remove_gradients) or use automatic differentiation"
            )
    return orders


def check_same_samples(tensors: Sequence[tuple[str, TensorMap]], layer: str) -> Labels:
    """The samples shared by every block of the named tensors (ValueError naming the block)."""
    first_name, first = tensors[0]
    reference = first.block_by_id(0).samples
    for name, tensor in tensors:
        for key, block in zip(tensor.keys, tensor.blocks()):
            if not same_labels(block.samples, reference):
                raise ValueError(
                    f"{layer}: block {key} of {name} has other samples ({len(block.samples)} "
                    f"entries, names {block.samples.names}) than the first block of {first_name} "
                    f"({len(reference)} entries, names {reference.names}); the product is taken "
                    "sample by sample and needs the same samples everywhere"
                )
    return reference


def _parse_key(item: Any, what: str) -> Key:
    if isinstance(item, str):
        return irrep_to_key(item)
    try:
        l, sigma = (int(v) for v in item)
    except (TypeError, ValueError):
        raise ValueError(
            f"{what}: expected (o3_lambda, o3_sigma) or an e3nn irrep string like '1o', "
            f"got {item!r}"
        ) from None
    return l, sigma


def _parse_filter(out_lambdas: Iterable[Any] | None) -> list[int | Key] | None:
    if out_lambdas is None:
        return None
    if isinstance(out_lambdas, (int, np.integer, str)):
        out_lambdas = [out_lambdas]
    parsed: list[int | Key] = []
    for item in out_lambdas:
        if isinstance(item, (int, np.integer)) and not isinstance(item, bool):
            if item < 0:
                raise ValueError(f"out_lambdas: o3_lambda must be >= 0, got {item}")
            parsed.append(int(item))
        else:
            parsed.append(_parse_key(item, "out_lambdas"))
    return parsed


def _reachable(irreps1: kernel.BlockIrreps, irreps2: kernel.BlockIrreps, filter_out) -> list[Key]:
    keys = set()
    for in1, _ in irreps1:
        for in2, _ in irreps2:
            keys.update(kernel.coupled_keys(in1, in2))
    if filter_out is not None:
        lambdas = {f for f in filter_out if isinstance(f, int)}
        wanted = {f for f in filter_out if not isinstance(f, int)}
        keys = {k for k in keys if k in wanted or k[0] in lambdas}
    return sorted(keys, key=kernel.key_order)


def _irreps_out(
    out_features: OutFeatures | None, irreps1, irreps2, filter_out, unreachable: str
) -> tuple[tuple[Key, int], ...]:
    if out_features is None:
        raise ValueError(
            "a fully connected tensor product needs out_features: an int (that many channels in "
            "every reachable output block) or {(o3_lambda, o3_sigma): channels}"
        )
    if isinstance(out_features, (int, np.integer)) and not isinstance(out_features, bool):
        if out_features < 1:
            raise ValueError(f"out_features must be positive, got {out_features}")
        reachable = _reachable(irreps1, irreps2, filter_out)
        if not reachable:
            raise ValueError(
                f"no output block is reachable from {[k for k, _ in irreps1]} x "
                f"{[k for k, _ in irreps2]} with out_lambdas={filter_out}"
            )
        return tuple((key, int(out_features)) for key in reachable)
    items = out_features.items() if isinstance(out_features, Mapping) else out_features
    irreps_out = tuple((_parse_key(key, "out_features"), int(mul)) for key, mul in items)
    if filter_out is not None:
        lambdas = {f for f in filter_out if isinstance(f, int)}
        wanted = {f for f in filter_out if not isinstance(f, int)}
        irreps_out = tuple((k, m) for k, m in irreps_out if k in wanted or k[0] in lambdas)
    reachable = set(_reachable(irreps1, irreps2, filter_out))
    missing = [key for key, _ in irreps_out if key not in reachable]
    if missing and unreachable == "error":
        raise ValueError(
            f"TensorProduct: out_features asks for the outputs {missing}, which no path of "
            f"x1 {[k for k, _ in irreps1]} x x2 {[k for k, _ in irreps2]} produces; remove them "
            "from out_features, or pass unreachable='zeros' to get zero blocks for them (as "
            "e3nn's FullyConnectedTensorProduct does)"
        )
    return irreps_out


def tensor_product_plan(
    x1: TensorMap,
    x2: TensorMap,
    mode: str = "fully_connected",
    *,
    out_features: OutFeatures | None = None,
    out_lambdas: Iterable[Any] | None = None,
    irrep_normalization: str = "component",
    path_normalization: str = "element",
    unreachable: str = "error",
) -> kernel.TensorProductPlan:
    """The kernel plan of the product of ``x1`` and ``x2`` (static: keys and channel counts).

    The plan (and so the layout of the weights) depends on the keys and channel counts of the
    inputs, not on the order of their blocks: the blocks are taken in e3nn-jax's irreps order
    (``o3_lambda``, then ``o3_sigma=+1`` first), so that weights stay bound to the same paths
    when an input lists its keys in another order.

    Args:
        x1, x2: TensorMaps as in the module docstring (only their metadata is read).
        mode: ``"full"``, ``"channelwise"`` or ``"fully_connected"``.
        out_features: ``"fully_connected"`` only: an ``int`` (that many channels in every
            reachable output block, e3nn-jax's key order) or ``{(l, sigma): channels}`` /
            ``[((l, sigma), channels), ...]`` (keys may also be irrep strings like ``"1o"``).
        out_lambdas: keep only these outputs: ``o3_lambda`` values (``int``), keys
            ``(l, sigma)`` or irrep strings; ``None`` keeps all.
        irrep_normalization, path_normalization: see :func:`eqx_tensor.o3.tensor_product`.
        unreachable: ``"fully_connected"`` with ``out_features`` given per key: what to do
            with requested outputs that no path produces: ``"error"`` (default) raises a
            ``ValueError`` naming them, ``"zeros"`` gives zero blocks for them (e3nn's
            behaviour).

    Returns:
        The plan; ``plan.n_weights`` is the length of the weight vector.
    """
    try:
        # the plan depends only on the static metadata (cached, with its hash, on each
        # TensorMap) and the arguments: the checks below run once per structure, not per call
        key = (
            x1.meta,
            x2.meta,
            mode,
            _frozen(out_features),
            _frozen(out_lambdas),
            irrep_normalization,
            path_normalization,
            unreachable,
        )
        plan = _PLANS.get(key)
    except (AttributeError, TypeError):  # not TensorMaps, or unhashable arguments
        plan = None
        key = None
    if plan is None:
        plan = _tensor_product_plan(
            x1,
            x2,
            mode,
            out_features,
            out_lambdas,
            irrep_normalization,
            path_normalization,
            unreachable,
        )
        if key is None:
            return plan
        if len(_PLANS) >= _MAX_PLANS:
            _PLANS.pop(next(iter(_PLANS)))
        _PLANS[key] = plan
    return plan


# plans by (input metadata, arguments), oldest first; a cache like functools.lru_cache's
_PLANS: dict[tuple, kernel.TensorProductPlan] = {}
_MAX_PLANS = 256


def _frozen(argument: Any) -> Any:
    """A hashable stand-in for a mapping or list argument (TypeError if there is none)."""
    if argument is None or type(argument) is int:
        return argument
    if isinstance(argument, Mapping):
        return ("mapping", tuple(argument.items()))
    if isinstance(argument, list):
        return ("list", tuple(argument))
    return argument


def _tensor_product_plan(
    x1: TensorMap,
    x2: TensorMap,
    mode: str,
    out_features: OutFeatures | None,
    out_lambdas: Iterable[Any] | None,
    irrep_normalization: str,
    path_normalization: str,
    unreachable: str,
) -> kernel.TensorProductPlan:
    layer = "TensorProduct"
    if mode not in MODES:
        raise ValueError(f"{layer}: mode must be one of {MODES}, got {mode!r}")
    if unreachable not in kernel.TENSOR_PRODUCT_UNREACHABLE:
        raise ValueError(
            f"{layer}: unreachable must be one of {kernel.TENSOR_PRODUCT_UNREACHABLE}, "
            f"got {unreachable!r}"
        )
    keys1 = check_o3_tensor(x1, "x1", layer)
    keys2 = check_o3_tensor(x2, "x2", layer)
    # canonical order: the paths, hence the weights, must not depend on the order of the blocks
    irreps1 = _sorted_irreps(keys1, x1)
    irreps2 = _sorted_irreps(keys2, x2)
    filter_out = _parse_filter(out_lambdas)
    if mode == "fully_connected":
        irreps_out = _irreps_out(out_features, irreps1, irreps2, filter_out, unreachable)
    elif out_features is not None:
        raise ValueError(
            f"{layer}: out_features is for mode='fully_connected'; the '{mode}' product's "
            "channels follow from the inputs"
        )
    else:
        irreps_out = None
    plan = _cached_plan(
        irreps1,
        irreps2,
        mode,
        irreps_out,
        None if mode == "fully_connected" or filter_out is None else tuple(filter_out),
        irrep_normalization,
        path_normalization,
        unreachable,
    )
    if not plan.irreps_out:
        raise ValueError(
            f"{layer}: no output block: {list(keys1)} x {list(keys2)} has no path to "
            f"out_lambdas={out_lambdas}"
        )
    return plan


def _sorted_irreps(keys: list[Key], tensor: TensorMap) -> tuple[tuple[Key, int], ...]:
    irreps = [(k, int(b.values.shape[-1])) for k, b in zip(keys, tensor.blocks())]
    return tuple(sorted(irreps, key=lambda item: kernel.key_order(item[0])))


# planning walks every path's CG tensor in Python: do it once per structure, not per call
@functools.lru_cache(maxsize=256)
def _cached_plan(
    irreps1,
    irreps2,
    mode,
    irreps_out,
    filter_out,
    irrep_normalization,
    path_normalization,
    unreachable="error",
) -> kernel.TensorProductPlan:
    return kernel.tensor_product_plan(
        irreps1,
        irreps2,
        mode,
        irreps_out=irreps_out,
        filter_out=filter_out,
        irrep_normalization=irrep_normalization,
        path_normalization=path_normalization,
        unreachable=unreachable,
    )


# ----------------------------------------------------------------------------- output labels
@functools.lru_cache(maxsize=256)
def _path_properties(
    plan: kernel.TensorProductPlan, properties1: tuple[Labels, ...], properties2: tuple[Labels, ...]
) -> tuple[Labels, ...]:
    """Property labels of each output block of a ``"full"`` or ``"channelwise"`` product."""
    index1 = {key: i for i, (key, _) in enumerate(plan.irreps_in1)}
    index2 = {key: i for i, (key, _) in enumerate(plan.irreps_in2)}
    names1 = properties1[0].names
    names2 = properties2[0].names
    if plan.mode == "full":
        names = [
            "o3_lambda_1",
            "o3_sigma_1",
            *(f"{n}_1" for n in names1),
            "o3_lambda_2",
            "o3_sigma_2",
            *(f"{n}_2" for n in names2),
        ]
    else:
        names = ["o3_lambda_1", "o3_sigma_1", "o3_lambda_2", "o3_sigma_2", *names1]
    result = []
    for out, _ in plan.irreps_out:
        rows = []
        for path in plan.paths_to(out):
            p1 = np.asarray(properties1[index1[path.in1]].values)
            p2 = np.asarray(properties2[index2[path.in2]].values)
            m1, m2 = len(p1), len(p2)
            if plan.mode == "full":
                # u major, v minor, as the kernel lays out the mul1 * mul2 channels
                left = np.repeat(np.column_stack([np.tile(path.in1, (m1, 1)), p1]), m2, axis=0)
                right = np.tile(np.column_stack([np.tile(path.in2, (m2, 1)), p2]), (m1, 1))
                rows.append(np.column_stack([left, right]))
            else:
                pair = np.tile([*path.in1, *path.in2], (m1, 1))
                rows.append(np.column_stack([pair, p1]))
        result.append(Labels(names, np.concatenate(rows).astype(np.int32)))
    return tuple(result)


def _output_properties(
    plan: kernel.TensorProductPlan,
    x1: TensorMap,
    x2: TensorMap,
    out_properties: Labels | Mapping[Any, Labels] | Sequence[Labels] | None,
) -> tuple[Labels, ...]:
    layer = "TensorProduct"
    if plan.mode != "fully_connected":
        if out_properties is not None:
            raise ValueError(
                f"{layer}: out_properties is for mode='fully_connected'; the '{plan.mode}' "
                "product labels its channels by their input blocks and channels"
            )
        by_key1 = dict(zip(check_o3_tensor(x1, "x1", layer), x1.blocks()))
        by_key2 = dict(zip(check_o3_tensor(x2, "x2", layer), x2.blocks()))
        return _path_properties(
            plan,
            tuple(by_key1[k].properties for k, _ in plan.irreps_in1),
            tuple(by_key2[k].properties for k, _ in plan.irreps_in2),
        )
    result = []
    for i, (key, mul) in enumerate(plan.irreps_out):
        if out_properties is None:
            labels = _utils.range_properties(mul)
        elif isinstance(out_properties, Labels):
            labels = out_properties
        elif isinstance(out_properties, Mapping):
            matches = [
                v for k, v in out_properties.items() if _parse_key(k, "out_properties") == key
            ]
            if not matches:
                raise ValueError(f"{layer}: out_properties has no entry for the output {key}")
            labels = matches[0]
        else:
            labels = list(out_properties)[i]
        if not isinstance(labels, Labels) or len(labels) != mul:
            raise ValueError(
                f"{layer}: out_properties of the output {key} must be Labels with {mul} entries, "
                f"got {labels!r}"
            )
        result.append(labels)
    return tuple(result)


# ----------------------------------------------------------------------------- pure function
def tensor_product(
    x1: TensorMap,
    x2: TensorMap,
    plan: kernel.TensorProductPlan,
    weights: Array | None = None,
    *,
    out_properties: Labels | Mapping[Any, Labels] | Sequence[Labels] | None = None,
    method: str = "auto",
    chunk_size: int | str | None = "auto",
) -> TensorMap:
    """The tensor product of two TensorMaps with a plan (pure function).

    Args:
        x1, x2: TensorMaps keyed by ``(o3_lambda, o3_sigma)``, blocks ``(n, 2l+1, mul)`` sharing
            their ``n`` samples; they must have the blocks of ``plan`` (extra blocks are ignored).
        plan: from :func:`tensor_product_plan`.
        weights: ``None`` (``"full"``, unweighted ``"channelwise"``), shape ``(n_weights,)``
            (shared) or ``(n, n_weights)`` (one set per sample).
        out_properties: ``"fully_connected"`` only: Labels for every output block, one per block
            (sequence in output order or mapping by key); default ``Labels.range("_", mul)``.
        method, chunk_size: passed to the kernel.

    Returns:
        A TensorMap: keys ``plan.irreps_out``, blocks ``(n, 2l3+1, mul_out)`` (module docstring).
    """
    layer = "TensorProduct"
    keys1 = check_o3_tensor(x1, "x1", layer)
    keys2 = check_o3_tensor(x2, "x2", layer)
    samples = check_same_samples([("x1", x1), ("x2", x2)], layer)
    for name, keys, tensor, irreps in (
        ("x1", keys1, x1, plan.irreps_in1),
        ("x2", keys2, x2, plan.irreps_in2),
    ):
        muls = {k: int(b.values.shape[-1]) for k, b in zip(keys, tensor.blocks())}
        for key, mul in irreps:
            if key not in muls:
                raise ValueError(f"{layer}: {name} has no block {key}, which the plan needs")
            if muls[key] != mul:
                raise ValueError(
                    f"{layer}: block {key} of {name} has {muls[key]} properties, the plan "
                    f"expects {mul}"
                )
    if weights is not None:
        weights = jnp.asarray(weights)
        if plan.mode == "full":
            raise ValueError(f"{layer}: the 'full' tensor product takes no weights")
        n = len(samples)
        if weights.shape not in ((plan.n_weights,), (n, plan.n_weights)):
            raise ValueError(
                f"{layer}: weights must have shape ({plan.n_weights},) or ({n}, "
                f"{plan.n_weights}) (n_samples, n_weights), got {weights.shape}"
            )
    elif plan.mode == "fully_connected":
        raise ValueError(f"{layer}: a fully connected tensor product needs weights")
    properties = _output_properties(plan, x1, x2, out_properties)
    return _tensor_product(x1, x2, weights, plan, properties, method, chunk_size)


# one compiled program per structure for eager callers; inlined inside a user's jit
@functools.partial(jax.jit, static_argnums=(3, 4, 5, 6))
def _tensor_product(
    x1: TensorMap,
    x2: TensorMap,
    weights: Array | None,
    plan: kernel.TensorProductPlan,
    properties: tuple[Labels, ...],
    method: str,
    chunk_size: int | str | None,
) -> TensorMap:
    # the blocks are (n, 2l+1, mul) already: the kernel's layout, passed without copies
    blocks1 = {k: b.values for k, b in zip(_keys(x1), x1.blocks())}
    blocks2 = {k: b.values for k, b in zip(_keys(x2), x2.blocks())}
    outputs = kernel.tensor_product(
        plan, blocks1, blocks2, weights, method=method, chunk_size=chunk_size
    )
    samples = x1.block_by_id(0).samples
    blocks = [
        TensorBlock(outputs[key], samples, [o3_mu_labels(key[0])], labels)
        for (key, _), labels in zip(plan.irreps_out, properties)
    ]
    keys = Labels(
        [O3_LAMBDA, O3_SIGMA], np.array([key for key, _ in plan.irreps_out], dtype=np.int32)
    )
    return TensorMap(keys, blocks)


def _keys(tensor: TensorMap) -> list[Key]:
    lambdas = np.asarray(tensor.keys.column(O3_LAMBDA))
    sigmas = np.asarray(tensor.keys.column(O3_SIGMA))
    return [(int(l), int(s)) for l, s in zip(lambdas, sigmas)]


# ----------------------------------------------------------------------------- module
class TensorProduct(Compiled, nn.Module):
    """Clebsch-Gordan tensor product of two TensorMaps (see the module docstring).

    ``TensorProduct(...)(x1, x2)`` uses the internal weights; ``(x1, x2, weights=w)`` uses
    ``w`` of shape ``(n_weights,)`` or ``(n_samples, n_weights)`` instead (e.g. per edge from
    :class:`~eqx_tensor.nn.RadialMLP` with ``out_features=TensorProduct.n_weights(x1, x2)``).

    Attributes:
        mode: ``"full"``, ``"channelwise"`` or ``"fully_connected"`` (default).
        out_features: ``"fully_connected"``: channels per output block, an int or
            ``{(o3_lambda, o3_sigma): channels}`` (keys may be irrep strings such as ``"1o"``).
        out_lambdas: output selection (e3nn's ``filter_ir_out``): ``o3_lambda`` values, keys or
            irrep strings; ``None`` keeps every reachable output.
        internal_weights: create the parameter ``weight`` (shape ``(n_weights,)``) when no
            ``weights`` are passed. Without it, ``"channelwise"`` is unweighted and
            ``"fully_connected"`` requires ``weights`` at every call.
        out_properties: ``"fully_connected"`` output property labels (one Labels for all
            blocks, or per output key); default ``Labels.range("_", mul)``.
        irrep_normalization, path_normalization: e3nn's normalisations (kernel docstring).
        weight_init: flax initializer of the internal weights; default ``N(0, 1)``.
        param_dtype: dtype of the weights; default the dtype of ``x1``.
        method, chunk_size: kernel options (same numbers either way).
        unreachable: ``"error"`` (default) refuses ``out_features`` keys that no path
            produces, naming them; ``"zeros"`` gives zero blocks for them (e3nn's behaviour).
    """

    mode: str = "fully_connected"
    out_features: OutFeatures | None = None
    out_lambdas: Sequence[Any] | None = None
    internal_weights: bool = True
    out_properties: Labels | Mapping[Any, Labels] | Sequence[Labels] | None = None
    irrep_normalization: str = "component"
    path_normalization: str = "element"
    weight_init: Initializer = nn.initializers.normal(1.0)
    param_dtype: Any = None
    method: str = "auto"
    chunk_size: int | str | None = "auto"
    unreachable: str = "error"

    def plan(self, x1: TensorMap, x2: TensorMap) -> kernel.TensorProductPlan:
        """The kernel plan for these inputs (needs no parameters)."""
        return tensor_product_plan(
            x1,
            x2,
            self.mode,
            out_features=self.out_features,
            out_lambdas=self.out_lambdas,
            irrep_normalization=self.irrep_normalization,
            path_normalization=self.path_normalization,
            unreachable=self.unreachable,
        )

    def n_weights(self, x1: TensorMap, x2: TensorMap) -> int:
        """Length of the weight vector for these inputs (0 for ``"full"``)."""
        return self.plan(x1, x2).n_weights

    @nn.compact
    def __call__(self, x1: TensorMap, x2: TensorMap, weights: Array | None = None) -> TensorMap:
        plan = self.plan(x1, x2)
        if weights is None and plan.mode != "full" and self.internal_weights:
            dtype = jax.dtypes.canonicalize_dtype(_utils.float_dtype(x1, self.param_dtype))
            weight = self.param("weight", self.weight_init, (plan.n_weights,), dtype)
            if weight.shape != (plan.n_weights,):
                raise ValueError(
                    f"TensorProduct: the parameter 'weight' has shape {weight.shape} but these "
                    f"inputs need ({plan.n_weights},)"
                )
            weights = weight
        return tensor_product(
            x1,
            x2,
            plan,
            weights,
            out_properties=self.out_properties,
            method=self.method,
            chunk_size=self.chunk_size,
        )
