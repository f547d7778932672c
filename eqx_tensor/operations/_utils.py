"""Private helpers shared by the operations: argument checks, metadata comparison, arrays.

The ``*_impl`` functions follow metatensor-operations' ``_utils``: they return an error
message (``""`` when everything matches) so that the boolean, raising and composite checks
are all built on the same code. Metadata comparisons never look at array values, so they
work under ``jax.jit``; dynamic sample labels (see :mod:`eqx_tensor.labels`) are compared by
names and sizes when their values are traced (see :func:`_labels_equal`).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from .._backend import warn_if_downcast
from ..block import TensorBlock
from ..labels import Labels, same_labels
from ..tensormap import TensorMap

__all__ = ["NotEqualError"]

_METADATA = ("samples", "components", "properties")


class NotEqualError(ValueError):
    """Two eqx_tensor objects differ (metatensor's ``NotEqualError`` counterpart).

    It subclasses :class:`ValueError` (metatensor's subclasses ``Exception``), so code that
    catches either ``NotEqualError`` or ``ValueError`` for bad input keeps working.
    """


# --------------------------------------------------------------------------- types
def _check_tensormap(value: Any, fname: str, argument: str = "tensor") -> None:
    """Raise ``TypeError`` unless ``value`` is a :class:`TensorMap`."""
    if not isinstance(value, TensorMap):
        raise TypeError(f"`{argument}` in '{fname}' must be a TensorMap, not {type(value)}")


def _check_block(value: Any, fname: str, argument: str = "block") -> None:
    """Raise ``TypeError`` unless ``value`` is a :class:`TensorBlock`."""
    if not isinstance(value, TensorBlock):
        raise TypeError(f"`{argument}` in '{fname}' must be a TensorBlock, not {type(value)}")


def _refuse_gradients_of_gradients(value: TensorMap | TensorBlock, fname: str) -> None:
    """``NotImplementedError`` if a gradient of ``value`` has gradients itself.

    Blocks may hold gradients of gradients (as in metatensor), but the operations that
    metatensor-operations refuses them in cannot propagate them either.
    """
    blocks = [value] if isinstance(value, TensorBlock) else value.blocks()
    for block in blocks:
        for parameter, gradient in block.gradients():
            if gradient.gradients_list():
                raise NotImplementedError(
                    f"gradients of gradients are not supported in '{fname}': the "
                    f"'{parameter}' gradient has gradients {gradient.gradients_list()}; "
                    "remove them first"
                )


def _metadata_to_check(check: str | Sequence[str]) -> list[str]:
    """Validate metatensor's ``check`` argument: ``"all"`` or a list of metadata names."""
    if isinstance(check, str):
        if check == "all":
            return list(_METADATA)
        raise ValueError("`check` must be a list of strings or 'all'")
    check = list(check)
    for metadata in check:
        if metadata not in _METADATA:
            raise ValueError(
                f"'{metadata}' does not refer to metadata to check, "
                "choose from 'samples', 'properties' and 'components'"
            )
    return check


# --------------------------------------------------------------------------- arrays
def _is_tracer(array: Any) -> bool:
    """Whether ``array`` is an abstract value inside a JAX transformation."""
    return isinstance(array, jax.core.Tracer)


def _concrete(array: Any, fname: str, what: str = "values") -> np.ndarray:
    """``array`` as NumPy, or a ``ValueError`` naming ``fname`` if it is traced."""
    if _is_tracer(array):
        raise ValueError(
            f"'{fname}' needs the concrete {what} of its inputs, but they are traced by a JAX "
            "transformation (jax.jit, jax.grad, jax.vmap...): call it outside the "
            "transformation"
        )
    return np.asarray(array)


def _jit_operation(function: Callable | None = None, **jit_kwargs: Any) -> Callable:
    """``jax.jit(function, **jit_kwargs)``, for the array part of an operation.

    Eager JAX compiles one kernel per primitive and array shape: an operation over the 45
    blocks of a file compiles hundreds of tiny kernels on its first call and dispatches
    them one by one afterwards (the same happens under an un-jitted ``jax.grad`` or
    ``jax.vmap``). A jitted operation compiles one program per metadata structure (the
    TensorMap treedef) instead, and later calls with that structure dispatch it once, with no
    compilation. Inside a user's ``jax.jit`` it is inlined into the caller's program.

    Checks that must see concrete dynamic labels belong before this boundary: inside,
    dynamic label values are tracers.
    """
    if function is None:
        return functools.partial(_jit_operation, **jit_kwargs)
    jitted = jax.jit(function, **jit_kwargs)

    @functools.wraps(function)
    def call(*args: Any, **kwargs: Any) -> Any:
        # NumPy float64 leaves become float32 silently at the jit boundary when x64 is off
        warn_if_downcast((args, kwargs))
        return jitted(*args, **kwargs)

    return call


def _to_jax(array: Any) -> jax.Array:
    """A jax array with the same values (no copy for jax arrays)."""
    return jnp.asarray(array)


def _block_like(block: TensorBlock, values: Any) -> TensorBlock:
    """A new (modifiable, gradient-free) block with ``values`` and the metadata of ``block``.

    No validation: ``values`` must already have the shape of ``block.values``.
    """
    return block.with_arrays(values, check=False)


def _unfrozen(block: TensorBlock) -> TensorBlock:
    """A modifiable shallow copy of ``block`` (blocks out of ``jax.jit`` are frozen)."""
    new = TensorBlock._unchecked(
        block.values,
        block.samples,
        tuple(block.components),
        block.properties,
        dict(block._gradients),
    )
    new._frozen = False
    return new


def _add_gradient_like(block: TensorBlock, parameter: str, like: TensorBlock, values: Any) -> None:
    """Attach to ``block`` a ``parameter`` gradient with ``values`` and the metadata of ``like``.

    No validation: ``like`` is a gradient of a block with the same samples, components and
    properties as ``block``, and ``values`` has the shape of ``like.values``.
    """
    block._gradients[parameter] = like.with_arrays(values, check=False)._as_gradient(parameter)
    block._meta = None


def _entry_str(entry: Any) -> str:
    """A key entry as metatensor's ``LabelsEntry.print()`` shows it: ``(a=1, b=2)``."""
    return "(" + ", ".join(f"{n}={int(v)}" for n, v in zip(entry.names, entry.values)) + ")"


# --------------------------------------------------------------------------- labels
def _labels_equal(a: Labels, b: Labels, fname: str, *, dynamic: str = "sizes") -> bool:
    """:func:`eqx_tensor.labels.same_labels`, naming ``fname`` in its error."""
    return same_labels(a, b, dynamic=dynamic, what=f"'{fname}'")


# --------------------------------------------------------------------------- keys
def _check_same_keys_impl(a: TensorMap, b: TensorMap, fname: str) -> str:
    """``""`` if ``a`` and ``b`` have the same keys in any order, else an error message."""
    keys_a, keys_b = a.keys, b.keys
    if keys_a.names != keys_b.names:
        return (
            f"inputs to '{fname}' should have the same keys names, "
            f"got '{keys_a.names}' and '{keys_b.names}'"
        )
    if len(keys_a) != len(keys_b):
        return (
            f"inputs to '{fname}' should have the same number of blocks, "
            f"got {len(keys_a)} and {len(keys_b)}"
        )
    missing = keys_a.positions(keys_b) < 0
    if np.any(missing):
        entry = keys_b.entry(int(np.nonzero(missing)[0][0]))
        return f"inputs to '{fname}' should have the same keys, {entry} is only in the second"
    return ""


def _check_same_keys(a: TensorMap, b: TensorMap, fname: str) -> bool:
    return _check_same_keys_impl(a, b, fname) == ""


def _check_same_keys_raise(a: TensorMap, b: TensorMap, fname: str) -> None:
    message = _check_same_keys_impl(a, b, fname)
    if message:
        raise NotEqualError(message)


# --------------------------------------------------------------------------- blocks
def _check_blocks_impl(
    a: TensorBlock,
    b: TensorBlock,
    fname: str,
    check: str | Sequence[str] = "all",
    *,
    dynamic: str = "sizes",
) -> str:
    """``""`` if the chosen metadata of two blocks are equal (same order), else a message."""
    for metadata in _metadata_to_check(check):
        if metadata == "samples":
            if not _labels_equal(a.samples, b.samples, fname, dynamic=dynamic):
                return (
                    f"inputs to '{fname}' should have the same samples, "
                    "but they are not the same or not in the same order"
                )
        elif metadata == "properties":
            if a.properties != b.properties:
                return (
                    f"inputs to '{fname}' should have the same properties, "
                    "but they are not the same or not in the same order"
                )
        else:
            if len(a.components) != len(b.components):
                return f"inputs to '{fname}' have a different number of components"
            for c1, c2 in zip(a.components, b.components):
                if c1 != c2:
                    return (
                        f"inputs to '{fname}' should have the same components, "
                        "but they are not the same or not in the same order"
                    )
    return ""


def _check_blocks(
    a: TensorBlock, b: TensorBlock, fname: str, check: str | Sequence[str] = "all"
) -> bool:
    return _check_blocks_impl(a, b, fname, check) == ""


def _check_blocks_raise(
    a: TensorBlock, b: TensorBlock, fname: str, check: str | Sequence[str] = "all"
) -> None:
    message = _check_blocks_impl(a, b, fname, check)
    if message:
        raise NotEqualError(message)


def _check_same_gradients_impl(
    a: TensorBlock,
    b: TensorBlock,
    fname: str,
    check: str | Sequence[str] = "all",
    *,
    dynamic: str = "sizes",
) -> str:
    """``""`` if both blocks have the same gradient parameters and gradient metadata."""
    metadata_to_check = _metadata_to_check(check)
    parameters_a, parameters_b = a.gradients_list(), b.gradients_list()
    if len(parameters_a) != len(parameters_b) or set(parameters_a) != set(parameters_b):
        return (
            f"inputs to '{fname}' should have the same gradient parameters, got "
            f"{parameters_a} and {parameters_b}"
        )
    prefix = f"inputs to '{fname}' should have the same gradients: "
    for parameter, gradient_a in a.gradients():
        gradient_b = b.gradient(parameter)
        for metadata in metadata_to_check:
            message = f"gradient '{parameter}' {metadata} are not the same or not in the same order"
            if metadata == "samples":
                if not _labels_equal(
                    gradient_a.samples, gradient_b.samples, fname, dynamic=dynamic
                ):
                    return prefix + message
            elif metadata == "properties":
                if gradient_a.properties != gradient_b.properties:
                    return prefix + message
            else:
                if len(gradient_a.components) != len(gradient_b.components):
                    return prefix + f"gradient '{parameter}' have different number of components"
                if any(c1 != c2 for c1, c2 in zip(gradient_a.components, gradient_b.components)):
                    return prefix + message
    return ""


def _check_same_gradients(
    a: TensorBlock, b: TensorBlock, fname: str, check: str | Sequence[str] = "all"
) -> bool:
    return _check_same_gradients_impl(a, b, fname, check) == ""


def _check_same_gradients_raise(
    a: TensorBlock, b: TensorBlock, fname: str, check: str | Sequence[str] = "all"
) -> None:
    message = _check_same_gradients_impl(a, b, fname, check)
    if message:
        raise NotEqualError(message)


def _check_gradient_presence_raise(
    block: TensorBlock, parameters: Sequence[str], fname: str
) -> None:
    """``ValueError`` if one of ``parameters`` is not a gradient of ``block``."""
    for parameter in parameters:
        if not block.has_gradient(parameter):
            raise ValueError(
                f"requested gradient '{parameter}' in '{fname}' is not defined in this tensor, "
                f"it has {block.gradients_list()}"
            )


def _aligned(
    A: TensorMap,
    B: TensorMap,
    fname: str,
    check: str | Sequence[str] = "all",
    check_gradients: bool = True,
) -> TensorMap:
    """``B`` with its blocks in the key order of ``A``, after checking that they match.

    Raises :class:`NotEqualError` unless both have the same keys (any order) and, for
    each key, the same ``check`` metadata (and gradients with the same parameters and
    ``check`` metadata). Returns ``B`` itself when the keys are already in ``A``'s order.
    """
    _check_same_keys_raise(A, B, fname)
    positions = B.keys.positions(A.keys)
    blocks = B.blocks_by_id(positions)
    for key, block_A, block_B in zip(A.keys, A, blocks):
        message = _check_blocks_impl(block_A, block_B, fname, check)
        if not message and check_gradients:
            message = _check_same_gradients_impl(block_A, block_B, fname, check)
        if message:
            # metatensor's message, and the key of the offending blocks
            raise NotEqualError(f"{message} (blocks for key {_entry_str(key)})")
    if np.array_equal(positions, np.arange(len(positions))):
        return B
    return TensorMap(A.keys, blocks)
