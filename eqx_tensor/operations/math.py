"""Element-wise and linear-algebra operations on TensorMaps, following metatensor-operations.

Every function propagates explicit gradients exactly where metatensor does (``add``,
``subtract``, ``multiply``, ``divide``, ``pow``, ``abs``, ``dot``) with the chain rule
written out on the gradient rows: the value row of gradient row ``r`` is
``gradient.samples["sample"][r]``, so ``values[sample]`` broadcast against the gradient's
extra components (e.g. ``xyz``) gives the per-row factor. ``lstsq`` and ``solve`` stack the
gradient rows below the value rows, as metatensor does, and return blocks without
gradients.

All functions are pure and work under ``jax.jit`` (metadata static), ``jax.grad`` through
the values and ``jax.vmap`` over a leading axis of every array. Element-wise operations
accept dynamic sample labels: two blocks with dynamic samples of equal names and sizes
are taken as aligned (the padded-batch contract), and the result keeps the first's.

Scalars: metatensor accepts Python ``int``/``float``; here NumPy/JAX 0-d arrays are
accepted too (e.g. a traced scalar parameter, which ``jax.grad`` then differentiates).

Called eagerly, each function checks its inputs in Python and then runs the computation as
one ``jax.jit`` program cached per metadata structure (see ``_utils._jit_operation``).
"""

from __future__ import annotations

import builtins
import functools
import math
import numbers
import warnings
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from .._backend import exact_divide, to_jax
from ..block import TensorBlock
from ..tensormap import TensorMap
from ._utils import (
    _add_gradient_like,
    _aligned,
    _block_like,
    _check_same_gradients_raise,
    _check_same_keys_raise,
    _check_tensormap,
    _jit_operation,
    _labels_equal,
    _refuse_gradients_of_gradients,
)

__all__ = ["abs", "add", "divide", "dot", "lstsq", "multiply", "pow", "solve", "subtract"]

Scalar = int | float | np.ndarray | jax.Array


# --------------------------------------------------------------------------- helpers
def _as_scalar(value: Any, fname: str) -> Any | None:
    """``value`` as a scalar (Python number or 0-d array), or ``None`` if it is not one."""
    if isinstance(value, (bool, numbers.Number)) and not isinstance(value, complex):
        return float(value)
    if isinstance(value, (np.ndarray, np.generic, jax.Array)):
        if value.ndim != 0:
            raise TypeError(
                f"`B` in '{fname}' must be a TensorMap or a scalar value, got an array of shape "
                f"{tuple(value.shape)}; wrap arrays in a TensorMap"
            )
        return value
    return None


def _scalar_like(scalar: Any, values: Any) -> Any:
    """A scalar operand that keeps the dtype of floating ``values`` (no float32 -> 64 upcast)."""
    if isinstance(scalar, float):
        return scalar  # weakly typed: adopts the dtype of the values
    if jnp.issubdtype(values.dtype, jnp.inexact):
        return jnp.asarray(scalar, dtype=values.dtype)
    return jnp.asarray(scalar)


def _rows(values: Any, gradient: TensorBlock, n_values_axes: int) -> Any:
    """``values[gradient.samples["sample"]]`` broadcastable against ``gradient.values``.

    Singleton axes are inserted for the gradient's extra components (e.g. ``xyz``), which
    come right after the samples. ``n_values_axes`` is ``values.ndim`` (the logical rank).
    """
    selected = values[gradient.samples.column("sample")]
    n_extra = len(gradient.components) - (n_values_axes - 2)
    return jnp.expand_dims(selected, tuple(range(1, 1 + n_extra))) if n_extra else selected


