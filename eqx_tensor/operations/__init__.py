"""Counterparts of metatensor-operations, as pure, jit-able functions over TensorMaps.

Every function here is also exported at the top level (``eqx_tensor.sum_over_samples``).
Importing this package also gives :class:`TensorMap` and :class:`TensorBlock` metatensor's
operators (see :func:`_install_operators`).

**Arrays.** Every function here that returns a TensorMap or a block returns JAX arrays, on
JAX's default device, whatever the input holds: NumPy data (what :func:`eqx_tensor.load`
returns) is converted once, where the output is built (metadata-only work such as moving keys
to samples runs in NumPy first, so nothing is compiled for it). ``TensorMap.keys_to_samples``,
``keys_to_properties`` and ``components_to_properties`` follow the same rule. The data model's
own methods keep the array type: ``copy()`` copies, ``to(arrays="numpy")`` /
``to(arrays="jax")`` convert, and :func:`eqx_tensor.load` gives NumPy arrays.
"""

from typing import Any

from ..block import TensorBlock
from ..tensormap import TensorMap
from ._checks import checks_enabled, unsafe_disable_checks, unsafe_enable_checks
from .checks import (
    NotEqualError,
    allclose,
    allclose_block,
    allclose_block_raise,
    allclose_raise,
    equal,
    equal_block,
    equal_block_raise,
    equal_metadata,
    equal_metadata_block,
    equal_metadata_block_raise,
    equal_metadata_raise,
    equal_raise,
    is_contiguous,
    is_contiguous_block,
    make_contiguous,
    make_contiguous_block,
)
from .creation import (
    block_from_array,
    empty_like,
    empty_like_block,
    one_hot,
    ones_like,
    ones_like_block,
    random_uniform_like,
    random_uniform_like_block,
    zeros_like,
    zeros_like_block,
)
from .dimensions import (
    append_dimension,
    insert_dimension,
    permute_dimensions,
    remove_dimension,
    rename_dimension,
)
from .filter import drop_blocks, drop_empty_blocks, filter_blocks
from .gradients import (
    detach,
    detach_block,
    remove_gradients,
    remove_gradients_block,
    requires_grad,
    requires_grad_block,
)
from .joining import join, join_blocks
from .math import abs, add, divide, dot, lstsq, multiply, pow, solve, subtract
from .reduce_over_properties import (
    mean_over_properties,
    mean_over_properties_block,
    std_over_properties,
    std_over_properties_block,
    sum_over_properties,
    sum_over_properties_block,
    var_over_properties,
    var_over_properties_block,
)
from .reduce_over_samples import (
    mean_over_samples,
    mean_over_samples_block,
    std_over_samples,
    std_over_samples_block,
    sum_over_samples,
    sum_over_samples_block,
    var_over_samples,
    var_over_samples_block,
)
from .slicing import slice, slice_block, split, split_block
from .sorting import sort, sort_block
from .unique import unique_metadata, unique_metadata_block

__all__: list[str] = []
__all__ += [
    "NotEqualError",
    "abs",
    "add",
    "allclose",
    "allclose_block",
    "allclose_block_raise",
    "allclose_raise",
    "block_from_array",
    "checks_enabled",
    "divide",
    "dot",
    "empty_like",
    "empty_like_block",
    "equal",
    "equal_block",
    "equal_block_raise",
    "equal_metadata",
    "equal_metadata_block",
    "equal_metadata_block_raise",
    "equal_metadata_raise",
    "equal_raise",
    "is_contiguous",
    "is_contiguous_block",
    "lstsq",
    "make_contiguous",
    "make_contiguous_block",
    "multiply",
    "one_hot",
    "ones_like",
    "ones_like_block",
    "pow",
    "random_uniform_like",
    "random_uniform_like_block",
    "solve",
    "subtract",
    "unsafe_disable_checks",
    "unsafe_enable_checks",
    "zeros_like",
    "zeros_like_block",
]
# manipulation and reductions
__all__ += [
    "append_dimension",
    "detach",
    "detach_block",
    "drop_blocks",
    "drop_empty_blocks",
    "filter_blocks",
    "insert_dimension",
    "join",
    "join_blocks",
    "mean_over_properties",
    "mean_over_properties_block",
    "mean_over_samples",
    "mean_over_samples_block",
    "permute_dimensions",
    "remove_dimension",
    "remove_gradients",
    "remove_gradients_block",
    "rename_dimension",
    "requires_grad",
    "requires_grad_block",
    "slice",
    "slice_block",
    "sort",
    "sort_block",
    "split",
    "split_block",
    "std_over_properties",
    "std_over_properties_block",
    "std_over_samples",
    "std_over_samples_block",
    "sum_over_properties",
    "sum_over_properties_block",
    "sum_over_samples",
    "sum_over_samples_block",
    "unique_metadata",
    "unique_metadata_block",
    "var_over_properties",
    "var_over_properties_block",
    "var_over_samples",
    "var_over_samples_block",
]


