"""Array helpers of the operations: namespace dispatch for the internal steps, JAX conversion.

Internal steps dispatch on the array type (:func:`namespace`): metadata-driven gathers and
scatters on NumPy data (what :func:`eqx_tensor.load` returns) run in NumPy, because eager
``jax.numpy`` compiles one kernel per operation and block shape, where NumPy compiles nothing.
Inside ``jax.jit`` the values are tracers and everything is JAX. The operations return JAX
arrays (:func:`to_jax`, once per output array; see :mod:`eqx_tensor.operations`).
"""

from __future__ import annotations

import warnings
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


def exact_divide(numerator: Any, denominator: Any) -> Any:
    """``numerator / denominator``, correctly rounded element by element, as NumPy divides.

    XLA rewrites a division by a broadcast value (a Python or 0-d divisor, or one broadcast
    along some axes, such as the group sizes of a mean) into a multiplication by its
    reciprocal, which is up to one unit in the last place off NumPy's result, inside
    ``jax.jit`` and in eager calls alike. Here the divisor is broadcast to the full shape
    first and passed through :func:`jax.lax.optimization_barrier`, so that XLA sees a
    division of two full arrays and keeps it. NumPy inputs are divided by NumPy.

    Under :func:`jax.vmap` with a divisor that is not batched, the batching rule inserts a
    broadcast after the barrier and XLA may use the reciprocal again.

    Args:
        numerator, denominator: arrays (or Python numbers) of broadcastable shapes.

    Returns:
        the quotient, of the broadcast shape and the promoted dtype of the operands.
    """
    if isinstance(numerator, np.ndarray) and isinstance(
        denominator, (np.ndarray, np.generic, int, float)
    ):
        return numerator / denominator
    dtype = jnp.result_type(numerator, denominator)
    if not jnp.issubdtype(dtype, jnp.inexact):
        dtype = jnp.result_type(dtype, float)
    shape = jnp.broadcast_shapes(jnp.shape(numerator), jnp.shape(denominator))
    full = jnp.broadcast_to(jnp.asarray(denominator, dtype=dtype), shape)
    return jnp.asarray(numerator, dtype=dtype) / jax.lax.optimization_barrier(full)


# the dtypes that become 32-bit when they are converted to JAX arrays with x64 off
_DOUBLE_DTYPES = (np.dtype(np.float64), np.dtype(np.complex128))

FLOAT64_WARNING = (
    "eqx_tensor: float64 NumPy data is converted to float32 JAX arrays because "
    "jax_enable_x64 is off: results lose precision (and differ from metatensor's float64 "
    "ones). Enable float64 with jax.config.update('jax_enable_x64', True) (or the "
    "JAX_ENABLE_X64=1 environment variable) before creating arrays, or cast the data to "
    "float32 yourself (tensor.to(dtype=numpy.float32)) to silence this warning."
)


def warn_if_downcast(arrays: Any) -> None:
    """Warn (:data:`FLOAT64_WARNING`) if JAX will turn one of ``arrays`` into 32 bits.

    ``arrays`` is any pytree (an array, a TensorMap, a tuple of arguments). Only NumPy
    float64/complex128 arrays count, and only while ``jax_enable_x64`` is off. The message
    is fixed and issued from this function, so that the default warning filter shows it
    once per process.
    """
    if jax.config.jax_enable_x64:
        return
    for leaf in jax.tree_util.tree_leaves(arrays):
        if isinstance(leaf, np.ndarray) and leaf.dtype in _DOUBLE_DTYPES:
            warnings.warn(FLOAT64_WARNING, UserWarning, stacklevel=1)
            return


def to_jax(array: Any) -> Any:
    """``jax.numpy.asarray(array)``, warning once when float64 data becomes float32."""
    if isinstance(array, np.ndarray):
        warn_if_downcast(array)
    return jnp.asarray(array)
