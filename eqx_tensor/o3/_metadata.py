"""Reading the O(3) metadata of a TensorMap: (o3_lambda, o3_sigma) per block, checked components."""

from __future__ import annotations

import numpy as np

from ..block import TensorBlock
from ..labels import Labels
from ..tensormap import TensorMap
from .conventions import O3_LAMBDA, O3_MU, O3_SIGMA, XYZ


def is_vector_component(name: str) -> bool:
    """Whether a component transforms as a Cartesian vector: ``xyz``, ``xyz_1``, ``xyz_2``, ..."""
    return name == XYZ or name.startswith(XYZ + "_")


def o3_mu_labels(l: int) -> Labels:
    """The ``o3_mu`` component labels ``-l..l``, shape (2l+1, 1)."""
    return Labels([O3_MU], np.arange(-l, l + 1, dtype=np.int32).reshape(-1, 1))


def block_orders(tensor: TensorMap, operation: str) -> list[tuple[int, int]]:
    """``(o3_lambda, o3_sigma)`` of every block, with the components checked against them.

    A TensorMap without ``o3_lambda``/``o3_sigma`` keys and without ``o3_mu`` components is
    taken as invariant (proper scalars, ``(0, 1)``), so that energies or power spectra can be
    compared under rotations. Anything in between is an error naming ``operation``.
    """
    names = tensor.keys.names
    has_lambda, has_sigma = O3_LAMBDA in names, O3_SIGMA in names
    if has_lambda != has_sigma:
        missing = O3_SIGMA if has_lambda else O3_LAMBDA
        raise ValueError(
            f"{operation} needs both '{O3_LAMBDA}' and '{O3_SIGMA}' keys, '{missing}' is missing "
            f"(keys are {names})"
        )
    if not has_lambda:
        if O3_MU in tensor.component_names:
            raise ValueError(
                f"{operation}: the blocks have an '{O3_MU}' component but the keys {names} have "
                f"no '{O3_LAMBDA}' and '{O3_SIGMA}'"
            )
        return [(0, 1)] * len(tensor)
    orders = []
    for key, block in tensor.items():
        l, sigma = int(key[O3_LAMBDA]), int(key[O3_SIGMA])
        if l < 0 or sigma not in (1, -1):
            raise ValueError(
                f"{operation}: invalid O(3) key {key} (need o3_lambda >= 0, o3_sigma = +1 or -1)"
            )
        _check_components(block, l, f"{operation}: block {key}")
        orders.append((l, sigma))
    return orders


def _check_components(block: TensorBlock, l: int, where: str) -> None:
    """The ``o3_mu`` component must be exactly ``-l..l`` (optional for l=0); others are free."""
    if l > 0 and O3_MU not in [c.names[0] for c in block.components]:
        raise ValueError(f"{where} has o3_lambda={l} but no '{O3_MU}' component")
    for component in block.components:
        if component.names[0] == O3_MU and component != o3_mu_labels(l):
            values = np.asarray(component.values[:, 0]).tolist()
            raise ValueError(
                f"{where} has o3_lambda={l}, so its '{O3_MU}' component must be "
                f"{list(range(-l, l + 1))}, got {values}"
            )
