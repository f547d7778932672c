"""eqx_tensor: equivariant neural networks on block-sparse tensors, in JAX.

The data model follows metatensor (:class:`Labels`, :class:`TensorBlock`,
:class:`TensorMap`), registered as JAX pytrees with static metadata and array leaves.
"""

from . import _moving  # noqa: F401  (adds TensorMap.keys_to_samples & co.)
from ._compile import compiler_options
from .block import TensorBlock
from .io import (
    load,
    load_block,
    load_block_buffer,
    load_buffer,
    load_labels,
    load_labels_buffer,
    save,
    save_block,
    save_block_buffer,
    save_buffer,
    save_labels,
    save_labels_buffer,
)
from .labels import Labels, LabelsEntry
from .operations import *  # noqa: F403
from .operations import __all__ as _operations_all
from .tensormap import TensorMap

__version__ = "0.1.0"


def __getattr__(name: str):
    # o3 pulls in e3nn-jax, nn flax and optax: load them on first use, so that data-only code
    # does not import them
    if name in ("o3", "nn", "atomistic"):
        import importlib

        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "o3",  # noqa: F405  (loaded on first use by __getattr__)
    "Labels",
    "LabelsEntry",
    "TensorBlock",
    "TensorMap",
    "compiler_options",
    "load",
    "load_block",
    "load_block_buffer",
    "load_buffer",
    "load_labels",
    "load_labels_buffer",
    "save",
    "save_block",
    "save_block_buffer",
    "save_buffer",
    "save_labels",
    "save_labels_buffer",
    *_operations_all,
]
