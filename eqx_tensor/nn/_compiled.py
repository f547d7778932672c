"""``Module.init`` and ``Module.apply`` as compiled programs for the layers of ``eqx_tensor.nn``.

Called eagerly, flax's ``init`` and ``apply`` run every layer operation by operation, and JAX
compiles each operation (or each layer's jitted core, its derivative and its transpose) on its
own: over a TensorMap of many blocks that is many separate compilations. Here ``init`` and
``apply`` each run under ``jax.jit``: one program per call structure, reused by later calls
with the same metadata and shapes, and inlined into a caller's own ``jax.jit``. ``init`` throws
the forward pass away, and under ``jax.jit`` XLA removes it from the program.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import numpy as np
from flax.core.scope import DenyList

from .._compile import compiler_options
from ..tensormap import TensorMap

__all__ = ["Compiled"]

_INIT_OPTIONS = {
    "method": None,
    "mutable": DenyList("intermediates"),
    "capture_intermediates": False,
}
_APPLY_OPTIONS = {"method": None, "mutable": False, "capture_intermediates": False}


def _arrays_only(tree: Any, tracers: bool) -> bool:
    """Whether every leaf is an array (and, unless ``tracers``, a concrete one), and no
    TensorMap has concrete dynamic samples.

    A Python scalar or string leaf (say a ``train=True`` flag) must stay a Python value for
    the module's own control flow, so such calls are not compiled. Concrete dynamic samples
    are compared by value when the layers run eagerly (:func:`eqx_tensor.labels.same_labels`),
    a check that tracing would turn into a comparison of sizes only.
    """
    for tensor in jax.tree_util.tree_leaves(tree, is_leaf=_is_tensor_map):
        if _is_tensor_map(tensor) and any(
            block.samples.is_dynamic and not isinstance(block.samples.values, jax.core.Tracer)
            for block in tensor.blocks()
        ):
            return False
    for leaf in jax.tree_util.tree_leaves(tree):
        if isinstance(leaf, jax.core.Tracer):
            if not tracers:
                return False
        elif not isinstance(leaf, (np.ndarray, jax.Array)):
            return False
    return True


def _is_tensor_map(value: Any) -> bool:
    return isinstance(value, TensorMap)


def _init_compiler_options() -> dict[str, Any] | None:
    """Compiler options of the one-off initialisation program.

    On the CPU, LLVM's optimisation passes take most of the compile time of the random draws
    (each draw is an unrolled hash) and pay back only on repeated runs; an initialisation runs
    once, so they are off there, and the kernels come from the emitters that compile faster
    (:func:`eqx_tensor.compiler_options`). Other backends keep their defaults.
    """
    if jax.default_backend() == "cpu":
        return {**compiler_options("cpu"), "xla_backend_optimization_level": 0}
    return None


class Compiled:
    """Mixin for flax modules: ``init`` and ``apply`` run under ``jax.jit``.

    Results are those of flax's own ``init`` / ``apply`` (the same random draws, the same
    values up to rounding). Calls whose inputs hold anything but arrays (a Python flag, a
    string) take flax's own path. ``init`` is compiled only outside other transformations
    (concrete inputs); ``apply`` also inside ``jax.grad`` or ``jax.vmap`` (one compiled program
    instead of one per layer operation and its derivative) and is inlined inside ``jax.jit``.
    Errors about metadata are raised while tracing, as eagerly; checks that need concrete
    array values are not made under ``jax.jit`` (inputs with concrete dynamic samples take
    flax's own path, so that their samples are compared by value).
    """

    @nn.nowrap
    def init(self, rngs: Any, *args: Any, **kwargs: Any) -> Any:
        """Initialise the variables: flax's ``Module.init``, compiled as one program.

        Args:
            rngs: a PRNG key, or a dict of them by stream name.
            *args: the inputs of ``__call__`` (or of ``method``).
            **kwargs: ``method``, ``mutable``, ``capture_intermediates`` as in flax, and keyword
                inputs of ``__call__``.

        Returns:
            The variables (``{"params": ...}``), as flax's ``init`` returns them.
        """
        options = {name: kwargs.pop(name, default) for name, default in _INIT_OPTIONS.items()}
        if not _arrays_only((rngs, args, kwargs), tracers=False):
            return nn.Module.init(self, rngs, *args, **options, **kwargs)
        compiled = _cached(self, "init", options, nn.Module.init, _init_compiler_options())
        try:
            return compiled(rngs, args, kwargs)
        except ValueError as error:
            # concrete inputs, but inside a trace (e.g. closed over in a user's jit), where
            # compiler options are refused: compile as part of the caller's program instead
            if "compiler_options" not in str(error):
                raise
        return _cached(self, "init_nested", options, nn.Module.init, None)(rngs, args, kwargs)

    @nn.nowrap
    def apply(self, variables: Any, *args: Any, rngs: Any = None, **kwargs: Any) -> Any:
        """Apply the module: flax's ``Module.apply``, compiled as one program.

        Args:
            variables: the variables, as ``init`` returns them.
            *args: the inputs of ``__call__`` (or of ``method``).
            rngs: PRNG keys by stream name, as in flax.
            **kwargs: ``method``, ``mutable``, ``capture_intermediates`` as in flax, and keyword
                inputs of ``__call__``.

        Returns:
            What ``__call__`` returns (with the updated collections if ``mutable``), as flax's
            ``apply`` returns it.
        """
        options = {name: kwargs.pop(name, default) for name, default in _APPLY_OPTIONS.items()}
        if not _arrays_only((variables, rngs, args, kwargs), tracers=True):
            return nn.Module.apply(self, variables, *args, rngs=rngs, **options, **kwargs)
        compiled = _cached(self, "apply", options, _apply_with_rngs, None)
        return compiled(variables, (rngs, *args), kwargs)


def _apply_with_rngs(module: Any, variables: Any, rngs: Any, *args: Any, **kwargs: Any) -> Any:
    return nn.Module.apply(module, variables, *args, rngs=rngs, **kwargs)


def _cached(
    module: Any,
    kind: str,
    options: dict[str, Any],
    function: Any,
    compiler_options: dict[str, Any] | None,
) -> Any:
    """The jitted ``function(module, first, *args, **options, **kwargs)``, kept on the module.

    Flax modules are not hashable (their attributes may be lists), so the compiled callables
    live on the instance, one per set of options.
    """
    cache = module.__dict__.get("_compiled_calls")
    if cache is None:
        cache = {}
        object.__setattr__(module, "_compiled_calls", cache)
    key = (kind, tuple((k, tuple(v) if isinstance(v, list) else v) for k, v in options.items()))
    try:
        return cache[key]
    except KeyError:
        pass
    except TypeError:  # an unhashable option (say a list for mutable): compiled, not kept
        key = None

    def call(first: Any, args: tuple, kwargs: dict) -> Any:
        return function(module, first, *args, **options, **kwargs)

    compiled = jax.jit(call, compiler_options=compiler_options)
    if key is not None:
        cache[key] = compiled
    return compiled
