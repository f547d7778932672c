"""How many programs XLA compiles for the README's model: initialising and applying it cost a
fixed number of compilations, whatever the number of blocks, and nothing is recompiled for a
second call with the same metadata.

Counted with ``jax.monitoring`` (one backend-compile event per compiled program). Eagerly, flax
would run every layer operation on its own and compile it for each new block shape: 26
programs for ``init`` on the 45-block qm7 file and 8 for ``apply``, 26 for ``jax.grad`` of the
loss, before these layers compiled ``init``/``apply`` as one program each.
"""

from __future__ import annotations

import contextlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import data_path
from helpers import FLOAT, assert_close

import eqx_tensor as eqt
from eqx_tensor import nn

_COMPILE_EVENT = "/jax/core/compile/backend_compile_duration"


@contextlib.contextmanager
def counted_compilations():
    """Yield a list that receives one entry per program compiled in the block."""
    compiled: list[str] = []

    def listener(event: str, duration: float, **kwargs) -> None:
        if event == _COMPILE_EVENT:
            compiled.append(event)

    jax.monitoring.register_event_duration_secs_listener(listener)
    try:
        yield compiled
    finally:
        # jax keeps no public way to remove one listener; a stale one only appends to a list
        # nobody reads, but remove it where the private hook exists
        unregister = getattr(
            jax.monitoring, "_unregister_event_duration_listener_by_callback", None
        )
        if unregister is not None:
            unregister(listener)


def _readme_model() -> nn.Sequential:
    return nn.Sequential(
        [
            nn.EquivariantLinear(out_features=16),
            nn.InvariantSiLU(),
            nn.EquivariantLinear(out_features=1),
        ]
    )


def _features(name: str, blocks: int | None = None) -> eqt.TensorMap:
    """The file's TensorMap without gradients (its first ``blocks`` blocks if given)."""
    tensor = eqt.remove_gradients(eqt.load(str(data_path(name))))
    if blocks is None:
        return tensor
    keys = eqt.Labels(tensor.keys.names, tensor.keys.values[:blocks])
    return eqt.TensorMap(keys, [tensor.block(i).copy() for i in range(blocks)])


@pytest.mark.parametrize(
    "name, with_grad", [("qm7-spherical-expansion.mts", False), ("spherical-expansion.mts", True)]
)
def test_init_apply_and_grad_compile_a_fixed_number_of_programs(name, with_grad):
    features = _features(name)
    assert len(features) in (12, 45)
    model = _readme_model()
    key = jax.random.key(0)
    # once per process, compiler_options() compiles a one-line program to probe jaxlib
    eqt.compiler_options()

    with counted_compilations() as init_programs:
        params = model.init(key, features)
    with counted_compilations() as again:
        params_again = model.init(key, features)
    assert len(init_programs) == 1, f"init compiled {len(init_programs)} programs"
    assert len(again) == 0
    for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(params_again)):
        np.testing.assert_array_equal(a, b)

    with counted_compilations() as apply_programs:
        output = model.apply(params, features)
    with counted_compilations() as again:
        model.apply(params, features)
    assert len(apply_programs) == 1, f"apply compiled {len(apply_programs)} programs"
    assert len(again) == 0
    if not with_grad:
        return

    def loss(p):
        return nn.sum_squared_error(model.apply(p, features), output)

    with counted_compilations() as grad_programs:
        gradients = jax.grad(loss)(params)
    # the model's linearised forward and its transpose, and the loss's: a handful, not one
    # per block or per operation
    assert len(grad_programs) <= 6, f"jax.grad compiled {len(grad_programs)} programs"
    assert all(bool(jnp.all(g == 0)) for g in jax.tree.leaves(gradients))


def test_compiled_init_and_apply_equal_flax_eager():
    """The compiled calls give flax's own results: same draws, same outputs and gradients."""
    import flax.linen as flax_nn

    features = _features("spherical-expansion.mts", blocks=4)  # eager flax: a few blocks
    model = _readme_model()
    key = jax.random.key(1)
    ours = model.init(key, features)
    eager = flax_nn.Module.init(model, key, features)
    assert jax.tree.structure(ours) == jax.tree.structure(eager)
    for a, b in zip(jax.tree.leaves(ours), jax.tree.leaves(eager)):
        np.testing.assert_array_equal(a, b)

    out = model.apply(ours, features)
    out_eager = flax_nn.Module.apply(model, ours, features)
    assert out.keys == out_eager.keys
    for block, expected in zip(out.blocks(), out_eager.blocks()):
        np.testing.assert_allclose(block.values, expected.values, rtol=1e-6, atol=1e-6)
        assert block.samples == expected.samples
        assert block.properties == expected.properties


