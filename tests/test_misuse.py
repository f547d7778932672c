"""Misuse that used to give a wrong answer without a word: each case now gives the right answer
(blocks looked up by key) or a clear error naming the function, the argument and what to do."""

from __future__ import annotations

import warnings

import flax.linen
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from helpers import TOL, assert_close

import eqx_tensor as eqt
from eqx_tensor import nn, o3
from eqx_tensor.o3._tensor_product import tensor_product_plan as kernel_plan

O3 = ["o3_lambda", "o3_sigma"]


def _tensor(keys, n=4, n_properties=3, seed=0, names=O3, with_gradients=False, samples=None):
    """Random blocks ``(n, 2l+1, n_properties)`` (NumPy float64) for the given key rows."""
    rng = np.random.default_rng(seed)
    if samples is None:
        samples = eqt.Labels(["system", "atom"], np.array([[0, i] for i in range(n)]))
    blocks = []
    for key in keys:
        l = key[0]
        components = [eqt.Labels(["o3_mu"], np.arange(-l, l + 1).reshape(-1, 1))]
        block = eqt.TensorBlock(
            rng.normal(size=(n, 2 * l + 1, n_properties)),
            samples,
            components,
            eqt.Labels.range("n", n_properties),
        )
        if with_gradients:
            rows = eqt.Labels(["sample", "system", "atom"], np.array([[0, 0, 0], [1, 0, 1]]))
            xyz = eqt.Labels(["xyz"], np.arange(3).reshape(-1, 1))
            block.add_gradient(
                "positions",
                eqt.TensorBlock(
                    rng.normal(size=(2, 3, 2 * l + 1, n_properties)),
                    rows,
                    [xyz, *components],
                    block.properties,
                ),
            )
        blocks.append(block)
    return eqt.TensorMap(eqt.Labels(names, np.array(keys, dtype=np.int32)), blocks)


def _reorder(tensor, order):
    return eqt.TensorMap(tensor.keys[order], tensor.blocks_by_id(order))


def _random_like(variables, seed=0):
    """Random values in the structure of ``variables`` (LayerNorm starts from ones/zeros, where
    a swap of two keys' parameters would not show)."""
    leaves, treedef = jax.tree_util.tree_flatten(variables)
    rng = np.random.default_rng(seed)
    return jax.tree_util.tree_unflatten(
        treedef, [jnp.asarray(rng.normal(size=x.shape), x.dtype) for x in leaves]
    )


# ------------------------------------------------------------------ 1. parameters bound to keys
# two invariant and two covariant keys, all blocks with the same number of properties: a layer
# that binds its parameters to block positions runs on a reordered input without any error
KEYS = [(0, 1, 1), (0, 1, 6), (1, 1, 1), (1, 1, 6)]
NAMES = [*O3, "center_type"]

LAYERS = {
    "Linear": lambda: nn.Linear(out_features=2),
    "EquivariantLinear": lambda: nn.EquivariantLinear(out_features=2),
    "LayerNorm": lambda: nn.LayerNorm(),
    "InvariantLayerNorm": lambda: nn.InvariantLayerNorm(),
    "ModuleMap": lambda: nn.ModuleMap(flax.linen.Dense(2)),
    "NormActivation": lambda: nn.NormActivation(jnp.tanh, bias=True, apply_to_scalars=True),
    "Sequential": lambda: nn.Sequential(
        [
            nn.EquivariantLinear(out_features=5),
            nn.InvariantSiLU(),
            nn.EquivariantLinear(out_features=2),
        ]
    ),
}


@pytest.mark.parametrize("name", list(LAYERS))
def test_reordered_keys_give_reordered_outputs(name):
    tensor = _tensor(KEYS, names=NAMES)
    model = LAYERS[name]()
    params = _random_like(model.init(jax.random.key(0), tensor))
    out = model.apply(params, tensor)
    order = [3, 1, 2, 0]
    reordered = model.apply(params, _reorder(tensor, order))
    assert reordered.keys == tensor.keys[order]
    for position, b in enumerate(order):
        assert_close(reordered.block(position).values, out.block(b).values, atol=TOL)
    # a subset of the keys the parameters know is fine too
    subset = model.apply(params, _reorder(tensor, [2, 1]))
    assert_close(subset.block(0).values, out.block(2).values, atol=TOL)


