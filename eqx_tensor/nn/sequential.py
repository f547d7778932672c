"""Composition of layers over TensorMaps: :class:`Sequential` and :class:`ModuleMap`.

:class:`Sequential` chains TensorMap-to-TensorMap layers. :class:`ModuleMap` wraps ordinary
array modules (``flax.linen.Dense``, a small MLP, any function) and applies one of them to the
values of each block, like ``metatensor.learn.nn.ModuleMap``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from ..labels import Labels
from ..tensormap import TensorMap
from . import _utils
from ._compiled import Compiled
from ._stacking import take_weights
from ._utils import key_names, lookup, parameter_dtype, per_block
from .linear import EquivariantLinear, Linear, LinearSpec, linear

__all__ = ["ModuleMap", "Sequential"]

Array = Any


class Sequential(Compiled, nn.Module):
    """Apply ``layers`` in order: ``layers[-1](...(layers[0](tensor)))``.

    Counterpart of ``metatensor.learn.nn.Sequential``. Both ``Sequential([m1, m2, ...])`` and
    metatensor-learn's ``Sequential(in_keys, m1, m2, ...)`` are accepted; with ``in_keys``,
    inputs with other keys are refused (as metatensor-learn does), otherwise each layer reads
    the keys of its input. The layers keep their own parameters, under ``params["layers_0"]``,
    ``params["layers_1"]``, ... (layers without parameters, such as activations, have no
    entry).

    Example::

        model = nn.Sequential([
            nn.EquivariantLinear(out_features=64),
            nn.InvariantSiLU(),
            nn.EquivariantLinear(out_features=1),
        ])
        params = model.init(jax.random.key(0), features)
        predictions = model.apply(params, features)

    **Fused linear layers.** In ``Linear -> InvariantX -> ... -> Linear`` (any number of
    invariant activations or invariant layer norms in between), the covariant blocks pass the
    middle layers unchanged, so the two linear maps compose: these blocks are computed as
    ``x @ (W1 @ W2)`` (plus ``b1 @ W2 + b2`` where there are biases) instead of going through
    the hidden width. The result and the parameters are the same (up to rounding); only the
    work changes. ``fuse_linear=False`` computes every layer as written.

    Attributes:
        layers: callables taking and returning a TensorMap (usually flax modules).
        fuse_linear: compose consecutive linear layers on the blocks that the layers between
            them leave unchanged.
        in_keys: the keys inputs may have (metatensor-learn's first argument); ``None``: any.
    """

    layers: Sequence[Callable[[TensorMap], TensorMap]]
    fuse_linear: bool = True
    in_keys: Labels | None = None

    @nn.compact
    def __call__(self, tensor: TensorMap) -> TensorMap:
        if not self.layers:
            raise ValueError("Sequential needs at least one layer")
        if self.in_keys is not None:
            _utils.key_positions(
                _utils.check_tensor(tensor, "Sequential"), self.in_keys, layer="Sequential"
            )
        layers = list(self.layers)
        i = 0
        while i < len(layers):
            fusable = isinstance(tensor, TensorMap) and len(tensor) > 0
            end = self._fusable_end(layers, i) if fusable else None
            if end is not None:
                tensor = _fused_linear(layers[i], layers[i + 1 : end], layers[end], tensor)
                i = end + 1
                continue
            tensor = layers[i](tensor)
            if not isinstance(tensor, TensorMap):
                raise TypeError(
                    f"Sequential: layer {i} ({type(layers[i]).__name__}) returned "
                    f"{type(tensor).__name__}, not a TensorMap"
                )
            i += 1
        return tensor

    def _fusable_end(self, layers: list[Any], start: int) -> int | None:
        """Index of the linear layer that ``layers[start]`` can be fused with, if any."""
        if not self.fuse_linear or not isinstance(layers[start], (Linear, EquivariantLinear)):
            return None
        end = start + 1
        while (
            end < len(layers)
            and hasattr(layers[end], "identity_blocks")
            and getattr(layers[end], "out_properties", None) is None
        ):
            end += 1
        if end < len(layers) and isinstance(layers[end], (Linear, EquivariantLinear)):
            return end
        return None


_SEQUENTIAL_USAGE = (
    "write Sequential([layer_1, layer_2, ...]) (a list of layers), or metatensor-learn's "
    "Sequential(in_keys, layer_1, layer_2, ...) (Labels first)"
)


def _sequential_arguments(args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[tuple, dict]:
    """Map metatensor-learn's ``Sequential(in_keys, *layers)`` onto the dataclass fields, and
    refuse layers given as separate arguments without ``in_keys``."""
    if args and isinstance(args[0], Labels):
        if "in_keys" in kwargs or "layers" in kwargs:
            raise TypeError(
                "Sequential: in_keys was given as the first argument, so the layers must follow "
                f"it as positional arguments; {_SEQUENTIAL_USAGE}"
            )
        layers = args[1:]
        if len(layers) == 1 and isinstance(layers[0], (list, tuple)):
            layers = tuple(layers[0])
        return (tuple(layers),), {**kwargs, "in_keys": args[0]}
    if args and not isinstance(args[0], (list, tuple)):
        raise TypeError(
            f"Sequential: the first argument is a {type(args[0]).__name__}, not a list of "
            f"layers nor Labels; {_SEQUENTIAL_USAGE}"
        )
    layers = kwargs.get("layers")
    if layers is not None and not isinstance(layers, (list, tuple)):
        raise TypeError(
            f"Sequential: layers must be a list of layers, got {type(layers).__name__}; "
            f"{_SEQUENTIAL_USAGE}"
        )
    if len(args) > 1 and not isinstance(args[1], (bool, np.bool_)):
        raise TypeError(
            f"Sequential: the second argument (fuse_linear) is a {type(args[1]).__name__}; "
            f"{_SEQUENTIAL_USAGE}"
        )
    return args, kwargs


# flax generates the dataclass __init__ when the class is created; wrap it so that
# metatensor-learn's signature works and a wrong one says what to write (clone() and flax's
# internals call it with keywords, which pass through unchanged)
_sequential_init = Sequential.__init__


@functools.wraps(_sequential_init)
def _init_sequential(self: Sequential, *args: Any, **kwargs: Any) -> None:
    args, kwargs = _sequential_arguments(args, kwargs)
    _sequential_init(self, *args, **kwargs)


Sequential.__init__ = _init_sequential  # type: ignore[method-assign]


def _subset(tensor: TensorMap, indices: np.ndarray) -> TensorMap:
    return TensorMap(tensor.keys[indices], tensor.blocks_by_id(indices))


def _spec_subset(spec: LinearSpec, indices: np.ndarray) -> LinearSpec:
    return LinearSpec(
        spec.weight,
        spec.bias,
        tuple(spec.weight_index[i] for i in indices),
        None if spec.bias_index is None else tuple(spec.bias_index[i] for i in indices),
        tuple(spec.out_features[i] for i in indices),
        None if spec.out_properties is None else tuple(spec.out_properties[i] for i in indices),
    )


def _rows(array: Array, indices: list[int], width: int) -> Array:
    """``array[indices, :width]`` with a slice when the indices are a contiguous range."""
    indices_array = np.asarray(indices)
    if np.array_equal(indices_array, np.arange(indices[0], indices[0] + len(indices))):
        return array[indices[0] : indices[0] + len(indices), :width]
    return jnp.take(array, jnp.asarray(indices_array), axis=0)[:, :width]


def _compose(
    first: LinearSpec, second: LinearSpec, fused: np.ndarray, in_features: list[int]
) -> tuple[Array, Array | None, list[int], list[int]]:
    """Stacked ``W1 @ W2`` and ``b1 @ W2 + b2`` for the fused blocks.

    Returns the composed weights and biases (one row per fused block, zero-padded), and the
    weight and bias row of each fused block (``-1``: no bias).
    """

    def bias_row(spec: LinearSpec, b: int) -> int:
        return -1 if spec.bias_index is None else spec.bias_index[b]

    groups: dict[tuple[int, int, int], list[int]] = {}
    for position, b in enumerate(fused):
        shape = (in_features[position], first.out_features[b], second.out_features[b])
        groups.setdefault(shape, []).append(position)
    max_in = max(in_features)
    max_out = max(second.out_features[b] for b in fused)
    weights, biases = [], []
    weight_rows, bias_rows = [0] * len(fused), [-1] * len(fused)
    for (fin, hidden, fout), members in groups.items():
        blocks = [int(fused[m]) for m in members]
        w1 = take_weights(
            first.weight, np.array([first.weight_index[b] for b in blocks]), fin, hidden
        )
        w2 = take_weights(
            second.weight, np.array([second.weight_index[b] for b in blocks]), hidden, fout
        )
        start_weight = sum(w.shape[0] for w in weights)
        weights.append(_pad_to(jnp.einsum("kij,kjl->kil", w1, w2), (max_in, max_out)))
        for m in members:
            weight_rows[m] = start_weight + members.index(m)

        # blocks of this group with a bias before or after the composition
        biased = [
            i for i, b in enumerate(blocks) if bias_row(first, b) >= 0 or bias_row(second, b) >= 0
        ]
        if not biased:
            continue
        bias = jnp.zeros((len(biased), fout), w2.dtype)
        with_first = [i for i in biased if bias_row(first, blocks[i]) >= 0]
        if with_first:
            b1 = _rows(first.bias, [bias_row(first, blocks[i]) for i in with_first], hidden)
            b1 = jnp.einsum("kj,kjl->kl", b1, w2[np.array(with_first)])
            bias = bias.at[np.array([biased.index(i) for i in with_first])].add(b1)
        with_second = [i for i in biased if bias_row(second, blocks[i]) >= 0]
        if with_second:
            b2 = _rows(second.bias, [bias_row(second, blocks[i]) for i in with_second], fout)
            bias = bias.at[np.array([biased.index(i) for i in with_second])].add(b2)
        start = sum(x.shape[0] for x in biases)
        biases.append(_pad_to(bias, (max_out,)))
        for position, i in enumerate(biased):
            bias_rows[members[i]] = start + position
    weight = weights[0] if len(weights) == 1 else jnp.concatenate(weights)
    bias = None
    if biases:
        bias = biases[0] if len(biases) == 1 else jnp.concatenate(biases)
    return weight, bias, weight_rows, bias_rows


def _pad_to(array: Array, trailing: tuple[int, ...]) -> Array:
    padding = [(0, 0)] + [(0, t - n) for n, t in zip(array.shape[1:], trailing)]
    if all(p == (0, 0) for p in padding):
        return array
    return jnp.pad(array, padding)


def _fused_linear(
    first: Linear | EquivariantLinear,
    middle: list[Any],
    last: Linear | EquivariantLinear,
    tensor: TensorMap,
) -> TensorMap:
    """``last(middle(first(tensor)))``, composing the two linear maps where ``middle`` is the
    identity. Parameters are created exactly as in the unfused computation."""
    tensor = _utils.check_tensor(tensor, type(first).__name__)
    keys = tensor.keys
    features = [int(block.values.shape[-1]) for block in tensor.blocks()]
    first_spec = first.spec(keys, features, parameter_dtype(tensor, first.param_dtype))
    hidden_dtype = jnp.result_type(tensor.dtype or first_spec.weight.dtype, first_spec.weight)
    last_dtype = (
        jax.dtypes.canonicalize_dtype(last.param_dtype)
        if last.param_dtype is not None
        else hidden_dtype
    )
    last_spec = last.spec(keys, first_spec.out_features, last_dtype)

    identity = np.ones(len(keys), dtype=bool)
    for layer in middle:
        identity &= np.asarray(layer.identity_blocks(keys), dtype=bool)
    fused, other = np.nonzero(identity)[0], np.nonzero(~identity)[0]

    blocks: list[Any] = [None] * len(keys)
    if len(other):
        hidden = _spec_subset(first_spec, other).apply(_subset(tensor, other), first.stacking)
        for layer in middle:
            hidden = layer(hidden)
        out = _spec_subset(last_spec, other).apply(hidden, last.stacking)
        for position, b in enumerate(other):
            blocks[b] = out.block_by_id(position)
    if len(fused):
        weight, bias, weight_row, bias_row = _compose(
            first_spec, last_spec, fused, [features[b] for b in fused]
        )
        out = linear(
            _subset(tensor, fused),
            weight,
            bias,
            weight_index=weight_row,
            bias_index=bias_row if bias is not None else None,
            out_features=[last_spec.out_features[b] for b in fused],
            out_properties=None
            if last_spec.out_properties is None
            else [last_spec.out_properties[b] for b in fused],
            stacking=last.stacking,
        )
        for position, b in enumerate(fused):
            blocks[b] = out.block_by_id(position)
    return _utils.with_blocks(tensor, blocks)


class ModuleMap(Compiled, nn.Module):
    """One array module per key, applied to the values of the block with that key.

    Counterpart of ``metatensor.learn.nn.ModuleMap``. Each module maps the block values
    ``(n_samples, *components, in_features)`` to ``(n_samples, *components, out_features)``
    and must act on every sample independently (as ``nn.Dense`` or an MLP does).

    ``modules`` is either a single flax module used as a template, cloned once per key with
    its own parameters (metatensor-learn's ``ModuleMap.from_module``), or a sequence with one
    module (or plain function) per key of ``in_keys`` (required then, as in metatensor-learn).
    A template's clones, and so their parameters, are named by key
    (``params[key_to_name(key)]``, e.g. ``params["o3_lambda=0,o3_sigma=1"]``), so that inputs
    may list the keys in any order; a sequence's modules live under ``params["modules_<i>"]``,
    ``i`` the position of the key in ``in_keys``.

    Explicit gradient blocks are propagated with the chain rule (a Jacobian-vector product
    of the module at the values row of each gradient row), so a bias does not leak into them
    (metatensor-learn applies the module itself to the gradient values).

    Attributes:
        modules: one flax module cloned for every key, or one callable per key of ``in_keys``.
        in_keys: the keys the modules belong to (default: the keys of each input, for a
            template); inputs with other keys are refused.
        out_properties: output properties, one for all or one per key of ``in_keys``; default
            ``Labels.range("_", out_features)`` as in metatensor-learn.
    """

    modules: Sequence[Callable[[Array], Array]] | nn.Module
    in_keys: Labels | None = None
    out_properties: Labels | Sequence[Labels] | None = None

    @nn.compact
    def __call__(self, tensor: TensorMap) -> TensorMap:
        layer = "ModuleMap"
        tensor = _utils.check_tensor(tensor, layer)
        keys = tensor.keys
        names = key_names(keys)
        if isinstance(self.modules, nn.Module):
            if self.in_keys is not None:
                _utils.key_positions(keys, self.in_keys, layer)
            existing = self.variables.get("params", {}) if not self.is_initializing() else {}
            if existing:
                # the template has parameters: every key needs its own
                lookup(existing, names, layer, "module")
            modules = [self.modules.clone(parent=self, name=n) for n in names]
        else:
            if self.in_keys is None:
                raise ValueError(
                    f"{layer}: modules is a sequence of one module per key, but in_keys is not "
                    "given, so the modules could only follow the block order of each input; "
                    "pass in_keys= (the keys of the modules, in that order), or a single flax "
                    "module to clone for every key"
                )
            all_modules = list(self.modules)
            if len(all_modules) != len(self.in_keys):
                raise ValueError(
                    f"{layer}: got {len(all_modules)} modules for the {len(self.in_keys)} keys "
                    "of in_keys; give one module per key, or a single module to clone for "
                    "every key"
                )
            _, positions = _utils.key_positions(keys, self.in_keys, layer)
            modules = [all_modules[int(p)] for p in positions]
        out_properties = None
        if self.out_properties is not None:
            out_properties = per_block(
                self.out_properties, "out_properties", Labels, self.in_keys, keys, layer
            )

        blocks = []
        for b, block in enumerate(tensor.blocks()):
            module = modules[b]
            values_in = jnp.asarray(block.values)
            values = module(values_in)
            if values.shape[:-1] != values_in.shape[:-1]:
                raise ValueError(
                    f"{layer}: the module for key '{names[b]}' changed the sample or "
                    f"component axes: {values_in.shape} -> {values.shape}"
                )
            gradients = {}
            for parameter, gradient in block.gradients():
                primal, tangent = _utils.gradient_primal(values_in, gradient)
                if isinstance(module, nn.Module):
                    _, out = nn.jvp(
                        lambda mdl, x: mdl(x),
                        module,
                        (primal,),
                        (tangent.astype(primal.dtype),),
                        {},
                    )
                else:
                    _, out = jax.jvp(module, (primal,), (tangent.astype(primal.dtype),))
                gradients[parameter] = out.reshape(*gradient.values.shape[:-1], out.shape[-1])
            properties = (
                _utils.range_properties(values.shape[-1])
                if out_properties is None
                else out_properties[b]
            )
            if len(properties) != values.shape[-1]:
                raise ValueError(
                    f"{layer}: out_properties for key '{names[b]}' has "
                    f"{len(properties)} entries but the module returned {values.shape[-1]} "
                    "features"
                )
            blocks.append(block.with_arrays(values, properties=properties, gradients=gradients))
        return _utils.with_blocks(tensor, blocks)
