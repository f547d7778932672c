"""eqx_tensor.nn against metatensor-learn, explicit gradients, equivariance and training.

metatensor-learn's nn modules run here on metatensor-core TensorMaps holding float64 torch
tensors (``tensor.to(arrays="torch")``); metatensor-torch is not needed. The same weights are
copied into both sides.
"""

from __future__ import annotations

import functools

import flax
import jax
import jax.numpy as jnp
import metatensor as mts
import numpy as np
import optax
import pytest
import torch
from conftest import data_path
from helpers import FLOAT, SLOW_WITH_X64, assert_close, assert_tensor_equal, from_metatensor
from metatensor.learn import nn as mtl

import eqx_tensor as eqt
from eqx_tensor import nn, o3
from eqx_tensor.nn._stacking import grouped_matmul, plan_buckets

torch.set_default_dtype(torch.float64)
FILES = ["spherical-expansion.mts", "qm7-spherical-expansion.mts"]


def _signed(tensor: mts.TensorMap, seed: int) -> mts.TensorMap:
    """The tensor with random signs, so that activations see negative inputs too."""
    rng = np.random.default_rng(seed)
    blocks = [
        mts.TensorBlock(
            np.asarray(b.values) * rng.choice([-1.0, 1.0], size=b.values.shape),
            b.samples,
            b.components,
            b.properties,
        )
        for b in tensor.blocks()
    ]
    return mts.TensorMap(tensor.keys, blocks)


# the qm7 expansion (45 blocks, l up to 4) in the slow step: compilation grows with the blocks
@pytest.fixture(scope="module", params=[FILES[0], pytest.param(FILES[1], marks=pytest.mark.slow)])
def features(request):
    """(ours, metatensor-learn's) copies of a file without gradients, with random signs."""
    tensor = _signed(mts.remove_gradients(mts.load(str(data_path(request.param)))), seed=1)
    return from_metatensor(tensor), tensor.to(arrays="torch")


def _copy_linear(torch_module, params) -> None:
    """Write our stacked Linear parameters into metatensor-learn's per-key torch.nn.Linear."""
    weight = np.asarray(params["weight"])
    bias = np.asarray(params["bias"]) if "bias" in params else None
    row = 0
    with torch.no_grad():
        for k, linear in enumerate(torch_module.module_map.module_list):
            fin, fout = linear.in_features, linear.out_features
            linear.weight.copy_(torch.from_numpy(weight[k, :fin, :fout].T.copy()))
            if linear.bias is not None:
                linear.bias.copy_(torch.from_numpy(bias[row, :fout].copy()))
                row += 1
    assert bias is None or row == bias.shape[0]


def _copy_layer_norm(torch_module, params) -> None:
    weight, bias = np.asarray(params["weight"]), np.asarray(params["bias"])
    row = 0
    with torch.no_grad():
        for module in torch_module.module_map.module_list:
            if isinstance(module, torch.nn.Identity):
                continue
            module.weight.copy_(torch.from_numpy(weight[row].copy()))
            module.bias.copy_(torch.from_numpy(bias[row].copy()))
            row += 1
    assert row == weight.shape[0]


def _random_params(params, seed: int):
    """Same structure, random values (LayerNorm starts from ones/zeros, which hides bugs)."""
    leaves, treedef = jax.tree_util.tree_flatten(params)
    rng = np.random.default_rng(seed)
    return jax.tree_util.tree_unflatten(
        treedef, [jnp.asarray(rng.normal(size=x.shape).astype(x.dtype)) for x in leaves]
    )


def _random_variables(model, tensor, seed: int):
    """Random variables with the structure ``model.init`` would give, without compiling it."""
    return _random_params(jax.eval_shape(model.init, jax.random.key(0), tensor), seed)


def _in_features(tensor) -> list[int]:
    return [len(b.properties) for b in tensor.blocks()]