@pytest.mark.parametrize("name", list(LAYERS))
def test_unknown_keys_are_refused(name):
    tensor = _tensor(KEYS, names=NAMES)
    model = LAYERS[name]()
    params = model.init(jax.random.key(0), tensor)
    # same number of blocks, same shapes, one key the parameters do not have
    other = _tensor([(0, 1, 1), (0, 1, 8), (1, 1, 1), (1, 1, 6)], names=NAMES)
    with pytest.raises(ValueError, match=r"center_type=8.*in_keys="):
        model.apply(params, other)


def test_parameters_record_their_keys_and_stay_plain_arrays():
    tensor = _tensor(KEYS, names=NAMES)
    params = nn.EquivariantLinear(out_features=2).init(jax.random.key(0), tensor)["params"]
    # stacked arrays, and the key of each row as leafless static structure
    assert params["weight"].shape == (4, 3, 2) and params["bias"].shape == (2, 2)
    assert list(params["keys"]) == [
        f"{k} {nn.key_to_name(key)} 3x2" for k, key in enumerate(tensor.keys)
    ]
    assert params["keys"]["0 o3_lambda=0,o3_sigma=1,center_type=1 3x2"] is None
    leaves = jax.tree_util.tree_leaves(params)
    assert len(leaves) == 2 and all(jnp.issubdtype(x.dtype, jnp.floating) for x in leaves)


def test_key_record_survives_tree_operations_and_optax():
    # 12 keys: row numbers are zero-padded, so the sorted record keeps the row order
    keys = [(l, s, t) for l in range(2) for s in (1, -1) for t in (1, 6, 7)]
    tensor = _tensor(keys, names=NAMES)
    model = nn.Linear(out_features=2)
    variables = model.init(jax.random.key(0), tensor)
    out = model.apply(variables, tensor)
    rebuilt = jax.tree_util.tree_map(lambda x: x, variables)  # dicts come back sorted
    assert list(rebuilt["params"]["keys"])[:3] == sorted(variables["params"]["keys"])[:3]
    optimizer = optax.sgd(0.0)
    updates, _ = optimizer.update(rebuilt, optimizer.init(rebuilt))
    stepped = optax.apply_updates(rebuilt, updates)
    order = list(range(12))[::-1]
    reordered = model.apply(stepped, _reorder(tensor, order))
    for position, b in enumerate(order):
        assert_close(reordered.block(position).values, out.block(b).values, atol=TOL)


def test_parameters_without_a_record_need_in_keys():
    tensor = _tensor(KEYS, names=NAMES)
    variables = nn.Linear(out_features=2).init(jax.random.key(0), tensor)
    stacked = {"params": {k: v for k, v in variables["params"].items() if k != "keys"}}
    with pytest.raises(ValueError, match=r"Linear: .*no 'keys' entry.*in_keys="):
        nn.Linear(out_features=2).apply(stacked, tensor)
    # with in_keys, its order gives the rows (metatensor-learn's convention)
    with_keys = nn.Linear(in_keys=tensor.keys, out_features=2)
    expected = nn.Linear(out_features=2).apply(variables, tensor)
    assert eqt.allclose(
        with_keys.apply(stacked, _reorder(tensor, [1, 0, 3, 2])), _reorder(expected, [1, 0, 3, 2])
    )
    # a record for other keys than in_keys is refused
    other = _reorder(tensor, [1, 0, 2, 3]).keys
    with pytest.raises(ValueError, match="not for in_keys"):
        nn.Linear(in_keys=other, out_features=2).apply(variables, tensor)


def test_property_count_mismatch_is_refused():
    tensor = _tensor(KEYS, names=NAMES)
    params = nn.Linear(out_features=2).init(jax.random.key(0), tensor)
    fewer = _tensor(KEYS, names=NAMES, n_properties=2)
    with pytest.raises(ValueError, match=r"Linear: .*center_type=1.* 2 properties.*3"):
        nn.Linear(out_features=2).apply(params, fewer)