def _operands(A: Any, B: Any, fname: str) -> tuple[Any, TensorMap | None]:
    """Check ``A`` and ``B``: returns ``(scalar, None)`` or ``(None, B aligned on A's keys)``."""
    _check_tensormap(A, fname, "A")
    _refuse_gradients_of_gradients(A, fname)
    if isinstance(B, TensorMap):
        return None, _aligned(A, B, fname)
    scalar = _as_scalar(B, fname)
    if scalar is None:
        raise TypeError(f"`B` in '{fname}' must be a TensorMap or a scalar value, not {type(B)}")
    return scalar, None


def _map_blocks(A: TensorMap, function: Callable[[TensorBlock], TensorBlock]) -> TensorMap:
    return TensorMap(A.keys, [function(block) for block in A])


def _pair_blocks(
    A: TensorMap, B: TensorMap, function: Callable[[TensorBlock, TensorBlock], TensorBlock]
) -> TensorMap:
    """Apply ``function`` to the blocks of ``A`` and ``B`` (already aligned on A's keys)."""
    return TensorMap(A.keys, [function(a, b) for a, b in zip(A, B)])


# --------------------------------------------------------------------------- add/subtract
def _add_block_constant(block: TensorBlock, constant: Any) -> TensorBlock:
    values = to_jax(block.values)
    result = _block_like(block, _scalar_like(constant, values) + values)
    for parameter, gradient in block.gradients():
        # d(c + a) = da: gradients are carried over unchanged
        _add_gradient_like(result, parameter, gradient, to_jax(gradient.values))
    return result


def _add_block_block(block_1: TensorBlock, block_2: TensorBlock) -> TensorBlock:
    result = _block_like(block_1, to_jax(block_1.values) + to_jax(block_2.values))
    for parameter, gradient_1 in block_1.gradients():
        gradient_2 = block_2.gradient(parameter)
        values = to_jax(gradient_1.values) + to_jax(gradient_2.values)
        _add_gradient_like(result, parameter, gradient_1, values)
    return result


def add(A: TensorMap, B: Scalar | TensorMap) -> TensorMap:
    r"""``A + B``, block by block, with gradients: :math:`\nabla(A + B) = \nabla A + \nabla B`.

    Args:
        A: a TensorMap.
        B: a scalar, added to every value (gradients unchanged), or a TensorMap with the
            same keys (any order), and for each key the same samples, components,
            properties and gradients (metadata) as ``A``.

    Returns:
        a TensorMap with the keys and metadata of ``A``.

    Raises:
        TypeError: ``A`` is not a TensorMap or ``B`` neither a TensorMap nor a scalar.
        NotEqualError: (a ``ValueError``) the keys or block metadata differ.
    """
    scalar, B = _operands(A, B, "add")
    return _add_scalar(A, scalar) if B is None else _add_tensors(A, B)


@_jit_operation
def _add_scalar(A: TensorMap, scalar: Any) -> TensorMap:
    return _map_blocks(A, lambda block: _add_block_constant(block, scalar))


@_jit_operation
def _add_tensors(A: TensorMap, B: TensorMap) -> TensorMap:
    return _pair_blocks(A, B, _add_block_block)


def subtract(A: TensorMap, B: Scalar | TensorMap) -> TensorMap:
    r"""``A - B``, block by block, with gradients :math:`\nabla A - \nabla B`.

    Same arguments, checks and gradient handling as :func:`add`. (metatensor computes
    ``add(A, multiply(B, -1))``; ``a - b`` is the same number, bit for bit.)
    """
    scalar, B = _operands(A, B, "subtract")
    return _add_scalar(A, -scalar) if B is None else _subtract_tensors(A, B)


def _subtract_block_block(block_1: TensorBlock, block_2: TensorBlock) -> TensorBlock:
    result = _block_like(block_1, to_jax(block_1.values) - to_jax(block_2.values))
    for parameter, gradient_1 in block_1.gradients():
        gradient_2 = block_2.gradient(parameter)
        values = to_jax(gradient_1.values) - to_jax(gradient_2.values)
        _add_gradient_like(result, parameter, gradient_1, values)
    return result