# ------------------------------------------------------------------ metatensor-learn checks
@pytest.mark.parametrize("bias", [True, False])
def test_linear_matches_metatensor_learn(features, bias):
    ours, theirs = features
    model = nn.Linear(out_features=7, bias=bias)
    params = _random_variables(model, ours, seed=0)["params"]
    assert params["weight"].shape == (len(ours), _in_features(ours)[0], 7)
    reference = mtl.Linear(theirs.keys, _in_features(theirs), out_features=7, bias=bias)
    _copy_linear(reference, params)
    assert_tensor_equal(model.apply({"params": params}, ours), reference(theirs), atol=1e-12)


def test_linear_out_properties_matches_metatensor_learn(features):
    ours, theirs = features
    out_properties = [
        mts.Labels(["energy"], np.arange(3 + i % 2).reshape(-1, 1)) for i in range(len(theirs))
    ]
    model = nn.Linear(out_properties=[eqt.Labels(p.names, p.values) for p in out_properties])
    params = _random_variables(model, ours, seed=1)["params"]
    reference = mtl.Linear(theirs.keys, _in_features(theirs), out_properties=out_properties)
    _copy_linear(reference, params)
    assert_tensor_equal(model.apply({"params": params}, ours), reference(theirs), atol=1e-12)


def test_equivariant_linear_matches_metatensor_learn(features):
    ours, theirs = features
    model = nn.EquivariantLinear(out_features=6)
    params = _random_variables(model, ours, seed=2)["params"]
    n_invariant = int(np.sum(np.asarray(ours.keys.column("o3_lambda")) == 0))
    assert params["bias"].shape == (n_invariant, 6)
    reference = mtl.EquivariantLinear(theirs.keys, _in_features(theirs), out_features=6)
    _copy_linear(reference, params)
    assert_tensor_equal(model.apply({"params": params}, ours), reference(theirs), atol=1e-12)


def test_metatensor_learn_positional_arguments(features):
    """Code written for metatensor-learn, ``Cls(in_keys, in_features, out_features)``, runs."""
    ours, _ = features
    keys, in_features = ours.keys, _in_features(ours)
    for positional, keyword in [
        (nn.Linear(keys, in_features, 5), nn.Linear(out_features=5)),
        (nn.EquivariantLinear(keys, in_features, 5), nn.EquivariantLinear(out_features=5)),
    ]:
        assert positional.in_keys == keys and positional.out_features == 5
        params = _random_variables(keyword, ours, seed=3)
        assert_tensor_equal(positional.apply(params, ours), keyword.apply(params, ours))
    for layer in (nn.ReLU(keys), nn.InvariantSiLU(keys, None, INVARIANT)):
        assert layer.in_keys == keys
        assert eqt.equal(layer.apply({}, ours), type(layer)().apply({}, ours))
    with pytest.raises(ValueError, match="in_features says 1"):
        nn.Linear(keys, 1, 5).init(jax.random.key(0), ours)


INVARIANT = eqt.Labels(["o3_lambda", "o3_sigma"], np.array([[0, 1]]))

ACTIVATIONS = [
    (nn.ReLU, mtl.ReLU),
    (nn.Tanh, mtl.Tanh),
    (nn.SiLU, mtl.SiLU),
    (nn.InvariantReLU, mtl.InvariantReLU),
    (nn.InvariantTanh, mtl.InvariantTanh),
    (nn.InvariantSiLU, mtl.InvariantSiLU),
]


@pytest.mark.parametrize(("ours_cls", "theirs_cls"), ACTIVATIONS)
def test_activations_match_metatensor_learn(features, ours_cls, theirs_cls):
    ours, theirs = features
    expected = theirs_cls(theirs.keys)(theirs)
    # metatensor-learn relabels the properties as "_"; ours keeps them unless asked
    n = _in_features(ours)[0]
    relabelled = ours_cls(out_properties=eqt.Labels.range("_", n)).apply({}, ours)
    assert_tensor_equal(relabelled, expected, atol=1e-12)
    kept = ours_cls().apply({}, ours)
    for a, b in zip(kept.blocks(), ours.blocks()):
        assert a.properties == b.properties


