"""O(3) toolkit: conventions, spherical harmonics, Wigner D, Clebsch-Gordan, rotations, e3nn-jax.

Conventions (details in :mod:`eqx_tensor.o3.conventions`): keys ``o3_lambda`` (``l``) and
``o3_sigma`` (+1 proper, -1 pseudotensor), components ``o3_mu = -l..l`` of the z-polar real
spherical harmonics (``l=1`` is ``(y, z, x)``), parity under inversion ``o3_sigma * (-1)**l``.
e3nn-jax uses a y-polar basis; :func:`change_of_basis`, :func:`to_irreps_array` and
:func:`from_irreps_array` convert.
"""

from ._metadata import block_orders, is_vector_component, o3_mu_labels
from ._tensor_product import MODES as TENSOR_PRODUCT_MODES
from ._tensor_product import UNREACHABLE as TENSOR_PRODUCT_UNREACHABLE
from ._tensor_product import Irreps as BlockIrreps
from ._tensor_product import (
    TensorProductPlan,
    coupled_keys,
    irreps_of,
    key_order,
    tensor_product,
    tensor_product_plan,
)
from .clebsch_gordan import clebsch_gordan, selection_rule
from .conventions import (
    O3_LAMBDA,
    O3_MU,
    O3_SIGMA,
    XYZ,
    change_of_basis,
    frame_permutation,
    irrep_to_key,
    key_to_irrep,
    parity_from_sigma,
    product_sigma,
    sigma_from_parity,
)
from .equivariance import equivariance_error
from .irreps_array import from_irreps_array, to_irreps_array
from .rotations import invert, rotate
from .spherical_harmonics import spherical_harmonics, spherical_harmonics_array
from .wigner import random_rotation, wigner_D, wigner_D_all

__all__ = [
    "O3_LAMBDA",
    "O3_MU",
    "O3_SIGMA",
    "TENSOR_PRODUCT_MODES",
    "TENSOR_PRODUCT_UNREACHABLE",
    "XYZ",
    "BlockIrreps",
    "TensorProductPlan",
    "block_orders",
    "change_of_basis",
    "clebsch_gordan",
    "coupled_keys",
    "equivariance_error",
    "frame_permutation",
    "from_irreps_array",
    "invert",
    "irrep_to_key",
    "irreps_of",
    "is_vector_component",
    "key_order",
    "key_to_irrep",
    "o3_mu_labels",
    "parity_from_sigma",
    "product_sigma",
    "random_rotation",
    "rotate",
    "selection_rule",
    "sigma_from_parity",
    "spherical_harmonics",
    "spherical_harmonics_array",
    "tensor_product",
    "tensor_product_plan",
    "to_irreps_array",
    "wigner_D",
    "wigner_D_all",
]
