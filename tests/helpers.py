"""Conversions between metatensor-core objects and ours, and equality assertions, for tests."""

from __future__ import annotations

import jax
import numpy as np
import pytest
from conftest import CLASSIC_EMITTERS

import eqx_tensor as eqt

X64: bool = bool(jax.config.jax_enable_x64)
"""Whether this test run has float64 (``jax_enable_x64``); see ``conftest.py``."""

TOL: float = 1e-12 if X64 else 1e-5
"""Agreement expected between two computations of the same numbers in this run's precision."""


FLOAT = np.float64 if X64 else np.float32
"""The floating dtype of this run's JAX arrays: data in it go through JAX unchanged."""

SLOW_WITH_X64: list = [pytest.mark.slow] if X64 else []
"""Marks for the float32 case of an expensive test parametrized over dtypes: the float32 run
checks it by default, the float64 run only in the slow step (its float64 case runs by default).
"""


def tol(x64: float = 1e-12, x32: float = 1e-5) -> float:
    """A tolerance for this run's precision: ``x64`` with float64 on, ``x32`` otherwise."""
    return x64 if X64 else x32


def labels_from_metatensor(labels) -> eqt.Labels:
    return eqt.Labels(list(labels.names), np.array(labels.values))


def block_from_metatensor(block) -> eqt.TensorBlock:
    def convert(b):
        return eqt.TensorBlock(
            np.array(b.values),
            labels_from_metatensor(b.samples),
            [labels_from_metatensor(c) for c in b.components],
            labels_from_metatensor(b.properties),
        )

    result = convert(block)
    for parameter, gradient in block.gradients():
        result.add_gradient(parameter, convert(gradient))
    return result


def from_metatensor(tensor) -> eqt.TensorMap:
    """Our TensorMap with the same metadata and (NumPy) values as a metatensor TensorMap."""
    return eqt.TensorMap(
        labels_from_metatensor(tensor.keys), [block_from_metatensor(b) for b in tensor.blocks()]
    )


def _to_numpy(array) -> np.ndarray:
    if hasattr(array, "detach"):  # torch tensors
        array = array.detach().cpu().numpy()
    return np.asarray(array)


def assert_labels_equal(ours: eqt.Labels, theirs, what: str = "labels") -> None:
    assert list(ours.names) == list(theirs.names), f"{what} names: {ours.names} != {theirs.names}"
    np.testing.assert_array_equal(
        np.asarray(ours.values), _to_numpy(theirs.values), err_msg=f"{what} values"
    )


def _is_low_precision(array: np.ndarray) -> bool:
    return np.issubdtype(array.dtype, np.inexact) and np.finfo(array.dtype).bits < 64


def _magnitude(array) -> float:
    array = np.abs(_to_numpy(array))
    return float(np.max(array[np.isfinite(array)], initial=0.0))


def assert_close(
    actual,
    desired,
    *,
    rtol: float = 1e-7,
    atol: float = 0.0,
    x32: float = 1e-5,
    x32_scale: float = 0.0,
    err_msg="",
) -> None:
    """``numpy.testing.assert_allclose`` (same defaults) at the precision of the numbers compared.

    ``rtol``/``atol`` are the float64 tolerances: they apply as given in the float64 run, and
    in the float32 run when both arrays are float64 (NumPy-only paths). When one of them is
    float32 in the float32 run (results of JAX with x64 off), ``x32`` applies instead, unless
    the given tolerances are larger, both relative to each element and relative to the
    magnitude of the numbers: the largest finite ``|desired|``, or ``x32_scale`` if larger.
    float32 keeps about 7 significant digits, and the rounding of sums and cancellations
    scales with the size of the operands, not with the size of each result: pass the
    magnitude of the inputs as ``x32_scale`` where results cancel (sums of values of both
    signs, say).
    """
    actual, desired = _to_numpy(actual), _to_numpy(desired)
    if not X64 and (_is_low_precision(actual) or _is_low_precision(desired)):
        scale = max(_magnitude(desired), x32_scale) or 1.0
        rtol, atol = max(rtol, x32), max(atol, x32 * scale)
    np.testing.assert_allclose(actual, desired, rtol=rtol, atol=atol, err_msg=err_msg)


def assert_block_equal(
    ours: eqt.TensorBlock,
    theirs,
    atol: float = 1e-12,
    what="block",
    *,
    x32: float = 1e-5,
    x32_scale=None,
) -> None:
    """Metadata exactly equal, values close (see :func:`assert_close`); gradients included.

    ``x32_scale`` is an optional block (ours or metatensor's, with the same gradients) whose
    magnitudes set the float32 tolerances of the values and of each gradient: the input of a
    reduction, say, whose sums may cancel."""
    assert_labels_equal(ours.samples, theirs.samples, f"{what} samples")
    assert len(ours.components) == len(theirs.components), f"{what} number of components"
    for i, (a, b) in enumerate(zip(ours.components, theirs.components)):
        assert_labels_equal(a, b, f"{what} components[{i}]")
    assert_labels_equal(ours.properties, theirs.properties, f"{what} properties")
    assert_close(
        ours.values,
        theirs.values,
        rtol=0,
        atol=atol,
        x32=x32,
        x32_scale=0.0 if x32_scale is None else _magnitude(x32_scale.values),
        err_msg=f"{what} values",
    )
    # metatensor keeps gradients in a hash map, so their order carries no meaning
    assert sorted(ours.gradients_list()) == sorted(theirs.gradients_list()), f"{what} gradients"
    for parameter in theirs.gradients_list():
        assert_block_equal(
            ours.gradient(parameter),
            theirs.gradient(parameter),
            atol,
            f"{what} gradient {parameter}",
            x32=x32,
            x32_scale=None if x32_scale is None else x32_scale.gradient(parameter),
        )


def assert_tensor_equal(
    ours: eqt.TensorMap, theirs, atol: float = 1e-12, *, x32: float = 1e-5, x32_scale=None
) -> None:
    """Keys, blocks, metadata and gradients equal to a metatensor TensorMap's.

    ``atol`` is the float64 tolerance, ``x32`` the relative one of float32 results and
    ``x32_scale`` an optional TensorMap whose blocks set their magnitude (see
    :func:`assert_block_equal`)."""
    assert_labels_equal(ours.keys, theirs.keys, "keys")
    for i, (a, b) in enumerate(zip(ours.blocks(), theirs.blocks())):
        scale = None if x32_scale is None else x32_scale.blocks()[i]
        assert_block_equal(
            a, b, atol, f"block {i} ({ours.keys.entry(i)})", x32=x32, x32_scale=scale
        )


def user_jit(function, **kwargs):
    """``jax.jit`` compiled with XLA's default CPU kernel emitters, as a user's program is.

    ``conftest.py`` starts the tests' backend with the classic emitters, which compile faster;
    tests of bit-identical results (NumPy's rounding) compile with the emitters users get.
    """
    if CLASSIC_EMITTERS:
        kwargs["compiler_options"] = {"xla_cpu_use_fusion_emitters": True}
    return jax.jit(function, **kwargs)