@pytest.mark.parametrize("invariant", [False, True])
@pytest.mark.parametrize("mean", [True, False])
def test_layer_norm_matches_metatensor_learn(features, invariant, mean):
    ours, theirs = features
    n = _in_features(ours)[0]
    relabel = eqt.Labels.range("_", n)
    if invariant:
        model = nn.InvariantLayerNorm(mean=mean, out_properties=relabel)
        n_norm = int(np.sum(np.asarray(ours.keys.column("o3_lambda")) == 0))
        reference = mtl.InvariantLayerNorm(theirs.keys, [n] * n_norm, mean=mean)
    else:
        model = nn.LayerNorm(mean=mean, out_properties=relabel)
        reference = mtl.LayerNorm(theirs.keys, _in_features(theirs), mean=mean)
    params = _random_variables(model, ours, seed=4)["params"]
    _copy_layer_norm(reference, params)
    # metatensor-learn's LayerNorm with mean=False divides its input in place: give it a copy
    expected = reference(mts.TensorMap(theirs.keys, [b.copy() for b in theirs.blocks()]))
    assert_tensor_equal(model.apply({"params": params}, ours), expected, atol=1e-12)


def test_sequential_matches_metatensor_learn(features):
    ours, theirs = features
    keys, fin = theirs.keys, _in_features(theirs)
    model = nn.Sequential(
        [
            nn.EquivariantLinear(out_features=16),
            nn.InvariantSiLU(),
            nn.InvariantLayerNorm(),
            nn.EquivariantLinear(out_features=2),
        ]
    )
    params = _random_variables(model, ours, seed=6)["params"]
    assert sorted(params) == ["layers_0", "layers_2", "layers_3"]
    first = mtl.EquivariantLinear(keys, fin, out_features=16)
    norm = mtl.InvariantLayerNorm(keys, 16)
    last = mtl.EquivariantLinear(keys, 16, out_features=2)
    _copy_linear(first, params["layers_0"])
    _copy_layer_norm(norm, params["layers_2"])
    _copy_linear(last, params["layers_3"])
    reference = mtl.Sequential(keys, first, mtl.InvariantSiLU(keys), norm, last)
    got = model.apply({"params": params}, ours)
    assert_tensor_equal(got, reference(theirs), atol=1e-12)


def test_module_map_matches_metatensor_learn(features):
    ours, theirs = features
    model = nn.ModuleMap(flax.linen.Dense(3))
    params = _random_variables(model, ours, seed=7)["params"]
    assert len(params) == len(ours)
    modules = []
    for k, key in enumerate(ours.keys):
        linear = torch.nn.Linear(_in_features(theirs)[k], 3)
        dense = params[nn.key_to_name(key)]  # one module per key, named by the key
        with torch.no_grad():
            linear.weight.copy_(torch.from_numpy(np.asarray(dense["kernel"]).T.copy()))
            linear.bias.copy_(torch.from_numpy(np.asarray(dense["bias"]).copy()))
        modules.append(linear)
    reference = mtl.ModuleMap(theirs.keys, modules)
    assert_tensor_equal(model.apply({"params": params}, ours), reference(theirs), atol=1e-12)