def test_per_key_sequences_follow_the_recorded_keys():
    tensor = _tensor(KEYS, names=NAMES)

    def labels(k, n):  # same names for every block, values telling the key apart
        return eqt.Labels(["p"], np.arange(10 * k, 10 * k + n).reshape(-1, 1))

    per_key = [labels(k, 2) for k in range(len(KEYS))]
    model = nn.Linear(out_properties=per_key)
    params = model.init(jax.random.key(0), tensor)
    order = [2, 0, 3, 1]
    out = model.apply(params, _reorder(tensor, order))
    assert [int(b.properties.values[0, 0]) for b in out.blocks()] == [10 * k for k in order]
    eps = [1e-5, 1e-1, 1e1, 1e3]  # large enough to change the results
    norm = nn.LayerNorm(eps=eps)
    params = norm.init(jax.random.key(0), tensor)
    full, part = norm.apply(params, tensor), norm.apply(params, _reorder(tensor, order))
    for position, b in enumerate(order):
        assert_close(part.block(position).values, full.block(b).values, atol=TOL)

    # layers without parameters record nothing: per-key sequences need in_keys
    for layer in (
        nn.LayerNorm(eps=eps, elementwise_affine=False),
        nn.ReLU(out_properties=[eqt.Labels.range("p", 3)] * len(KEYS)),
        nn.InvariantReLU(out_properties=[eqt.Labels.range("p", 3)] * len(KEYS)),
    ):
        with pytest.raises(ValueError, match=r"in_keys="):
            layer.init(jax.random.key(0), tensor)
    relu = nn.ReLU(tensor.keys, [labels(k, 3) for k in range(len(KEYS))])
    out = relu.apply({}, _reorder(tensor, order))
    assert [int(b.properties.values[0, 0]) for b in out.blocks()] == [10 * k for k in order]

    modules = [flax.linen.Dense(2) for _ in KEYS]
    with pytest.raises(ValueError, match=r"ModuleMap: .*in_keys="):
        nn.ModuleMap(modules).init(jax.random.key(0), tensor)
    # one module per key of in_keys: matched by key too
    model = nn.ModuleMap(modules, in_keys=tensor.keys)
    params = _random_like(model.init(jax.random.key(0), tensor))
    out = model.apply(params, tensor)
    reordered = model.apply(params, _reorder(tensor, [3, 0, 2, 1]))
    for position, b in enumerate([3, 0, 2, 1]):
        assert_close(reordered.block(position).values, out.block(b).values, atol=TOL)


def test_tensor_product_weights_follow_keys():
    x2 = o3.spherical_harmonics(jnp.asarray(np.random.default_rng(2).normal(size=(4, 3))), 1)
    x1 = _tensor([(0, 1), (1, 1), (1, -1)], n_properties=2, seed=1, samples=x2.block(0).samples)
    tp = nn.TensorProduct(out_features=2)
    params = tp.init(jax.random.key(0), x1, x2)
    out = tp.apply(params, x1, x2)
    reordered = tp.apply(params, _reorder(x1, [2, 0, 1]), _reorder(x2, [1, 0]))
    assert reordered.keys == out.keys
    for a, b in zip(reordered.blocks(), out.blocks()):
        assert_close(a.values, b.values, atol=TOL)


# ------------------------------------------------------------------ 2. Sequential's signatures
def test_sequential_accepts_metatensor_learn_signature():
    tensor = _tensor(KEYS, names=NAMES)
    keys = tensor.keys
    ours = nn.Sequential([nn.Linear(keys, 3, 4), nn.ReLU(keys)])
    theirs = nn.Sequential(keys, nn.Linear(keys, 3, 4), nn.ReLU(keys))
    params = ours.init(jax.random.key(0), tensor)
    assert jax.tree_util.tree_structure(params) == jax.tree_util.tree_structure(
        theirs.init(jax.random.key(0), tensor)
    )
    assert eqt.equal(ours.apply(params, tensor), theirs.apply(params, tensor))
    assert theirs.in_keys == keys
    with pytest.raises(ValueError, match=r"Sequential: .*o3_lambda=2.*in_keys"):
        theirs.apply(params, _tensor([(2, 1, 1)], names=NAMES))