@_jit_operation
def _subtract_tensors(A: TensorMap, B: TensorMap) -> TensorMap:
    return _pair_blocks(A, B, _subtract_block_block)


# --------------------------------------------------------------------------- multiply
def _multiply_block_constant(block: TensorBlock, constant: Any) -> TensorBlock:
    values = to_jax(block.values)
    constant = _scalar_like(constant, values)
    result = _block_like(block, constant * values)
    for parameter, gradient in block.gradients():
        _add_gradient_like(result, parameter, gradient, to_jax(gradient.values) * constant)
    return result


def _multiply_block_block(block_1: TensorBlock, block_2: TensorBlock) -> TensorBlock:
    values_1, values_2 = to_jax(block_1.values), to_jax(block_2.values)
    result = _block_like(block_1, values_1 * values_2)
    for parameter, gradient_1 in block_1.gradients():
        gradient_2 = block_2.gradient(parameter)
        # product rule, row by row: d(ab) = a db + da b
        values = _rows(values_1, gradient_1, values_1.ndim) * jnp.asarray(
            gradient_2.values
        ) + to_jax(gradient_1.values) * _rows(values_2, gradient_2, values_2.ndim)
        _add_gradient_like(result, parameter, gradient_1, values)
    return result


def multiply(A: TensorMap, B: Scalar | TensorMap) -> TensorMap:
    r"""``A * B`` element-wise, with gradients :math:`\nabla(AB) = A \nabla B + B \nabla A`.

    Args:
        A: a TensorMap.
        B: a scalar (gradients are scaled too) or a TensorMap with the same keys (any
            order) and the same block and gradient metadata as ``A``.

    Returns:
        a TensorMap with the keys and metadata of ``A``.
    """
    scalar, B = _operands(A, B, "multiply")
    return _multiply_scalar(A, scalar) if B is None else _multiply_tensors(A, B)


@_jit_operation
def _multiply_scalar(A: TensorMap, scalar: Any) -> TensorMap:
    return _map_blocks(A, lambda block: _multiply_block_constant(block, scalar))


@_jit_operation
def _multiply_tensors(A: TensorMap, B: TensorMap) -> TensorMap:
    return _pair_blocks(A, B, _multiply_block_block)


# --------------------------------------------------------------------------- divide
def _divide_block_constant(block: TensorBlock, constant: Any) -> TensorBlock:
    values = to_jax(block.values)
    constant = _scalar_like(constant, values)
    # exact_divide: XLA would multiply by the reciprocal of the (broadcast) constant
    result = _block_like(block, exact_divide(values, constant))
    for parameter, gradient in block.gradients():
        new = exact_divide(to_jax(gradient.values), constant)
        _add_gradient_like(result, parameter, gradient, new)
    return result


def _divide_block_block(block_1: TensorBlock, block_2: TensorBlock) -> TensorBlock:
    values_1, values_2 = to_jax(block_1.values), to_jax(block_2.values)
    result = _block_like(block_1, values_1 / values_2)
    for parameter, gradient_1 in block_1.gradients():
        gradient_2 = block_2.gradient(parameter)
        rows_1 = _rows(values_1, gradient_1, values_1.ndim)
        rows_2 = _rows(values_2, gradient_2, values_2.ndim)
        # quotient rule, in metatensor's order of operations: -a db / b^2 + da / b
        # (exact_divide: rows_2 is broadcast over the extra gradient components)
        values = exact_divide(-rows_1 * to_jax(gradient_2.values), rows_2**2) + exact_divide(
            to_jax(gradient_1.values), rows_2
        )
        _add_gradient_like(result, parameter, gradient_1, values)
    return result


def divide(A: TensorMap, B: Scalar | TensorMap) -> TensorMap:
    r"""``A / B`` element-wise, with :math:`\nabla(A/B) = \nabla A / B - A \nabla B / B^2`.

    Same arguments and checks as :func:`multiply`.
    """
    scalar, B = _operands(A, B, "divide")
    return _divide_scalar(A, scalar) if B is None else _divide_tensors(A, B)


