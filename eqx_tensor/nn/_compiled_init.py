"""``Module.init`` as one compiled program, for the layers of :mod:`eqx_tensor.nn`.

Called eagerly, flax's ``init`` runs the forward pass of every layer operation by operation, and
JAX compiles each operation on each new block shape on its own: over a TensorMap of many blocks
that is hundreds of small compilations, for a forward pass whose result ``init`` throws away.
Under ``jax.jit`` the whole initialisation is traced once and compiled as one program, from
which XLA removes the unused forward computation.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import numpy as np
from flax.core.scope import DenyList

__all__ = ["CompiledInit"]

_INIT_DEFAULTS = {
    "method": None,
    "mutable": DenyList("intermediates"),
    "capture_intermediates": False,
}


def _compilable(tree: Any) -> bool:
    """Whether every leaf is a concrete array (no tracers, no Python scalars or strings)."""
    leaves = jax.tree_util.tree_leaves(tree)
    return all(
        isinstance(leaf, (np.ndarray, jax.Array)) and not isinstance(leaf, jax.core.Tracer)
        for leaf in leaves
    )


def _compiler_options() -> dict[str, Any] | None:
    """Options of the one-off initialisation program.

    On the CPU, LLVM's optimisation passes take most of the compile time of the random draws
    (each draw is an unrolled hash) and pay back only on repeated runs; an initialisation runs
    once, so they are off there. Other backends keep their defaults.
    """
    if jax.default_backend() == "cpu":
        return {"xla_backend_optimization_level": 0}
    return None


class CompiledInit:
    """Mixin for flax modules: ``init`` runs under ``jax.jit`` when its inputs allow it.

    The parameters are the same as flax's eager ``init`` gives (same random draws, same
    values). Inputs whose leaves are all concrete arrays (TensorMaps, systems, PRNG keys) are
    compiled; any other input (a Python scalar flag, or a call already inside a trace) takes
    flax's own path. Errors about the inputs' metadata are raised while tracing, as eagerly.
    Checks that need concrete array values are not made under ``jax.jit`` (for example, the
    overflow of a neighbour list is reported instead of raised).
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
        options = {name: kwargs.pop(name, default) for name, default in _INIT_DEFAULTS.items()}
        if not _compilable((rngs, args, kwargs)):
            return nn.Module.init(self, rngs, *args, **options, **kwargs)
        return self._compiled_init(tuple(options.items()))(rngs, args, kwargs)

    @nn.nowrap
    def _compiled_init(self, options: tuple[tuple[str, Any], ...]) -> Any:
        cache = self.__dict__.get("_compiled_init_cache")
        if cache is None:
            cache = {}
            object.__setattr__(self, "_compiled_init_cache", cache)
        try:
            return cache[options]
        except (KeyError, TypeError):
            pass

        def init(rngs: Any, args: tuple, kwargs: dict) -> Any:
            return nn.Module.init(self, rngs, *args, **dict(options), **kwargs)

        compiled = jax.jit(init, compiler_options=_compiler_options())

        try:
            cache[options] = compiled
        except TypeError:  # an unhashable option (e.g. a list for mutable): no caching
            pass
        return compiled