def test_sequential_with_modules_as_separate_arguments_says_what_to_write():
    with pytest.raises(TypeError, match=r"Sequential\(\[.*Sequential\(in_keys"):
        nn.Sequential(nn.Linear(out_features=2), nn.ReLU())
    with pytest.raises(TypeError, match=r"Sequential\(\["):
        nn.Sequential(nn.Linear(out_features=2))


# ------------------------------------------------------------------ 3. losses and missing blocks
def test_losses_refuse_target_blocks_the_prediction_lacks():
    target = _tensor([(0, 1), (1, 1), (2, 1)])
    prediction = eqt.TensorMap(target.keys[:1], [target.block(0)])
    for loss in (nn.sum_squared_error, nn.mean_squared_error):
        with pytest.raises(ValueError, match=rf"{loss.__name__}: .*o3_lambda=1.*o3_lambda=2"):
            loss(prediction, target)
        assert float(loss(prediction, target, ignore_missing_keys=True)) == 0.0
    # blocks compared by key, in any order
    shuffled = _reorder(target, [2, 0, 1])
    assert float(nn.sum_squared_error(shuffled, target)) == 0.0


# ------------------------------------------------------------------ 4. static groups
def test_static_groups_refuse_rows_outside_the_groups():
    samples = eqt.Labels(["system", "atom"], np.array([[0, 0], [0, 1], [1, 0], [5, 0]]))
    block = eqt.TensorBlock(np.arange(8.0).reshape(4, 2), samples, [], eqt.Labels.range("p", 2))
    tensor = eqt.TensorMap(eqt.Labels.single(), [block])
    with pytest.raises(ValueError, match=r"sum_over_samples.*system=5.*groups"):
        eqt.sum_over_samples(tensor, "atom", groups=2)
    with pytest.raises(ValueError, match=r"mean_over_samples_block.*system=5"):
        eqt.mean_over_samples_block(block, "atom", groups=eqt.Labels.range("system", 2))
    # groups covering every row: empty groups are zero
    out = eqt.sum_over_samples(tensor, "atom", groups=eqt.Labels.range("system", 6))
    values = np.asarray(out.block().values)
    np.testing.assert_allclose(values[[0, 1, 2, 5]], [[2, 4], [4, 5], [0, 0], [6, 7]])
    # dynamic labels (padded batches) still drop the rows that match no group
    dynamic = eqt.TensorBlock(
        block.values,
        eqt.Labels(["system", "atom"], jnp.asarray(samples.values)),
        [],
        block.properties,
    )
    assert dynamic.samples.is_dynamic
    padded = eqt.sum_over_samples_block(dynamic, "atom", groups=2)
    np.testing.assert_allclose(padded.values, [[2, 4], [4, 5]])


# ------------------------------------------------------------------ 5. to_irreps_array
def test_to_irreps_array_refuses_explicit_gradients():
    tensor = _tensor([(0, 1), (1, 1)], with_gradients=True)
    with pytest.raises(ValueError, match=r"to_irreps_array: .*positions.*drop_gradients=True"):
        o3.to_irreps_array(tensor)
    array = o3.to_irreps_array(tensor, drop_gradients=True)
    assert array.shape == (4, 3 + 3 * 3)
    plain = eqt.remove_gradients(tensor)
    np.testing.assert_array_equal(np.asarray(array.array), o3.to_irreps_array(plain).array)


