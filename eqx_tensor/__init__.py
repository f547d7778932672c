"""eqx_tensor: equivariant neural networks on block-sparse tensors, in JAX.

The data model follows metatensor (:class:`Labels`, :class:`TensorBlock`,
:class:`TensorMap`), registered as JAX pytrees with static metadata and array leaves.
"""

from .block import TensorBlock
from .labels import Labels, LabelsEntry
from .tensormap import TensorMap
from .operations import *  # noqa: F403
from .operations import __all__ as _operations_all

__version__ = "0.1.0"

__all__ = ["Labels", "LabelsEntry", "TensorBlock", "TensorMap", *_operations_all]