def test_init_inside_a_trace_and_with_python_flags():
    """init/apply closed over in a user's jit, and modules taking a Python flag, still work."""
    import flax.linen as flax_nn

    features = _features("spherical-expansion.mts", blocks=4)
    model = _readme_model()
    key = jax.random.key(2)
    inside = jax.jit(lambda: model.init(key, features))()
    outside = model.init(key, features)
    for a, b in zip(jax.tree.leaves(inside), jax.tree.leaves(outside)):
        np.testing.assert_allclose(a, b, rtol=1e-6)

    class Flagged(nn.Compiled, flax_nn.Module):
        @flax_nn.compact
        def __call__(self, x, double: bool):
            scale = self.param("scale", lambda k: jnp.ones(()))
            return x * scale * (2.0 if double else 1.0)

    x = jnp.arange(3.0)
    params = Flagged().init(key, x, True)
    np.testing.assert_allclose(Flagged().apply(params, x, True), 2 * x)
    np.testing.assert_allclose(Flagged().apply(params, x, double=False), x)


def _irreps_tensor(irreps: list[tuple[int, int, int]], n: int = 3) -> eqt.TensorMap:
    """Blocks ``(n, 2l+1, mul)`` keyed by ``(o3_lambda, o3_sigma)`` for ``(l, sigma, mul)``."""
    rng = np.random.default_rng(0)
    blocks = [
        eqt.TensorBlock(
            rng.normal(size=(n, 2 * l + 1, mul)),
            eqt.Labels.range("sample", n),
            [eqt.Labels(["o3_mu"], np.arange(-l, l + 1, dtype=np.int32).reshape(-1, 1))],
            eqt.Labels.range("n", mul),
        )
        for l, _, mul in irreps
    ]
    keys = eqt.Labels(["o3_lambda", "o3_sigma"], np.array([[l, s] for l, s, _ in irreps]))
    return eqt.TensorMap(keys, blocks)


def test_tensor_product_plan_is_cached_by_metadata_and_arguments():
    x1 = _irreps_tensor([(0, 1, 4), (1, 1, 2)])
    x2 = _irreps_tensor([(0, 1, 1), (1, -1, 1)])
    plan = nn.tensor_product_plan(x1, x2, "fully_connected", out_features=3)
    # same metadata, other arrays and objects: the same plan object, without re-planning
    again = nn.tensor_product_plan(
        jax.tree.map(lambda a: a + 1, x1), x2, "fully_connected", out_features=3
    )
    assert again is plan
    # any argument or metadata change gives its own plan
    other = nn.tensor_product_plan(x1, x2, "fully_connected", out_features=5)
    assert other is not plan and other.n_weights != plan.n_weights
    per_key = nn.tensor_product_plan(x1, x2, "fully_connected", out_features={(1, 1): 2})
    assert [key for key, _ in per_key.irreps_out] == [(1, 1)]
    wider = _irreps_tensor([(0, 1, 5), (1, 1, 2)])
    assert nn.tensor_product_plan(wider, x2, "fully_connected", out_features=3) is not plan
    # errors are raised on every call, never cached
    for _ in range(2):
        with pytest.raises(ValueError, match=r"unreachable|no path"):
            nn.tensor_product_plan(x1, x2, "fully_connected", out_features={(3, 1): 2})


def test_compiler_options_are_per_program_and_keep_results():
    options = eqt.compiler_options()
    assert eqt.compiler_options("gpu") == {}
    if jax.default_backend() == "cpu":
        assert options in ({}, {"xla_cpu_use_fusion_emitters": False})
    options["changed"] = True
    assert "changed" not in eqt.compiler_options()  # a new dict each call
    del options["changed"]

    x = np.random.default_rng(0).normal(size=(7, 5)).astype(FLOAT)

    def function(x):
        return jnp.tanh(x) @ x.T + jax.nn.silu(x).sum()

    assert_close(jax.jit(function, compiler_options=options)(x), jax.jit(function)(x))