# ------------------------------------------------------------------ 6. equivariance_error
def test_equivariance_error_does_not_guess_vectors():
    tensor = _tensor([(0, 1), (1, 1)], n_properties=3)

    def invariants(t):  # (n, 3) rotation-invariant numbers
        return jnp.sum(jnp.asarray(t.block(1).values) ** 2, axis=1)

    with pytest.raises(ValueError, match=r"equivariance_error: .*output.*output_kinds="):
        o3.equivariance_error(invariants, tensor)
    assert o3.equivariance_error(invariants, tensor, output_kinds="scalar", n_rotations=1) < TOL
    # the same (n, 3) numbers declared as vectors are not equivariant
    assert o3.equivariance_error(invariants, tensor, output_kinds="vector", n_rotations=1) > 0.1

    vectors = jnp.asarray(np.random.default_rng(0).normal(size=(5, 3)))
    with pytest.raises(ValueError, match=r"equivariance_error: .*input.*input_kinds="):
        o3.equivariance_error(lambda v: o3.spherical_harmonics(v, 2), vectors)
    error = o3.equivariance_error(
        lambda v: o3.spherical_harmonics(v, 2), vectors, input_kinds="vector", n_rotations=1
    )
    assert error < TOL

    # per-argument kinds; a cross product is a pseudovector
    def cross(u, v):
        return jnp.cross(u, v)

    args = (vectors, vectors[::-1])
    kinds = {"input_kinds": ("vector", "vector"), "n_rotations": 1}
    assert o3.equivariance_error(cross, args, output_kinds="pseudovector", **kinds) < TOL
    assert o3.equivariance_error(cross, args, output_kinds="vector", **kinds) > 0.1
    with pytest.raises(ValueError, match="last axis of size 3"):
        o3.equivariance_error(lambda t: t, jnp.ones((4, 2)), input_kinds="vector")
    with pytest.raises(ValueError, match="kind"):
        o3.equivariance_error(lambda t: t, tensor, output_kinds="axial")


# ------------------------------------------------------------------ 7. rotate
def test_rotate_refuses_non_orthogonal_matrices():
    tensor = _tensor([(0, 1), (1, 1)])
    for R in (
        2 * np.eye(3),
        np.array([[1.0, 0.5, 0], [0, 1, 0], [0, 0, 1]]),
        np.full((3, 3), np.nan),
    ):
        with pytest.raises(ValueError, match=r"rotate: .*orthogonal"):
            o3.rotate(tensor, R)
    # improper rotations are fine, in float32 too
    R = o3.random_rotation(jax.random.key(0), improper=True, dtype=jnp.float32)
    assert_close(
        o3.rotate(o3.rotate(tensor, R), R.T).block(1).values, tensor.block(1).values, atol=1e-5
    )
    # traced matrices are not checked (no concrete value under jit)
    jax.jit(o3.rotate)(tensor, jnp.eye(3))


# ------------------------------------------------------------------ 8. unreachable outputs
def test_unreachable_tensor_product_outputs():
    x2 = o3.spherical_harmonics(jnp.asarray(np.random.default_rng(4).normal(size=(4, 3))), 1)
    x1 = _tensor([(0, 1), (1, 1)], n_properties=2, seed=3, samples=x2.block(0).samples)
    wanted = {(0, 1): 2, (3, 1): 1, (1, 1): 2}
    with pytest.raises(ValueError, match=r"TensorProduct: .*\(3, 1\).*unreachable='zeros'"):
        nn.TensorProduct(out_features=wanted).init(jax.random.key(0), x1, x2)
    with pytest.raises(ValueError, match=r"produces the outputs \[\(3, 1\)\].*unreachable"):
        kernel_plan([((0, 1), 2), ((1, 1), 2)], [((0, 1), 1)], irreps_out=[((3, 1), 1)])

    tp = nn.TensorProduct(out_features=wanted, unreachable="zeros")
    params = tp.init(jax.random.key(0), x1, x2)
    out = tp.apply(params, x1, x2)
    assert [tuple(k) for k in out.keys.values] == list(wanted)  # out_features order
    zero = out.block(o3_lambda=3, o3_sigma=1)
    assert zero.values.shape == (4, 7, 1) and not np.any(np.asarray(zero.values))
    reachable = nn.TensorProduct(out_features={(0, 1): 2, (1, 1): 2})
    expected = reachable.apply(params, x1, x2)
    for key in expected.keys:
        assert_close(out.block(key).values, expected.block(key).values, atol=TOL)
    grads = jax.grad(lambda p: sum(jnp.sum(b.values**2) for b in tp.apply(p, x1, x2)))(params)
    assert all(bool(jnp.all(jnp.isfinite(g))) for g in jax.tree_util.tree_leaves(grads))
    with pytest.raises(ValueError, match="unreachable must be"):
        nn.TensorProduct(out_features=wanted, unreachable="drop").init(jax.random.key(0), x1, x2)


