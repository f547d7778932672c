"""Array-namespace dispatch: NumPy in, NumPy out; JAX (or tracers) in, JAX out.

Metadata-driven gathers and scatters on NumPy data (what :func:`eqx_tensor.load` returns) run
in NumPy, because eager ``jax.numpy`` compiles one kernel per block shape, which costs
seconds on a 45-block file. Inside ``jax.jit`` the values are tracers and everything is JAX.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

# what converting a traced value to NumPy raises (which one depends on how it is converted)
TRACER_ERRORS = (jax.errors.ConcretizationTypeError, jax.errors.TracerArrayConversionError)


def namespace(*arrays: Any) -> Any:
    """``numpy`` if every array is a NumPy array, else ``jax.numpy``."""
    return np if all(isinstance(a, np.ndarray) for a in arrays) else jnp


def set_rows(out: Any, index: tuple[Any, ...], values: Any) -> Any:
    """``out[index] = values``, functionally for JAX and in place for NumPy (``out`` is new)."""
    if isinstance(out, np.ndarray):
        out[index] = values
        return out
    return out.at[index].set(values)


def safe_sqrt(x: Any) -> Any:
    """``sqrt(x)`` for ``x >= 0`` whose gradient at 0 is 0 instead of infinite.

    ``jnp.sqrt`` at 0 has an infinite derivative, which becomes NaN in the chain rule (``inf *
    0``) at zero-length vectors and constant features; the ``where`` keeps both branches finite.
    """
    positive = x > 0
    return jnp.where(positive, jnp.sqrt(jnp.where(positive, x, 1.0)), 0.0)
