"""Numerical equivariance check: ``fn(g . x)`` against ``g . fn(x)`` for rotations and inversion.

TensorMaps describe themselves: their keys (``o3_lambda``, ``o3_sigma``) and their components
(``o3_mu``, ``xyz``) say how they transform (:func:`~eqx_tensor.o3.rotate`). A raw array does
not: an ``(n, 3)`` float array may hold vectors or three invariants. Its role must be declared,
as e3nn-jax's ``equivariance_test`` reads it from irreps, with one of these *kinds*:

* ``"scalar"``: unchanged (``x -> x``);
* ``"pseudoscalar"``: ``x -> det(R) x``;
* ``"vector"``: Cartesian vectors along the last axis (size 3), ``v -> R v``;
* ``"pseudovector"``: axial vectors (e.g. cross products), ``v -> det(R) R v``.

Floating arrays in the inputs or the outputs without a declared kind are refused, naming the
leaf. Integer and boolean arrays (indices, species, masks) and non-array leaves cannot be
transformed and pass unchanged.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ..tensormap import TensorMap
from .rotations import invert, rotate
from .wigner import random_rotation

#: The kinds a raw array can be declared as (module docstring).
KINDS: tuple[str, ...] = ("scalar", "pseudoscalar", "vector", "pseudovector")


def _is_tensormap(x: Any) -> bool:
    return isinstance(x, TensorMap)


def _is_float_array(x: Any) -> bool:
    return isinstance(x, (np.ndarray, jax.Array)) and jnp.issubdtype(x.dtype, jnp.inexact)


def _check_kinds(kinds: Any, argument: str) -> None:
    for kind in jax.tree_util.tree_leaves(kinds):
        if kind not in KINDS:
            raise ValueError(
                f"equivariance_error: {argument} has the kind {kind!r}; the kinds are {KINDS} "
                "(None leaves a part undeclared: TensorMaps and non-float leaves only)"
            )


# stands for "check the declared kinds only" where a group element is expected
_CHECK: Any = object()


def _act_leaf(x: Any, kind: str | None, R: Any, where: str, argument: str) -> Any:
    """Apply ``R`` (the inversion when ``None``) to one leaf of the declared ``kind``."""
    if _is_tensormap(x):
        if R is _CHECK:
            return x
        return invert(x) if R is None else rotate(x, R)
    if not _is_float_array(x):
        if kind in ("vector", "pseudovector", "pseudoscalar"):
            dtype = f" of dtype {x.dtype}" if hasattr(x, "dtype") else ""
            raise ValueError(
                f"equivariance_error: {where} is declared {kind!r} in {argument} but is a "
                f"{type(x).__name__}{dtype}, not a floating array"
            )
        return x
    if kind is None:
        raise ValueError(
            f"equivariance_error: {where} is a floating array of shape {tuple(x.shape)} whose "
            f"transformation is not known; declare it with {argument}= ('vector' for "
            "Cartesian vectors on the last axis, 'scalar' for invariants, 'pseudovector', "
            "'pseudoscalar'), e.g. a string for every array or a tuple with one kind per "
            "argument, or pass a TensorMap, whose metadata says how it transforms"
        )
    if kind in ("vector", "pseudovector") and (x.ndim < 1 or x.shape[-1] != 3):
        raise ValueError(
            f"equivariance_error: {where} is declared {kind!r} in {argument}, which needs a "
            f"last axis of size 3 (x, y, z), but it has shape {tuple(x.shape)}"
        )
    if R is _CHECK or kind == "scalar":
        return x
    x = jnp.asarray(x)
    # the inversion: det = -1, R v = -v
    det = -1.0 if R is None else jnp.linalg.det(R).astype(x.dtype)
    if kind == "pseudoscalar":
        return x * det
    rotated = -x if R is None else x @ R.T.astype(x.dtype)
    return rotated * det if kind == "pseudovector" else rotated


def _act(tree: Any, kinds: Any, R: Any, argument: str, label: str) -> Any:
    """Apply ``R`` (or the inversion) to ``tree``, whose raw arrays follow the prefix ``kinds``."""

    def per_kind(path: Any, kind: str | None, subtree: Any) -> Any:
        def per_leaf(subpath: Any, x: Any) -> Any:
            where = f"{label}{jax.tree_util.keystr(tuple(path) + tuple(subpath))}"
            return _act_leaf(x, kind, R, where, argument)

        return jax.tree_util.tree_map_with_path(per_leaf, subtree, is_leaf=_is_tensormap)

    try:
        return jax.tree_util.tree_map_with_path(
            per_kind, kinds, tree, is_leaf=lambda x: x is None or isinstance(x, str)
        )
    except ValueError as error:
        if str(error).startswith("equivariance_error"):
            raise
        raise ValueError(
            f"equivariance_error: {argument} must be a kind, or a tree of kinds that is a "
            f"prefix of the {label} (e.g. one kind per argument): {error}"
        ) from None


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
    input_kinds: Any = None,
    output_kinds: Any = None,
    key: jax.Array | None = None,
    rotations: Sequence[Any] | jax.Array | None = None,
    n_rotations: int = 2,
    inversion: bool = True,
) -> float:
    """Largest absolute deviation between ``fn(g . inputs)`` and ``g . fn(inputs)``.

    The group elements ``g`` act on every TensorMap through :func:`rotate` / :func:`invert`,
    and on raw floating arrays as declared by ``input_kinds`` and ``output_kinds`` (module
    docstring: ``"scalar"``, ``"pseudoscalar"``, ``"vector"``, ``"pseudovector"``). A floating
    array without a declared kind raises a ``ValueError``: nothing is guessed from shapes.
    Pass model parameters through a closure, not as inputs.

    Example::

        # vectors (n, 3) in, TensorMap out
        o3.equivariance_error(lambda r: o3.spherical_harmonics(r, 2), r, input_kinds="vector")
        # a TensorMap and vectors in, an (n,) energy and (n, 3) forces out
        o3.equivariance_error(model, (features, r), input_kinds=(None, "vector"),
                              output_kinds=("scalar", "vector"))

    Args:
        fn: the function to check, called as ``fn(*inputs)``.
        inputs: the positional arguments of ``fn`` as a tuple or list, or a single argument.
        input_kinds: the kind of the raw arrays of ``inputs``: one kind for all of them, or a
            tree of kinds that is a prefix of the inputs (a tuple with one entry per
            argument when ``inputs`` is a tuple); ``None`` entries (and the default) declare
            nothing, which is enough for TensorMaps and non-float leaves.
        output_kinds: the same for the output of ``fn``.
        key: PRNG key for ``n_rotations`` random rotations (default ``jax.random.key(0)``);
            ignored when ``rotations`` is given.
        rotations: explicit orthogonal matrices (3, 3) to check, proper or improper.
        n_rotations: number of random rotations when ``rotations`` is not given.
        inversion: also check the inversion and a random improper rotation (inversion times
            the first rotation).

    Returns:
        The maximum absolute deviation over all group elements, output arrays and entries.

    Raises:
        ValueError: if a floating array has no declared kind, a declared kind does not fit
            its leaf, or the outputs' metadata differ between the two sides.
    """
    _check_kinds(input_kinds, "input_kinds")
    _check_kinds(output_kinds, "output_kinds")
    if isinstance(inputs, (tuple, list)):
        args = tuple(inputs)
        arg_kinds = tuple(input_kinds) if isinstance(input_kinds, list) else input_kinds
    else:
        args = (inputs,)
        arg_kinds = (
            input_kinds if input_kinds is None or isinstance(input_kinds, str) else (input_kinds,)
        )
    # as JAX holds it (float32 for float64 data with x64 off), so that nothing warns
    dtype = jax.dtypes.canonicalize_dtype(_float_dtype(args))
    if rotations is None:
        key = jax.random.key(0) if key is None else key
        rotations = random_rotation(key, (n_rotations,), dtype)
    rotations = [jnp.asarray(R, dtype) for R in rotations]
    group: list[jax.Array | None] = list(rotations)
    if inversion:
        group.append(None)
        if rotations:
            group.append(-rotations[0])
    _act(args, arg_kinds, _CHECK, "input_kinds", "inputs")  # undeclared arrays: before any call
    output = fn(*args)
    _act(output, output_kinds, _CHECK, "output_kinds", "output")
    errors = []
    for g in group:
        moved = fn(*_act(args, arg_kinds, g, "input_kinds", "inputs"))
        errors.append(
            _max_deviation(moved, _act(output, output_kinds, g, "output_kinds", "output"))
        )
    return max(errors, default=0.0)