# ------------------------------------------------------------------ 9. no float64 warnings
@pytest.mark.x32_only
def test_init_on_float64_data_with_x64_off_does_not_warn():
    assert not jax.config.jax_enable_x64
    tensor = _tensor(KEYS, names=NAMES)  # NumPy float64 values
    x2 = o3.spherical_harmonics(jnp.asarray(np.random.default_rng(5).normal(size=(4, 3))), 1)
    covariant = _tensor([(0, 1), (1, 1)], n_properties=2, samples=x2.block(0).samples)
    models = [
        (nn.Linear(out_features=2), (tensor,)),
        (nn.EquivariantLinear(out_features=2), (tensor,)),
        (nn.LayerNorm(), (tensor,)),
        (nn.InvariantLayerNorm(), (tensor,)),
        (nn.NormActivation(bias=True), (tensor,)),
        (nn.TensorProduct(out_features=2), (covariant, x2)),
        (nn.Linear(out_features=2, param_dtype=np.float64), (tensor,)),
    ]
    for model, inputs in models:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            params = model.init(jax.random.key(0), *inputs)
            model.apply(params, *inputs)
        messages = [
            str(w.message) for w in caught if "Explicitly requested dtype" in str(w.message)
        ]
        assert not messages, (type(model).__name__, messages)
        assert all(x.dtype == jnp.float32 for x in jax.tree_util.tree_leaves(params))


def _o3_block(samples: np.ndarray, l: int, mul: int) -> eqt.TensorBlock:
    rng = np.random.default_rng(l)
    return eqt.TensorBlock(
        rng.normal(size=(len(samples), 2 * l + 1, mul)),
        eqt.Labels(["atom"], samples.reshape(-1, 1)),
        [eqt.Labels(["o3_mu"], np.arange(-l, l + 1, dtype=np.int32).reshape(-1, 1))],
        eqt.Labels.range("n", mul),
    )


def test_one_same_samples_rule_for_dynamic_labels():
    """nn.TensorProduct, o3.to_irreps_array and the operations compare concrete dynamic
    samples by value (before, nn and o3 compared only names and counts, and took rows of
    different atoms for the same atoms); inside jax.jit equal sizes are taken as equal."""
    keys = eqt.Labels(["o3_lambda", "o3_sigma"], np.array([[0, 1], [1, 1]]))
    first = np.array([0, 1, 2], dtype=np.int32)
    other = np.array([2, 1, 0], dtype=np.int32)
    x1 = eqt.TensorMap(keys, [_o3_block(first, 0, 2), _o3_block(first, 1, 2)])
    x2 = eqt.TensorMap(keys, [_o3_block(other, 0, 1), _o3_block(other, 1, 1)])
    mixed = eqt.TensorMap(keys, [_o3_block(first, 0, 2), _o3_block(other, 1, 2)])
    x1, x2, mixed = (t.to_dynamic_samples() for t in (x1, x2, mixed))
    assert eqt.labels.same_labels(x1.block(0).samples, x1.block(1).samples)
    assert not eqt.labels.same_labels(x1.block(0).samples, x2.block(0).samples)

    model = nn.TensorProduct(mode="full")
    with pytest.raises(ValueError, match="same samples"):
        model.init(jax.random.key(0), x1, x2)
    with pytest.raises(ValueError, match="same samples"):
        o3.to_irreps_array(mixed)
    with pytest.raises(eqt.operations.NotEqualError, match="same samples"):
        eqt.operations.equal_metadata_raise(x1, x2)

    # inside jax.jit the values are traced: equal names and sizes are taken as equal
    params = model.init(jax.random.key(0), x1, x1)
    out = jax.jit(lambda a, b: model.apply(params, a, b))(x1, x2)
    assert len(out) > 0
    irreps = jax.jit(o3.to_irreps_array)(mixed)
    assert irreps.shape[0] == 3