@pytest.mark.parametrize(
    "make_layers",
    [
        pytest.param(
            lambda: [
                nn.EquivariantLinear(out_features=8),
                nn.InvariantSiLU(),
                nn.EquivariantLinear(out_features=3),
            ],
            marks=pytest.mark.slow,
        ),
        # the default run: biases on every block, before and after; a layer norm in between
        lambda: [
            nn.Linear(out_features=8),
            nn.InvariantTanh(),
            nn.InvariantLayerNorm(),
            nn.Linear(out_features=2, bias=[i % 2 == 0 for i in range(4)]),
            nn.InvariantSiLU(),
            nn.EquivariantLinear(out_features=5),
        ],
        pytest.param(
            lambda: [nn.Linear(out_features=6, bias=False), nn.Linear(out_features=2)],
            marks=pytest.mark.slow,
        ),
    ],
)
def test_sequential_fusion_is_exact(make_layers):
    positions = jnp.asarray(np.random.default_rng(3).normal(size=(3, 3)))
    build, _ = _synthetic(positions)
    tensor = build(positions)
    fused = nn.Sequential(make_layers())
    unfused = nn.Sequential(make_layers(), fuse_linear=False)
    shapes = jax.eval_shape(fused.init, jax.random.key(0), tensor)
    assert jax.tree_util.tree_structure(shapes) == jax.tree_util.tree_structure(
        jax.eval_shape(unfused.init, jax.random.key(0), tensor)
    )
    variables = _random_params(shapes, seed=4)

    @jax.jit
    def outputs_and_grads(variables, tensor):
        def loss(v, model):
            out = model.apply(v, tensor)
            return sum(
                jnp.sum(jnp.sin(b.values)) + jnp.sum(b.gradient("positions").values ** 2)
                for b in out.blocks()
            )

        return [
            (model.apply(variables, tensor), jax.grad(loss)(variables, model))
            for model in (fused, unfused)
        ]

    (out_a, grad_a), (out_b, grad_b) = outputs_and_grads(variables, tensor)
    for a, b in zip(out_a.blocks(), out_b.blocks()):
        assert a.properties == b.properties
        assert_close(a.values, b.values, rtol=1e-12, atol=1e-12)
        assert_close(
            a.gradient("positions").values, b.gradient("positions").values, rtol=1e-12, atol=1e-12
        )
    for a, b in zip(jax.tree_util.tree_leaves(grad_a), jax.tree_util.tree_leaves(grad_b)):
        assert_close(a, b, rtol=1e-11, atol=1e-12)


# ------------------------------------------------------------------ stacking
def test_plan_buckets():
    # zero overhead: only equal sizes share a bucket
    assert sorted(map(sorted, plan_buckets([5, 3, 5, 1], 4, 0))) == [[0, 2], [1], [3]]
    # infinite overhead: one bucket, largest first
    assert plan_buckets([5, 3, 7], 4, float("inf")) == [[2, 0, 1]]
    # a large overhead merges close sizes but not a tiny segment with a huge one
    buckets = plan_buckets([1000, 990, 2], 1, 50)
    assert sorted(map(sorted, buckets)) == [[0, 1], [2]]


@pytest.mark.parametrize(
    "name",
    [
        "spherical-expansion.mts",
        pytest.param("qm7-spherical-expansion.mts", marks=pytest.mark.slow),
    ],
)
def test_stacking_modes_agree_with_gradients(name):
    tensor = from_metatensor(mts.load(str(data_path(name))))
    model = nn.EquivariantLinear(out_features=3)
    params = _random_variables(model, tensor, seed=8)

    @jax.jit
    def outputs(params, tensor):
        return [
            nn.EquivariantLinear(out_features=3, stacking=stacking).apply(params, tensor)
            for stacking in ["auto", "blocks", "pad"]
        ]

    auto, *others = outputs(params, tensor)
    for other in others:
        for a, b in zip(auto.blocks(), other.blocks()):
            assert_close(a.values, b.values, rtol=0, atol=1e-13)
            for parameter, gradient in a.gradients():
                assert_close(gradient.values, b.gradient(parameter).values, rtol=0, atol=1e-13)


def test_grouped_matmul_mixed_sizes():
    rng = np.random.default_rng(0)
    segments = [rng.normal(size=(n, f)) for n, f in [(4, 2), (7, 3), (4, 2), (0, 2), (1, 3)]]
    index = [0, 1, 2, 0, 1]
    weight = rng.normal(size=(3, 3, 5))
    out = [4, 5, 2, 4, 5]
    for stacking in ["auto", "blocks", "pad"]:
        got = grouped_matmul(segments, index, jnp.asarray(weight), out, stacking=stacking)
        for x, k, f, y in zip(segments, index, out, got):
            assert_close(y, x @ weight[k, : x.shape[1], :f], atol=1e-13)