@_jit_operation
def _divide_scalar(A: TensorMap, scalar: Any) -> TensorMap:
    return _map_blocks(A, lambda block: _divide_block_constant(block, scalar))


@_jit_operation
def _divide_tensors(A: TensorMap, B: TensorMap) -> TensorMap:
    return _pair_blocks(A, B, _divide_block_block)


# --------------------------------------------------------------------------- pow, abs
def _power(values: Any, exponent: Any) -> Any:
    # integral Python exponents use repeated multiplication (lax.integer_pow), which is
    # exact for 1 and 2 like NumPy's fast paths, so pow(t, 2) == multiply(t, t) bit for bit
    if isinstance(exponent, float) and exponent.is_integer() and builtins.abs(exponent) < 2**31:
        if jnp.issubdtype(values.dtype, jnp.inexact):
            return values ** int(exponent)
        return values.astype(jnp.result_type(float)) ** int(exponent)
    return values ** _scalar_like(exponent, values)


def _pow_block_constant(block: TensorBlock, exponent: Any) -> TensorBlock:
    values = to_jax(block.values)
    result = _block_like(block, _power(values, exponent))
    for parameter, gradient in block.gradients():
        rows = _rows(values, gradient, values.ndim)
        # chain rule: d(a^n) = n da a^(n-1)
        new = _scalar_like(exponent, values) * to_jax(gradient.values) * _power(rows, exponent - 1)
        _add_gradient_like(result, parameter, gradient, new)
    return result


def pow(A: TensorMap, B: Scalar) -> TensorMap:
    r"""``A ** B`` element-wise for a scalar ``B``, with :math:`\nabla A^B = B A^{B-1} \nabla A`.

    Args:
        A: a TensorMap.
        B: the exponent, a Python number or a 0-d array (differentiable with ``jax.grad``).

    Integral exponents are computed by repeated multiplication, so ``pow(A, 2)`` equals
    ``multiply(A, A)`` exactly, values and gradients.
    """
    _check_tensormap(A, "pow", "A")
    _refuse_gradients_of_gradients(A, "pow")
    exponent = _as_scalar(B, "pow")
    if exponent is None:
        raise TypeError(f"`B` in 'pow' must be a scalar value, not {type(B)}")
    if isinstance(exponent, float):
        # a Python exponent is static: integral ones then use exact repeated products
        return _pow_static(A, exponent)
    return _pow_traced(A, exponent)


def _pow_impl(A: TensorMap, exponent: Any) -> TensorMap:
    return _map_blocks(A, lambda block: _pow_block_constant(block, exponent))


_pow_static = _jit_operation(_pow_impl, static_argnums=1)
_pow_traced = _jit_operation(_pow_impl)


def _abs_block(block: TensorBlock) -> TensorBlock:
    values = to_jax(block.values)
    result = _block_like(block, jnp.abs(values))
    if not block.gradients_list():
        return result
    sign = jnp.sign(values)
    for parameter, gradient in block.gradients():
        # d|a| = sign(a) da (0 where a == 0, as in metatensor)
        new = to_jax(gradient.values) * _rows(sign, gradient, values.ndim)
        _add_gradient_like(result, parameter, gradient, new)
    return result


def abs(A: TensorMap) -> TensorMap:
    r"""``|A|`` element-wise, with gradients :math:`\nabla |A| = \mathrm{sign}(A) \nabla A`."""
    _check_tensormap(A, "abs", "A")
    _refuse_gradients_of_gradients(A, "abs")
    return _abs(A)


@_jit_operation
def _abs(A: TensorMap) -> TensorMap:
    return _map_blocks(A, _abs_block)


