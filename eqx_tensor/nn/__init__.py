"""Neural-network layers over TensorMaps, as flax.linen modules, and losses.

Every layer takes and returns a :class:`~eqx_tensor.TensorMap`; its parameters are a plain
pytree (``model.init``) that optax updates, and ``model.apply(params, tensor)`` is a pure,
jit-able function. Each module is a thin shell around a pure function of the same module
(:func:`linear`, :func:`activation`, :func:`layer_norm`).

Layers with per-key parameters record the key of every parameter row at init, in the structure
of the parameter tree (an entry ``keys`` without arrays, see :mod:`eqx_tensor.nn.linear`; the
clones of :class:`ModuleMap` are named by key, :func:`key_to_name`): every block finds its own
parameters whatever the order of the input's keys, and a block whose key the parameters do not
know is refused.

Every module's ``init`` and ``apply`` run as compiled programs (:class:`Compiled`, a mixin
that user modules may take too): one compilation per call structure instead of one per
operation and block shape.
"""

from ._compiled import Compiled
from ._utils import key_to_name
from .activations import (
    Activation,
    InvariantActivation,
    InvariantReLU,
    InvariantSiLU,
    InvariantTanh,
    ReLU,
    SiLU,
    Tanh,
    activation,
)
from .convolution import (
    Convolution,
    GatePointsNetwork,
    gate_points_from_e3nn,
    smooth_cutoff,
)
from .gate import Gate, gate, soft_odd
from .layer_norm import InvariantLayerNorm, LayerNorm, layer_norm
from .linear import EquivariantLinear, Linear, linear
from .loss import mean_squared_error, sum_squared_error
from .norm_activation import NormActivation, norm_activation
from .radial import (
    RadialMLP,
    bessel,
    cosine_cutoff,
    poly_envelope,
    polynomial_envelope,
    radial_basis,
    safe_norm,
    soft_envelope,
    soft_one_hot_linspace,
    sus,
)
from .sequential import ModuleMap, Sequential
from .tensor_product import TensorProduct, tensor_product, tensor_product_plan

__all__ = [
    "Activation",
    "Compiled",
    "Convolution",
    "EquivariantLinear",
    "Gate",
    "GatePointsNetwork",
    "InvariantActivation",
    "InvariantLayerNorm",
    "InvariantReLU",
    "InvariantSiLU",
    "InvariantTanh",
    "LayerNorm",
    "Linear",
    "ModuleMap",
    "NormActivation",
    "RadialMLP",
    "ReLU",
    "Sequential",
    "SiLU",
    "Tanh",
    "TensorProduct",
    "activation",
    "bessel",
    "cosine_cutoff",
    "gate",
    "gate_points_from_e3nn",
    "key_to_name",
    "layer_norm",
    "linear",
    "mean_squared_error",
    "norm_activation",
    "poly_envelope",
    "polynomial_envelope",
    "radial_basis",
    "safe_norm",
    "smooth_cutoff",
    "soft_envelope",
    "soft_odd",
    "soft_one_hot_linspace",
    "sum_squared_error",
    "sus",
    "tensor_product",
    "tensor_product_plan",
]