# ------------------------------------------------------------------ explicit gradients
def _synthetic(positions, n_samples=4, n_properties=3, seed=0):
    """A TensorMap of smooth functions of ``positions`` (n_atoms, 3), with its positions
    gradient computed by jax.jacfwd on a sparse subset of (sample, atom) pairs."""
    rng = np.random.default_rng(seed)
    n_atoms = positions.shape[0]
    keys = eqt.Labels(["o3_lambda", "o3_sigma"], np.array([[0, 1], [1, 1], [0, -1], [2, -1]]))
    samples = eqt.Labels(
        ["system", "atom"],
        np.stack([np.zeros(n_samples), np.arange(n_samples)], 1).astype(np.int32),
    )
    pairs = np.array([(s, a) for s in range(n_samples) for a in range(n_atoms) if (s + a) % 3 != 1])
    grad_samples = eqt.Labels(
        ["sample", "system", "atom"],
        np.stack([pairs[:, 0], np.zeros(len(pairs)), pairs[:, 1]], 1).astype(np.int32),
    )
    projections = [
        rng.normal(size=(n_atoms * 3, n_samples * (2 * l + 1) * n_properties))
        for l, _ in keys.values
    ]

    def block_values(pos, b):
        l = int(keys.values[b, 0])
        flat = jnp.sin(pos.reshape(-1) @ projections[b] + 0.3)
        return flat.reshape(n_samples, 2 * l + 1, n_properties)

    def build(pos, with_gradients=True):
        blocks = []
        for b, (l, _) in enumerate(keys.values):
            components = [eqt.Labels(["o3_mu"], np.arange(-l, l + 1).reshape(-1, 1))]
            properties = eqt.Labels.range("n", n_properties)
            block = eqt.TensorBlock(block_values(pos, b), samples, components, properties)
            if with_gradients:
                jac = jax.jacfwd(lambda p, b=b: block_values(p, b))(pos)  # (n, C, F, atoms, 3)
                rows = jac[pairs[:, 0], ..., pairs[:, 1], :]  # (pairs, C, F, 3)
                rows = jnp.moveaxis(rows, -1, 1)
                xyz = eqt.Labels(["xyz"], np.arange(3).reshape(-1, 1))
                block.add_gradient(
                    "positions", eqt.TensorBlock(rows, grad_samples, [xyz, *components], properties)
                )
            blocks.append(block)
        return eqt.TensorMap(keys, blocks)

    return build, pairs


LAYERS = [
    lambda: nn.Linear(out_features=2),
    lambda: nn.EquivariantLinear(out_features=5),
    lambda: nn.ReLU(),
    lambda: nn.SiLU(),
    lambda: nn.Tanh(),
    lambda: nn.InvariantSiLU(),
    lambda: nn.InvariantTanh(),
    lambda: nn.LayerNorm(),
    lambda: nn.InvariantLayerNorm(mean=False),
    lambda: nn.ModuleMap(flax.linen.Dense(2)),
    lambda: nn.Sequential(
        [
            nn.EquivariantLinear(out_features=4),
            nn.InvariantSiLU(),
            nn.EquivariantLinear(out_features=1),
        ]
    ),
]


