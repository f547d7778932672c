"""XLA compiler options that shorten the compilation of eqx_tensor programs.

A TensorMap program holds a few small kernels per block and per irrep, so XLA spends most of a
first call compiling many small fused loops, each at a fixed cost. On the CPU, XLA's classic
loop emitters (``xla_cpu_use_fusion_emitters=False``) generate each of them faster than its
default (MLIR) fusion emitters. The generated code differs: per kernel it can be faster or
slower, so whether a program gains depends on how often it runs after compiling
(``benchmarks/trajectory.py`` and ``benchmarks/latency.py`` measure both). Results agree with
the default emitters' to rounding, not always to the last bit: the means and variances of
:mod:`eqx_tensor.operations`, identical to NumPy's under the defaults, can differ from them by
one unit in the last place.

The options are passed explicitly, per program, ``jax.jit(f, compiler_options=...)``; nothing
here changes how other programs of the process compile.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import numpy as np

__all__ = ["compiler_options"]

_CPU_OPTIONS = (("xla_cpu_use_fusion_emitters", False),)


def compiler_options(backend: str | None = None) -> dict[str, Any]:
    """Options for ``jax.jit(..., compiler_options=...)`` that shorten compile times.

    Args:
        backend: ``"cpu"``, ``"gpu"``, ...; default: JAX's default backend.

    Returns:
        On the CPU, ``{"xla_cpu_use_fusion_emitters": False}`` (the module docstring says why),
        or ``{}`` where the installed jaxlib does not know the option; ``{}`` on other backends,
        which keep XLA's defaults. A new dict on each call.

    >>> import jax
    >>> from eqx_tensor import compiler_options
    >>> step = jax.jit(lambda x: 2 * x, compiler_options=compiler_options())
    >>> float(step(1.0))
    2.0
    """
    if (backend or jax.default_backend()) != "cpu":
        return {}
    return {name: value for name, value in _CPU_OPTIONS if _supported(name, value)}


@functools.cache
def _supported(name: str, value: Any) -> bool:
    """Whether this jaxlib's CPU compiler accepts the option (unknown names are refused)."""
    try:
        jax.jit(lambda x: x + 1).lower(np.float32(0)).compile(compiler_options={name: value})
    except jax.errors.JaxRuntimeError:
        return False
    return True
