"""Counterparts of metatensor-operations, as pure, jit-able functions over TensorMaps.

Every function here is also exported at the top level (``eqx_tensor.sum_over_samples``).
"""

__all__: list[str] = []