@functools.cache
def _explicit_and_expected_gradients():
    """For every layer of LAYERS: the explicit positions gradients of its output blocks and
    ``jax.jacfwd`` of their values, at the sparse (sample, atom) pairs. One compiled program
    for all the layers: compiling them one by one takes several times longer."""
    positions = jnp.asarray(np.random.default_rng(1).normal(size=(3, 3)))
    build, pairs = _synthetic(positions)
    layers = [make_layer() for make_layer in LAYERS]
    variables = [_random_variables(layer, build(positions), seed=2) for layer in layers]

    @jax.jit
    def everything(variables, positions):
        results = []
        for layer, v in zip(layers, variables):
            output = layer.apply(v, build(positions))
            explicit = [block.gradient("positions").values for block in output.blocks()]
            jacobians = jax.jacfwd(
                lambda p, layer=layer, v=v: [
                    block.values
                    for block in layer.apply(v, build(p, with_gradients=False)).blocks()
                ]
            )(positions)  # per block: (n, C, F, atoms, 3)
            expected = [jnp.moveaxis(j[pairs[:, 0], ..., pairs[:, 1], :], -1, 1) for j in jacobians]
            results.append((explicit, expected))
        return results

    return jax.tree.map(np.asarray, everything(variables, positions))


@pytest.mark.parametrize("index", range(len(LAYERS)), ids=lambda i: type(LAYERS[i]()).__name__)
def test_explicit_gradients_are_derivatives(index):
    explicit, expected = _explicit_and_expected_gradients()[index]
    assert len(explicit) == len(expected) == 4
    for got, want in zip(explicit, expected):
        assert_close(got, want, rtol=0, atol=1e-12)


def test_linear_gradients_have_no_bias():
    tensor = from_metatensor(mts.load(str(data_path("spherical-expansion.mts"))))
    model = nn.Linear(out_features=2)
    params = model.init(jax.random.key(0), tensor)
    zero = eqt.TensorMap(
        tensor.keys,
        [_with_zero_gradient(b) for b in tensor.blocks()],
    )
    out = model.apply(params, zero)
    for block in out.blocks():
        assert np.all(np.asarray(block.gradient("positions").values) == 0.0)


def _with_zero_gradient(block):
    new = eqt.TensorBlock(block.values, block.samples, block.components, block.properties)
    gradient = block.gradient("positions")
    new.add_gradient(
        "positions",
        eqt.TensorBlock(
            np.zeros(gradient.values.shape),
            gradient.samples,
            gradient.components,
            gradient.properties,
        ),
    )
    return new


# ------------------------------------------------------------------ equivariance
def _random_covariant(seed: int, dtype) -> eqt.TensorMap:
    rng = np.random.default_rng(seed)
    keys = np.array([[0, 1], [1, 1], [2, 1], [0, -1], [1, -1], [3, 1]])
    samples = eqt.Labels(["system", "atom"], np.array([[0, i] for i in range(5)]))
    blocks = []
    for l, _ in keys:
        components = [eqt.Labels(["o3_mu"], np.arange(-l, l + 1).reshape(-1, 1))]
        values = rng.normal(size=(5, 2 * l + 1, 4)).astype(dtype)
        blocks.append(eqt.TensorBlock(values, samples, components, eqt.Labels.range("n", 4)))
    return eqt.TensorMap(eqt.Labels(["o3_lambda", "o3_sigma"], keys), blocks)


@pytest.mark.parametrize(
    ("dtype", "tolerance"),
    # float64 data stay float64 only with x64 on (else JAX makes them float32)
    [pytest.param(np.float64, 1e-12, marks=pytest.mark.x64_only), (np.float32, 1e-5)],
)
def test_equivariant_mlp_is_equivariant(dtype, tolerance):
    tensor = _random_covariant(0, dtype)
    model = nn.Sequential(
        [
            nn.EquivariantLinear(out_features=8),
            nn.InvariantSiLU(),
            nn.InvariantTanh(),
            nn.InvariantLayerNorm(),
            nn.EquivariantLinear(out_features=3),
        ]
    )
    params = _random_variables(model, tensor, seed=0)
    apply = jax.jit(model.apply)
    error = o3.equivariance_error(lambda x: apply(params, x), tensor, n_rotations=2)
    assert error < tolerance
    # and the layers did something to the invariants: not just the identity
    out = apply(params, tensor)
    assert out.block(o3_lambda=0, o3_sigma=1).values.dtype == dtype