def _install_operators() -> None:
    """Give TensorMap and TensorBlock metatensor's operators.

    metatensor-core defines, on ``TensorMap``: ``==`` / ``!=`` (``equal``), ``+``
    (``add``), ``-`` (``subtract``), ``*`` (``multiply``), ``@`` (``dot``), ``/``
    (``divide``), ``**`` (``pow``), unary ``-`` (``multiply(tensor, -1)``) and unary ``+``
    (the tensor itself); on ``TensorBlock`` only ``==`` / ``!=`` (``equal_block``). There
    are no reflected forms (``2 + tensor`` raises ``TypeError``) and, since ``__eq__`` is
    defined, neither class is hashable. The same set is installed here, forwarding to these
    operations, so the operators work under ``jax.jit`` wherever the operations do
    (comparisons need concrete values, as ``equal`` does). The data model imports nothing
    above it, hence the installation from here.
    """

    def tensor_eq(self: TensorMap, other: Any) -> bool:
        return equal(self, other)

    def tensor_ne(self: TensorMap, other: Any) -> bool:
        return not equal(self, other)

    def block_eq(self: TensorBlock, other: Any) -> bool:
        return equal_block(self, other)

    def block_ne(self: TensorBlock, other: Any) -> bool:
        return not equal_block(self, other)

    def tensor_neg(self: TensorMap) -> TensorMap:
        return multiply(self, -1)

    def tensor_pos(self: TensorMap) -> TensorMap:
        return self

    def forward(function: Any, symbol: str) -> Any:
        def operator(self: TensorMap, other: Any) -> TensorMap:
            return function(self, other)

        operator.__doc__ = f"``tensor {symbol} other``: :func:`eqx_tensor.{function.__name__}`."
        return operator

    operators = {
        TensorMap: {
            "__eq__": tensor_eq,
            "__ne__": tensor_ne,
            "__add__": forward(add, "+"),
            "__sub__": forward(subtract, "-"),
            "__mul__": forward(multiply, "*"),
            "__matmul__": forward(dot, "@"),
            "__truediv__": forward(divide, "/"),
            "__pow__": forward(pow, "**"),
            "__neg__": tensor_neg,
            "__pos__": tensor_pos,
        },
        TensorBlock: {"__eq__": block_eq, "__ne__": block_ne},
    }
    tensor_eq.__doc__ = "``tensor == other``: :func:`eqx_tensor.equal` (values and metadata)."
    tensor_ne.__doc__ = "``tensor != other``: ``not equal(tensor, other)``."
    block_eq.__doc__ = "``block == other``: :func:`eqx_tensor.equal_block`."
    block_ne.__doc__ = "``block != other``: ``not equal_block(block, other)``."
    tensor_neg.__doc__ = "``-tensor``: ``multiply(tensor, -1)``."
    tensor_pos.__doc__ = "``+tensor``: the tensor itself."
    for cls, methods in operators.items():
        for name, method in methods.items():
            method.__name__ = name
            method.__qualname__ = f"{cls.__name__}.{name}"
            setattr(cls, name, method)
        # a class defining __eq__ is not hashable (Python's rule, and metatensor's classes)
        cls.__hash__ = None


_install_operators()