# --------------------------------------------------------------------------- dot
def _dot_block(block_1: TensorBlock, block_2: TensorBlock) -> TensorBlock:
    if block_1.properties != block_2.properties:
        raise ValueError("TensorBlocks in `dot` should have the same properties")
    if len(block_2.components) > 0:
        raise ValueError("the second TensorMap in `dot` should not have components")
    if len(block_2.gradients_list()) > 0:
        raise ValueError("the second TensorMap in `dot` should not have gradients")
    # the samples of the second block become the properties: they must be static
    properties = block_2.samples.require_static("dot (samples of the second TensorMap)")
    matrix_T = to_jax(block_2.values).T
    values = to_jax(block_1.values) @ matrix_T
    result = TensorBlock._unchecked(
        values, block_1.samples, tuple(block_1.components), properties, {}
    )
    result._frozen = False
    for parameter, gradient in block_1.gradients():
        # linear in the first operand: d(a . b) = da . b
        new = TensorBlock._unchecked(
            to_jax(gradient.values) @ matrix_T,
            gradient.samples,
            tuple(gradient.components),
            properties,
            {},
            parameter,
        )
        result._gradients[parameter] = new
    return result


def dot(tensor_1: TensorMap, tensor_2: TensorMap) -> TensorMap:
    r"""Contract the properties of ``tensor_1`` with the properties of ``tensor_2``.

    For each key, ``values = block_1.values @ block_2.values.T``: shape
    ``(n_samples_1, *components_1, n_samples_2)``, with the samples of ``block_2`` as new
    properties. Gradients of ``tensor_1`` are propagated (the operation is linear in it).

    Args:
        tensor_1: a TensorMap, possibly with components and gradients.
        tensor_2: a TensorMap with the same keys (any order), the same properties as
            ``tensor_1`` for each key, no components and no gradients.
    """
    _check_tensormap(tensor_1, "dot", "tensor_1")
    _refuse_gradients_of_gradients(tensor_1, "dot")
    _check_tensormap(tensor_2, "dot", "tensor_2")
    _refuse_gradients_of_gradients(tensor_2, "dot")
    # only keys are compared here; _dot_block checks the (static) properties/components
    tensor_2 = _aligned(tensor_1, tensor_2, "dot", check=[], check_gradients=False)
    return _dot(tensor_1, tensor_2)


@_jit_operation
def _dot(tensor_1: TensorMap, tensor_2: TensorMap) -> TensorMap:
    return _pair_blocks(tensor_1, tensor_2, _dot_block)


# --------------------------------------------------------------------------- lstsq, solve
def _as_matrix(values: Any, n_columns: int) -> jax.Array:
    """``values`` as a matrix with ``n_columns`` columns (also when that is 0)."""
    values = to_jax(values)
    return values.reshape(math.prod(values.shape[:-1]), n_columns)


def _stacked_rows(X: TensorBlock, Y: TensorBlock) -> tuple[Any, Any]:
    """Values (components merged into rows) followed by every gradient's rows, X and Y."""
    n_x, n_y = X.values.shape[-1], Y.values.shape[-1]
    xs = [_as_matrix(X.values, n_x)]
    ys = [_as_matrix(Y.values, n_y)]
    for parameter, gradient in X.gradients():
        xs.append(_as_matrix(gradient.values, n_x))
        ys.append(_as_matrix(Y.gradient(parameter).values, n_y))
    return jnp.concatenate(xs, axis=0), jnp.concatenate(ys, axis=0)


def _weights_block(weights: Any, X: TensorBlock, Y: TensorBlock) -> TensorBlock:
    # weights solve X @ w = Y, shape (n_properties_X, n_properties_Y); stored transposed
    return TensorBlock(weights.T, Y.properties, [], X.properties)