def test_invariant_tanh_acts_on_pseudoscalars_only_if_odd():
    # data in the run's precision: the blocks left alone must come back bit for bit
    tensor = _random_covariant(1, FLOAT)
    pseudo = np.asarray(tensor.block(o3_lambda=0, o3_sigma=-1).values)
    out = nn.InvariantTanh().apply({}, tensor)
    assert_close(out.block(o3_lambda=0, o3_sigma=-1).values, np.tanh(pseudo))
    out = nn.InvariantSiLU().apply({}, tensor)
    np.testing.assert_array_equal(out.block(o3_lambda=0, o3_sigma=-1).values, pseudo)
    vector = np.asarray(tensor.block(o3_lambda=1, o3_sigma=1).values)
    np.testing.assert_array_equal(out.block(o3_lambda=1, o3_sigma=1).values, vector)


# ------------------------------------------------------------------ errors
def test_bias_on_covariant_block_is_refused():
    tensor = _random_covariant(2, np.float64)
    with pytest.raises(ValueError, match="covariant"):
        nn.EquivariantLinear(out_features=2, bias=[True] * len(tensor)).init(
            jax.random.key(0), tensor
        )
    l1 = eqt.Labels(["o3_lambda"], np.array([[1]]))
    with pytest.raises(ValueError, match="o3_lambda=1"):
        nn.EquivariantLinear(out_features=2, invariant_keys=l1).init(jax.random.key(0), tensor)
    pseudo = eqt.Labels(["o3_sigma"], np.array([[-1]]))
    with pytest.raises(ValueError, match=r"(pseudoscalar|covariant) block"):
        nn.EquivariantLinear(out_features=2, invariant_keys=pseudo).init(jax.random.key(0), tensor)
    # without a bias any selection is fine: the map stays linear
    nn.EquivariantLinear(out_features=2, invariant_keys=l1, bias=False).init(
        jax.random.key(0), tensor
    )
    with pytest.raises(ValueError, match="break equivariance"):
        nn.InvariantSiLU(invariant_keys=l1).apply({}, tensor)
    with pytest.raises(ValueError, match="break equivariance"):
        nn.InvariantLayerNorm(invariant_keys=l1).init(jax.random.key(0), tensor)


def test_bias_per_invariant_key():
    tensor = _random_covariant(3, np.float64)
    params = nn.EquivariantLinear(out_features=2, bias=[False]).init(jax.random.key(0), tensor)
    assert "bias" not in params["params"]
    with pytest.raises(ValueError, match="bias has 3 entries"):
        nn.EquivariantLinear(out_features=2, bias=[True] * 3).init(jax.random.key(0), tensor)


def test_clear_errors():
    tensor = _random_covariant(4, np.float64)
    with pytest.raises(ValueError, match="out_features or out_properties"):
        nn.Linear().init(jax.random.key(0), tensor)
    with pytest.raises(TypeError, match="expects a TensorMap"):
        nn.Linear(out_features=2).init(jax.random.key(0), np.ones((3, 4)))
    with pytest.raises(ValueError, match="in_features says 7"):
        nn.Linear(out_features=2, in_features=7).init(jax.random.key(0), tensor)
    with pytest.raises(ValueError, match="no dimension"):
        keys = eqt.Labels(["foo"], np.arange(len(tensor)).reshape(-1, 1))
        nn.InvariantReLU().apply({}, eqt.TensorMap(keys, tensor.blocks()))
    params = nn.Linear(out_features=2).init(jax.random.key(0), tensor)
    # parameters are bound to keys: a subset of the keys gives the same blocks
    fewer = eqt.TensorMap(tensor.keys[:2], tensor.blocks()[:2])
    full = nn.Linear(out_features=2).apply(params, tensor)
    part = nn.Linear(out_features=2).apply(params, fewer)
    for i in range(2):
        np.testing.assert_array_equal(np.asarray(part.block(i).values), full.block(i).values)
    unknown = eqt.TensorMap(eqt.Labels(tensor.keys.names, np.array([[4, 1]])), tensor.blocks()[:1])
    with pytest.raises(ValueError, match="parameters have no weights"):
        nn.Linear(out_features=2).apply(params, unknown)


