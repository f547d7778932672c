"""Radial bases, smooth cutoff envelopes and a radial MLP giving per-edge tensor-product weights.

Pure functions of distances ``x`` of any shape ``(...)``; bases return ``(..., number)``. They
follow e3nn-jax (``soft_one_hot_linspace``, ``bessel``, ``poly_envelope``, ``soft_envelope``,
``sus``) to the same numbers, plus the DimeNet polynomial envelope and the cosine (Behler) cutoff.
Every function has finite derivatives everywhere, including at ``x = 0`` and at the cutoff:
branches that would divide by zero or take ``exp(-1/0)`` are guarded with the double-``where``
pattern, so that the discarded branch never sees the singular value (a single ``where`` still
propagates a NaN cotangent from the unused branch).

:func:`safe_norm` gives edge lengths whose gradient is finite (zero) at the zero vector, where
``jnp.linalg.norm`` gives NaN. :class:`RadialMLP` maps edge lengths to the weights of a
:class:`~eqx_tensor.nn.TensorProduct` (``weights=``), e3nn style: basis -> MLP -> envelope.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from .._backend import safe_sqrt
from ._compiled import Compiled

__all__ = [
    "BASES",
    "ENVELOPES",
    "RadialMLP",
    "bessel",
    "cosine_cutoff",
    "poly_envelope",
    "polynomial_envelope",
    "radial_basis",
    "safe_norm",
    "soft_envelope",
    "soft_one_hot_linspace",
    "sus",
]

Array = Any

#: Names accepted by :func:`radial_basis` and ``RadialMLP.basis``.
BASES = ("bessel", "gaussian", "cosine", "smooth_finite", "fourier")
#: Names accepted by ``RadialMLP.envelope`` (or ``None`` for no envelope).
ENVELOPES = ("polynomial", "soft", "cosine")


def _float(x: Array) -> jax.Array:
    x = jnp.asarray(x)
    return x if jnp.issubdtype(x.dtype, jnp.floating) else x.astype(jnp.result_type(float))


@functools.partial(jax.jit, static_argnames=("axis", "keepdims"))
def safe_norm(vectors: Array, axis: int = -1, keepdims: bool = False) -> jax.Array:
    """Euclidean norm along ``axis`` with a finite (zero) gradient at the zero vector.

    Args:
        vectors: shape ``(..., 3)`` (or any size along ``axis``).

    Returns:
        Norms of shape ``(...)`` (``keepdims`` keeps the axis), same dtype.
    """
    vectors = _float(vectors)
    squared = jnp.sum(vectors**2, axis=axis, keepdims=keepdims)
    return safe_sqrt(squared)


@jax.jit
def sus(x: Array) -> jax.Array:
    """Smooth unit step: ``0`` for ``x <= 0``, ``exp(-1/x)`` for ``x > 0`` (``C^inf``).

    Same values as ``e3nn_jax.sus``; shape of ``x``. Below ``-1 / log(tiny)`` (``tiny`` the
    smallest normal number of the dtype) the result is taken as 0: there ``exp(-1/x)`` has
    underflowed while ``1/x**2`` in its derivative overflows, which gives e3nn-jax a NaN
    gradient for tiny positive ``x``.
    """
    x = _float(x)
    cut = -1.0 / np.log(np.finfo(x.dtype).tiny)
    positive = x > cut
    return jnp.where(positive, jnp.exp(-1.0 / jnp.where(positive, x, 1.0)), 0.0)


@functools.partial(
    jax.jit, static_argnames=("start", "end", "number", "basis", "cutoff", "start_zero", "end_zero")
)
def soft_one_hot_linspace(
    x: Array,
    *,
    start: float,
    end: float,
    number: int,
    basis: str = "gaussian",
    cutoff: bool | None = True,
    start_zero: bool | None = None,
    end_zero: bool | None = None,
) -> jax.Array:
    """Smooth "one-hot" projection of ``x`` on ``number`` functions centred on a linspace.

    Counterpart of ``e3nn_jax.soft_one_hot_linspace`` (same numbers). With ``step`` the spacing of
    the centres ``c_i`` and ``d = (x - c_i) / step``:

    * ``"gaussian"``: ``exp(-d^2) / 1.12``;
    * ``"cosine"``: ``cos(pi d / 2)`` for ``|d| < 1``, else 0;
    * ``"smooth_finite"``: ``1.14136 e^2 sus(d + 1) sus(1 - d)`` (compact support, ``C^inf``);
    * ``"fourier"``: ``sin(pi i t)`` (cutoff) or ``cos(pi i t)`` with
      ``t = (x - start) / (end - start)``.

    The constants make ``sum_i y_i(x)^2 ~ 1`` on the interval.

    Args:
        x: shape ``(...)``.
        start, end: the interval covered by the centres.
        number: number of functions.
        basis: one of ``"gaussian"``, ``"cosine"``, ``"smooth_finite"``, ``"fourier"``.
        cutoff: shorthand for ``start_zero = end_zero = cutoff``: the centres are placed so that
            every function vanishes (or nearly, for gaussians) at ``start`` and ``end``. Pass
            ``None`` to give ``start_zero``/``end_zero`` separately.
        start_zero, end_zero: whether the functions vanish at ``start`` / at ``end``.

    Returns:
        shape ``(..., number)``.
    """
    if basis not in ("gaussian", "cosine", "smooth_finite", "fourier"):
        raise ValueError(
            f"basis must be 'gaussian', 'cosine', 'smooth_finite' or 'fourier', got {basis!r}"
        )
    if number < 1 or int(number) != number:
        raise ValueError(f"number must be a positive integer, got {number!r}")
    if cutoff is not None:
        if start_zero is not None or end_zero is not None:
            raise ValueError("give either cutoff or start_zero/end_zero, not both")
        start_zero = end_zero = bool(cutoff)
    if start_zero not in (True, False) or end_zero not in (True, False):
        raise ValueError("start_zero and end_zero must be given (True or False) when cutoff=None")
    x = _float(x)
    # the same linspace as e3nn-jax, so that the centres are the same floating point numbers
    n_points = number + int(start_zero) + int(end_zero)
    if n_points < 2:
        raise ValueError(f"number={number} gives a single centre: the spacing is undefined")
    values = jnp.linspace(start, end, n_points, dtype=x.dtype)
    step = values[1] - values[0]
    values = values[int(start_zero) : n_points - int(end_zero)]
    diff = (x[..., None] - values) / step

    if basis == "gaussian":
        return jnp.exp(-(diff**2)) / 1.12
    if basis == "cosine":
        inside = (-1.0 < diff) & (diff < 1.0)
        return jnp.where(inside, jnp.cos(jnp.pi / 2 * diff), 0.0)
    if basis == "smooth_finite":
        return 1.14136 * math.exp(2.0) * sus(diff + 1.0) * sus(1.0 - diff)
    t = (x[..., None] - start) / (end - start)
    if start_zero and end_zero:
        i = jnp.arange(1, number + 1, dtype=x.dtype)
        inside = (0.0 < t) & (t < 1.0)
        return jnp.where(inside, jnp.sin(jnp.pi * i * t) / math.sqrt(0.25 + number / 2), 0.0)
    if not start_zero and not end_zero:
        i = jnp.arange(0, number, dtype=x.dtype)
        return jnp.cos(jnp.pi * i * t) / math.sqrt(0.25 + number / 2)
    raise ValueError("the fourier basis needs start_zero == end_zero")


@functools.partial(jax.jit, static_argnames=("number", "x_max"))
def bessel(x: Array, number: int, x_max: float = 1.0) -> jax.Array:
    """Spherical Bessel (DimeNet) basis ``sqrt(2/x_max) sin(n pi x / x_max) / x``, ``n = 1..N``.

    Counterpart of ``e3nn_jax.bessel``; orthonormal with weight ``x^2`` on ``[0, x_max]``. At
    ``x = 0`` the value is the limit ``sqrt(2/x_max) n pi / x_max``; near 0 a Taylor series keeps
    the value and the gradient exact (e3nn-jax's gradient overflows for ``x ~ 1e-300``).

    Args:
        x: shape ``(...)``.
        number: number of functions ``N``.
        x_max: the cutoff.

    Returns:
        shape ``(..., N)``.
    """
    if number < 1 or int(number) != number:
        raise ValueError(f"number must be a positive integer, got {number!r}")
    x = _float(x)[..., None]
    a = jnp.arange(1, int(number) + 1, dtype=x.dtype) * (jnp.pi / x_max)
    # sin(a x) / x loses its derivative to cancellation (and overflows) for tiny a x: use the
    # Taylor series a (1 - t/6 + t^2/120 - t^3/5040), t = (a x)^2, there (next term < 1e-16)
    small = jnp.abs(a * x) < 0.05
    x_safe = jnp.where(small, 1.0, x)
    t = jnp.where(small, a * x, 0.0) ** 2
    series = a * (1.0 - t / 6.0 * (1.0 - t / 20.0 * (1.0 - t / 42.0)))
    return math.sqrt(2.0 / x_max) * jnp.where(small, series, jnp.sin(a * x_safe) / x_safe)


@functools.lru_cache(maxsize=64)
def _poly_envelope_coefficients(n0: int, n1: int) -> np.ndarray:
    """Coefficients (highest degree first) of the polynomial on ``t = x/x_max - 1/2``.

    Constraints: value 1 and ``n0`` zero derivatives at ``t=-1/2`` (x=0), value 0 and ``n1`` zero
    derivatives at ``t=1/2`` (x = x_max); solved in float64, as e3nn-jax does.
    """
    constraints = sorted(
        {(-0.5, 0, 1.0), (0.5, 0, 0.0)}
        | {(-0.5, d, 0.0) for d in range(1, n0 + 1)}
        | {(0.5, d, 0.0) for d in range(1, n1 + 1)}
    )
    degree = len(constraints)
    rows = [
        [
            0 if d > k else math.factorial(k) // math.factorial(k - d) * t ** (k - d)
            for k in range(degree)
        ]
        for t, d, _ in constraints
    ]
    coefficients = np.linalg.solve(np.array(rows), np.array([y for _, _, y in constraints]))
    coefficients = coefficients[::-1].copy()
    coefficients.setflags(write=False)
    return coefficients


def poly_envelope(n0: int, n1: int, x_max: float = 1.0) -> Callable[[Array], jax.Array]:
    """Polynomial envelope, 1 at 0 and 0 from ``x_max`` on, with ``n0`` / ``n1`` flat derivatives.

    Counterpart of ``e3nn_jax.poly_envelope``: the unique polynomial of degree ``n0 + n1 + 1``
    with ``f(0) = 1``, ``f^(k)(0) = 0`` for ``k = 1..n0`` and ``f^(k)(x_max) = 0`` for
    ``k = 0..n1``; ``0`` beyond ``x_max``.

    Returns:
        ``f(x)``, elementwise, shape of ``x``.
    """
    if n0 < 0 or n1 < 0:
        raise ValueError(f"n0 and n1 must be non-negative, got {n0}, {n1}")
    return _poly_envelope(int(n0), int(n1), float(x_max))


@functools.lru_cache(maxsize=64)
def _poly_envelope(n0: int, n1: int, x_max: float) -> Callable[[Array], jax.Array]:
    coefficients = _poly_envelope_coefficients(n0, n1)

    @jax.jit
    def envelope(x: Array) -> jax.Array:
        x = _float(x)
        inside = x < x_max
        t = jnp.where(inside, x, x_max) / x_max - 0.5
        return jnp.where(inside, jnp.polyval(jnp.asarray(coefficients, x.dtype), t), 0.0)

    return envelope


@functools.partial(jax.jit, static_argnames=("x_max", "p"))
def polynomial_envelope(x: Array, x_max: float = 1.0, p: int = 6) -> jax.Array:
    """DimeNet's envelope ``u_p(x/x_max)``; equal to ``poly_envelope(p - 1, 2, x_max)``.

    ``u_p(t) = 1 - (p+1)(p+2)/2 t^p + p(p+2) t^(p+1) - p(p+1)/2 t^(p+2)`` for ``t < 1``, else 0:
    value and first two derivatives vanish at the cutoff. Shape of ``x``.
    """
    if p < 1:
        raise ValueError(f"p must be a positive integer, got {p!r}")
    x = _float(x)
    inside = x < x_max
    t = jnp.where(inside, x, x_max) / x_max
    u = (
        1.0
        - (p + 1) * (p + 2) / 2 * t**p
        + p * (p + 2) * t ** (p + 1)
        - p * (p + 1) / 2 * t ** (p + 2)
    )
    return jnp.where(inside, u, 0.0)


@functools.partial(jax.jit, static_argnames=("x_max", "arg_multiplicator", "value_at_origin"))
def soft_envelope(
    x: Array,
    x_max: float = 1.0,
    arg_multiplicator: float = 2.0,
    value_at_origin: float = 1.2,
) -> jax.Array:
    """``C^inf`` envelope ``c sus(a (1 - x/x_max))``, 0 from ``x_max`` on.

    Counterpart of ``e3nn_jax.soft_envelope``; ``c`` makes the value at ``x = 0``
    ``value_at_origin``. Shape of ``x``.
    """
    x = _float(x)
    constant = value_at_origin / math.exp(-1.0 / arg_multiplicator)
    return constant * sus(arg_multiplicator * (1.0 - x / x_max))


@functools.partial(jax.jit, static_argnames=("x_max",))
def cosine_cutoff(x: Array, x_max: float = 1.0) -> jax.Array:
    """Behler's cutoff ``(1 + cos(pi x / x_max)) / 2`` for ``x < x_max``, else 0 (``C^1``)."""
    x = _float(x)
    inside = x < x_max
    t = jnp.where(inside, x, x_max) / x_max
    return jnp.where(inside, 0.5 * (1.0 + jnp.cos(jnp.pi * t)), 0.0)


@functools.partial(jax.jit, static_argnames=("basis", "number", "x_max"))
def radial_basis(x: Array, basis: str, number: int, x_max: float) -> jax.Array:
    """``number`` basis functions of ``x`` on ``[0, x_max]`` by name (see :data:`BASES`).

    ``"bessel"`` is :func:`bessel`; the others are :func:`soft_one_hot_linspace` from 0 to
    ``x_max`` with ``cutoff=True``, times ``sqrt(number)`` as in e3nn's ``gate_points_2101``
    so that the features have about unit norm per component. Shape ``(..., number)``.
    """
    if basis == "bessel":
        return bessel(x, number, x_max)
    if basis not in BASES:
        raise ValueError(f"basis must be one of {BASES}, got {basis!r}")
    y = soft_one_hot_linspace(x, start=0.0, end=x_max, number=number, basis=basis, cutoff=True)
    return y * math.sqrt(number)


def _envelope(x: Array, envelope: str | Callable | None, x_max: float) -> jax.Array | None:
    if envelope is None:
        return None
    if callable(envelope):
        return envelope(x)
    if envelope == "polynomial":
        return polynomial_envelope(x, x_max)
    if envelope == "soft":
        return soft_envelope(x, x_max)
    if envelope == "cosine":
        return cosine_cutoff(x, x_max)
    raise ValueError(f"envelope must be one of {ENVELOPES}, a callable or None, got {envelope!r}")


def _normalspace(n: int) -> jax.Array:
    """``n`` standard normal quantiles, ``Phi(x_i) = i / (n + 1)`` (e3nn's ``normalspace``)."""
    return math.sqrt(2.0) * jax.scipy.special.erfinv(jnp.linspace(-1.0, 1.0, n + 2)[1:-1])


@functools.lru_cache(maxsize=64)
def _normalized(act: Callable[[Array], Array], x64: bool) -> Callable[[Array], Array]:
    # e3nn's second-moment normalisation (e3nn.normalize_function, same points, same constant),
    # computed once per function and precision, in one compiled program
    del x64
    with jax.ensure_compile_time_eval():
        c = float(jax.jit(lambda: jnp.mean(act(_normalspace(1_000_001)) ** 2) ** 0.5)())
    if np.allclose(c, 1.0):
        return act

    def normalized(x: Array) -> Array:
        return act(x) / c

    return normalized


def normalized_activation(act: Callable[[Array], Array]) -> Callable[[Array], Array]:
    """``act / c`` with ``E[(act(z)/c)^2] = 1`` for ``z ~ N(0, 1)`` (``e3nn.normalize_function``).

    Cached per function object: the constant is computed once, not at every trace.
    """
    return _normalized(act, bool(jax.config.jax_enable_x64))


class RadialMLP(Compiled, nn.Module):
    """Edge lengths -> per-edge weights: radial basis, MLP, smooth cutoff envelope.

    ``lengths (...,)`` -> ``basis (..., n_basis)`` -> ``hidden`` layers -> ``(..., out_features)``,
    multiplied by ``envelope(lengths)`` so that the weights (and everything they scale) go to
    zero smoothly at ``r_max``. Layers follow e3nn's ``FullyConnectedNet``: no biases, weights
    drawn from ``N(0, 1)`` and divided by ``sqrt(fan_in)`` in the forward pass, activations
    normalised to unit second moment (``normalize_act``), no activation after the last layer.
    Feed the result to ``TensorProduct(...)(x1, x2, weights=...)`` with
    ``out_features = TensorProduct.n_weights(x1, x2)``.

    Attributes:
        out_features: size of the last axis of the output.
        hidden: sizes of the hidden layers (``()`` for a linear map of the basis).
        n_basis: number of radial basis functions.
        r_max: the cutoff radius.
        basis: one of :data:`BASES`, or a callable ``lengths (...) -> (..., n_basis)``.
        envelope: one of :data:`ENVELOPES`, a callable ``lengths -> (...)``, or ``None``.
        activation: hidden-layer nonlinearity.
        normalize_act: normalise ``activation`` as e3nn does.
        param_dtype: parameter dtype; default the dtype of ``lengths`` (float).
    """

    out_features: int
    hidden: Sequence[int] = (64,)
    n_basis: int = 8
    r_max: float = 5.0
    basis: str | Callable[[Array], Array] = "bessel"
    envelope: str | Callable[[Array], Array] | None = "polynomial"
    activation: Callable[[Array], Array] = jax.nn.silu
    normalize_act: bool = True
    param_dtype: Any = None

    @nn.compact
    def __call__(self, lengths: Array) -> jax.Array:
        lengths = _float(lengths)
        dtype = jnp.dtype(self.param_dtype) if self.param_dtype is not None else lengths.dtype
        if callable(self.basis):
            h = self.basis(lengths)
        else:
            h = radial_basis(lengths, self.basis, self.n_basis, self.r_max)
        act = normalized_activation(self.activation) if self.normalize_act else self.activation
        sizes = [*self.hidden, self.out_features]
        for i, size in enumerate(sizes):
            fan_in = h.shape[-1]
            w = self.param(f"weight_{i}", nn.initializers.normal(1.0), (fan_in, size), dtype)
            h = (h @ w) / math.sqrt(fan_in)
            if i < len(sizes) - 1:
                h = act(h)
        factor = _envelope(lengths, self.envelope, self.r_max)
        return h if factor is None else h * factor[..., None]