def lstsq(X: TensorMap, Y: TensorMap, rcond: float | None, driver: str | None = None) -> TensorMap:
    r"""Least-squares weights :math:`w` minimising :math:`\|X w - Y\|^2`, block by block.

    Components are merged with the samples, and the rows of every gradient of ``X`` and
    ``Y`` are appended, so gradients are fitted too. The result, for each key, has
    ``Y``'s properties as samples, no components and ``X``'s properties as properties
    (values ``w.T``), and no gradients.

    Args:
        X, Y: TensorMaps with the same keys (any order); for each key, equal samples,
            components and gradient samples/components.
        rcond: cut-off ratio for small singular values (``jnp.linalg.lstsq``). ``None``
            uses the default ``eps * max(n_rows, n_properties)`` and warns, as metatensor.
        driver: accepted for compatibility with metatensor's torch backend, ignored.
    """
    del driver  # torch-only LAPACK driver choice; JAX picks its own
    _check_tensormap(X, "lstsq", "X")
    _check_tensormap(Y, "lstsq", "Y")
    if rcond is None:
        warnings.warn(
            "WARNING rcond is set to None, which will trigger the default behavior of "
            "jax.numpy.linalg.lstsq (eps * max(M, N)), which is different from torch's",
            stacklevel=2,
        )
    else:
        try:  # a compile-time constant of the solver: NumPy and JAX scalars become floats
            rcond = float(rcond)
        except (TypeError, ValueError, jax.errors.ConcretizationTypeError):
            raise TypeError(
                f"`rcond` in 'lstsq' must be a number known at trace time, got {rcond!r}"
            ) from None
    Y = _aligned(X, Y, "lstsq", check=["samples", "components"])
    return _lstsq(X, Y, rcond)


@functools.partial(_jit_operation, static_argnums=2)
def _lstsq(X: TensorMap, Y: TensorMap, rcond: float | None) -> TensorMap:
    def block(X_block: TensorBlock, Y_block: TensorBlock) -> TensorBlock:
        X_rows, Y_rows = _stacked_rows(X_block, Y_block)
        weights = jnp.linalg.lstsq(X_rows, Y_rows, rcond=rcond)[0]
        return _weights_block(weights, X_block, Y_block)

    return _pair_blocks(X, Y, block)


def solve(X: TensorMap, Y: TensorMap) -> TensorMap:
    r"""Solve the square linear systems :math:`X w = Y`, block by block.

    Each block of ``X`` must be a square 2-D array (no components). The result has the
    layout of :func:`lstsq`: ``Y``'s properties as samples, ``X``'s properties as
    properties, values ``w.T``, no gradients.
    """
    _check_tensormap(X, "solve", "X")
    _check_tensormap(Y, "solve", "Y")
    _check_same_keys_raise(X, Y, "solve")
    for key, X_block in X.items():
        shape = X_block.values.shape
        if len(shape) != 2 or shape[0] != shape[1]:
            raise ValueError(
                f"the values in each block of X should be a square 2D array, the block for "
                f"{key} has shape {tuple(shape)}"
            )
    positions = Y.keys.positions(X.keys)
    for X_block, position in zip(X, positions):
        Y_block = Y.block_by_id(int(position))
        if not _labels_equal(X_block.samples, Y_block.samples, "solve"):
            raise ValueError(
                "X and Y blocks in `solve` should have the same samples in the same order"
            )
        if len(X_block.components) != len(Y_block.components) or any(
            a != b for a, b in zip(X_block.components, Y_block.components)
        ):
            raise ValueError(
                "X and Y blocks in `solve` should have the same components in the same order"
            )
        _check_same_gradients_raise(X_block, Y_block, "solve")
    return _solve(X, _aligned(X, Y, "solve", check=[], check_gradients=False))


@_jit_operation
def _solve(X: TensorMap, Y: TensorMap) -> TensorMap:
    def block(X_block: TensorBlock, Y_block: TensorBlock) -> TensorBlock:
        X_rows, Y_rows = _stacked_rows(X_block, Y_block)
        return _weights_block(jnp.linalg.solve(X_rows, Y_rows), X_block, Y_block)

    return _pair_blocks(X, Y, block)