def test_in_keys_allow_subsets_and_reordering():
    tensor = _random_covariant(5, np.float64)
    model = nn.EquivariantLinear(out_features=3, in_keys=tensor.keys)
    params = model.init(jax.random.key(0), tensor)
    order = [3, 0, 5]
    subset = eqt.TensorMap(tensor.keys[order], tensor.blocks_by_id(order))
    full, part = model.apply(params, tensor), model.apply(params, subset)
    for position, b in enumerate(order):
        assert_close(part.block(position).values, full.block(b).values)
    other = eqt.TensorMap(
        eqt.Labels(["o3_lambda", "o3_sigma"], np.array([[4, 1]])), [tensor.block(5)]
    )
    with pytest.raises(ValueError, match="not in in_keys"):
        model.apply(params, other)


def test_vmap_over_parameters_and_dynamic_samples():
    tensor = from_metatensor(mts.load(str(data_path("spherical-expansion.mts"))))
    model = nn.Sequential(
        [
            nn.EquivariantLinear(out_features=8),
            nn.InvariantSiLU(),
            nn.EquivariantLinear(out_features=2),
        ]
    )
    ensemble = _random_params(
        jax.eval_shape(
            jax.vmap(lambda k: model.init(k, tensor)), jax.random.split(jax.random.key(0), 3)
        ),
        seed=1,
    )

    @jax.jit
    def run(ensemble, tensor, dynamic_tensor):
        members = jax.vmap(model.apply, in_axes=(0, None))(ensemble, tensor)
        second = jax.tree_util.tree_map(lambda x: x[1], ensemble)
        return members, model.apply(second, dynamic_tensor)

    members, second = run(ensemble, tensor, tensor.to_dynamic_samples())
    for a, b in zip(members.blocks(), second.blocks()):
        assert a.values.shape == (3, *b.values.shape)
        assert_close(a.values[1], b.values, rtol=0, atol=1e-12)
        assert_close(
            a.gradient("positions").values[1], b.gradient("positions").values, rtol=0, atol=1e-12
        )


# ------------------------------------------------------------------ training
@pytest.mark.parametrize(
    "dtype",
    [
        pytest.param(np.float64, marks=pytest.mark.x64_only),
        pytest.param(np.float32, marks=SLOW_WITH_X64),
    ],
)
def test_adam_step_under_jit(dtype):
    features = _random_covariant(6, dtype)
    model = nn.Sequential(
        [
            nn.EquivariantLinear(out_features=16),
            nn.InvariantSiLU(),
            nn.EquivariantLinear(out_features=1),
        ]
    )
    init = jax.jit(model.init_with_output)
    _, params = init(jax.random.key(0), features)
    assert all(x.dtype == dtype for x in jax.tree_util.tree_leaves(params))
    # a reachable target: the same architecture with other weights
    target, _ = init(jax.random.key(1), features)
    optimizer = optax.adam(3e-2)
    opt_state = optimizer.init(params)

    @jax.jit
    def step(params, opt_state, features, target):
        def loss_fn(p):
            return nn.sum_squared_error(model.apply(p, features), target)

        loss, grads = jax.value_and_grad(loss_fn)(params)
        updates, opt_state = optimizer.update(grads, opt_state)
        return optax.apply_updates(params, updates), opt_state, loss

    losses = []
    for _ in range(40):
        params, opt_state, loss = step(params, opt_state, features, target)
        losses.append(float(loss))
    assert losses[-1] < 0.2 * losses[0]
    assert loss.dtype == dtype
    assert all(x.dtype == dtype for x in jax.tree_util.tree_leaves(params))
    assert step._cache_size() == 1
