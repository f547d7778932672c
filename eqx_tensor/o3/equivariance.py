"""Numerical equivariance check: ``fn(g . x)`` against ``g . fn(x)`` for rotations and inversion."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ..tensormap import TensorMap
from .rotations import invert, rotate
from .wigner import random_rotation


def _is_vector_array(x: Any) -> bool:
    return (
        isinstance(x, (np.ndarray, jax.Array))
        and x.ndim >= 1
        and x.shape[-1] == 3
        and jnp.issubdtype(x.dtype, jnp.inexact)
    )


def _act(tree: Any, R: jax.Array | None) -> Any:
    """Apply ``R`` (or the inversion when ``R is None``) to the TensorMaps and vector arrays."""

    def act(x: Any) -> Any:
        if isinstance(x, TensorMap):
            return invert(x) if R is None else rotate(x, R)
        if _is_vector_array(x):
            return -jnp.asarray(x) if R is None else jnp.asarray(x) @ R.T.astype(x.dtype)
        return x

    return jax.tree_util.tree_map(act, tree, is_leaf=lambda x: isinstance(x, TensorMap))


def _float_dtype(tree: Any) -> Any:
    """The dtype of the first floating array in ``tree`` (JAX's default float if none)."""
    for leaf in jax.tree_util.tree_leaves(tree):
        if hasattr(leaf, "dtype") and jnp.issubdtype(leaf.dtype, jnp.floating):
            return leaf.dtype
    return jnp.result_type(float)


def _max_deviation(got: Any, expected: Any) -> float:
    got_def = jax.tree_util.tree_structure(got)
    expected_def = jax.tree_util.tree_structure(expected)
    if got_def != expected_def:
        raise ValueError(
            "equivariance_error: the output metadata changed when the inputs were transformed; "
            f"got {got_def} but expected {expected_def}"
        )
    # concrete values here: numpy avoids compiling one small kernel per leaf shape
    deviations = [
        float(np.max(np.abs(np.asarray(a) - np.asarray(b)), initial=0.0))
        for a, b in zip(jax.tree_util.tree_leaves(got), jax.tree_util.tree_leaves(expected))
    ]
    return max(deviations, default=0.0)


def equivariance_error(
    fn: Callable[..., Any],
    inputs: Any,
    *,
    key: jax.Array | None = None,
    rotations: Sequence[Any] | jax.Array | None = None,
    n_rotations: int = 2,
    inversion: bool = True,
) -> float:
    """Largest absolute deviation between ``fn(g . inputs)`` and ``g . fn(inputs)``.

    The group elements ``g`` act on every TensorMap (through :func:`rotate` / :func:`invert`)
    and on every floating array whose last axis has size 3 (as Cartesian vectors, ``v -> R v``)
    found in the inputs and in the outputs; other leaves are left alone (and compared as
    invariants in the outputs). Pass model parameters through a closure, not as inputs.

    Args:
        fn: the function to check, called as ``fn(*inputs)``.
        inputs: the positional arguments of ``fn`` as a tuple or list, or a single argument.
        key: PRNG key for ``n_rotations`` random rotations (default ``jax.random.key(0)``);
            ignored when ``rotations`` is given.
        rotations: explicit orthogonal matrices (3, 3) to check, proper or improper.
        n_rotations: number of random rotations when ``rotations`` is not given.
        inversion: also check the inversion and a random improper rotation (inversion times
            the first rotation).

    Returns:
        The maximum absolute deviation over all group elements, output arrays and entries.

    Raises:
        ValueError: if the outputs' metadata differ between the two sides.
    """
    args = tuple(inputs) if isinstance(inputs, (tuple, list)) else (inputs,)
    dtype = _float_dtype(args)
    if rotations is None:
        key = jax.random.key(0) if key is None else key
        rotations = random_rotation(key, (n_rotations,), dtype)
    rotations = [jnp.asarray(R, dtype) for R in rotations]
    group: list[jax.Array | None] = list(rotations)
    if inversion:
        group.append(None)
        if rotations:
            group.append(-rotations[0])
    output = fn(*args)
    errors = [_max_deviation(fn(*_act(args, g)), _act(output, g)) for g in group]
    return max(errors, default=0.0)
