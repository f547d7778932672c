"""Clebsch-Gordan tensor products: eqx_tensor against e3nn-jax and e3nn (torch).

Three suites, all float32, all contenders in one run (``--suites`` picks some):

``fully_connected`` (forward only, weights shared by all samples)
    ``8x0e+8x0o+16x1e+16x1o+8x2e+8x2o`` times ``0e+1o+2e+3o`` (e.g. node features times edge
    spherical harmonics), fully connected ("uvw") into the *same irreps as the first input*, for
    batches of 4096 and 32768 samples. All frameworks use e3nn's normalisation (component irreps,
    element paths), so they compute the same function (``tests/test_tensor_product_kernel.py``
    checks ours against e3nn-jax to 1e-12).

``channelwise`` (4096 samples, per-sample weights, forward and forward+backward)
    The "uvu" product of point convolutions: every path keeps the channels of the first input
    (``mul2 = 1``) and each output channel is multiplied by its own per-sample weight (e.g. from
    a radial network on each edge); no output filter. Two workloads:

    - ``gate_points``: ``8x0e+8x0o+16x1e+16x1o+8x2e+8x2o`` x ``0e+1o+2e+3o`` (the convolution of
      e3nn's ``gate_points_2101`` network): 56 paths, 608 weights per sample;
    - ``tutorial_002``: ``0e+1o+2e+3o+4e+5o`` x ``0e+1o+2e+3o+4e+5o`` (the symmetric-tensor
      tutorial, ``lmax = 5``): 146 paths, 146 weights per sample.

    ``forward`` returns the output blocks; ``fwd+bwd`` is ``jax.value_and_grad`` of
    ``sum(sin(out))`` with respect to the first input and the weights.

``train_step`` (eqx_tensor only: e3nn-jax has no such network)
    Compile time, and run time, of the first jitted optax Adam step (``optax.adam(1e-3)``, MSE
    to random per-atom targets, ``atomistic.neighbor_list`` inside the step) of

    - ``gate_points``: ``nn.GatePointsNetwork(reduce_output=False)`` (every other setting
      default) on 32 frames of 12 particles at random planar positions in a 2.4 x 2.4 square,
      joined into one ``Systems`` (``join_systems``), pairs within 3.5 in ``32 * 132`` slots;
    - ``tutorial_002``: the tutorial's network (``irreps_hidden`` all of ``0e..5o``, output
      ``0e+1o+2e+3o+4e+5o``, ``lmax = 5``, ``max_radius = 3``) on the 4 corners of a unit
      square in the ``z = 0`` plane.

    The timed step is compiled as ``jax.jit`` compiles it by default; the table also gives the
    compile seconds of the same step with ``compiler_options=eqx_tensor.compiler_options()``.

Contenders, each in its own worker process (see ``benchmarks/_common.py``):

- ``eqx_tensor``: ``eqx_tensor.o3.tensor_product(plan, x1, x2, weights, method=...)`` under
  ``jax.jit``, blocks in the metatensor layout ``(batch, 2l+1, mul)``. Methods ``fused`` (the
  reference of the ratios), ``unrolled`` and ``dense`` for the fully connected suite;
  ``fused``, ``compact`` and ``dense`` for the channel-wise one (``unrolled`` there only with
  ``--with-unrolled``, and only for ``gate_points``: at ``lmax = 5`` it compiles for minutes).
  At these batch sizes ``method="auto"`` takes ``fused`` for the gate_points channel-wise
  product and ``dense`` for the others; ``compact`` is its choice for small calls (at most
  ``2**22`` multiply-adds, as in the tutorial-002 train step). This worker also times a float32
  ``jnp`` matrix product with the same FLOP count as the fully connected product, the
  machine's reference speed, and runs the ``train_step`` suite.
- ``e3nn_jax``, jitted: fully connected: ``e3nn_jax.tensor_product`` followed by
  ``e3nn_jax.flax.Linear`` (the documented haiku-free route), and the legacy
  ``e3nn_jax.legacy.FunctionalFullyConnectedTensorProduct`` (vmapped). Channel-wise:
  ``e3nn_jax.tensor_product(x1, x2) * weights``, the full product of ``IrrepsArray`` s times a
  ``(batch, num_irreps)`` array of per-channel weights, as NequIP / e3nn-jax user code writes a
  weighted convolution (the legacy ``FunctionalTensorProduct`` with ``uvu`` instructions is
  the older route to the same function).
- ``e3nn_torch`` (fully connected suite only): ``e3nn.o3.FullyConnectedTensorProduct`` under
  ``torch.no_grad``, as many threads as cores, ``OMP_WAIT_POLICY=PASSIVE``.

Compile times are trace + lower + compile of the jitted function (``jit(f).lower(...).compile()``),
reported apart from the run times (medians of interleaved rounds). The targets printed beside
the channel-wise and train-step figures are the project's goals for the default method.

FLOPs of the fully connected suite are counted in useful multiply-adds (x2), skipping zero
Clebsch-Gordan entries, in two ways: ``kernel``: the work of the factored contraction (CG
products of every path, then one weight matrix per output), and ``per_path``: non-zero CG
entries times all multiplicities (``mul1 mul2 mul_out``) of each path, the count of the direct
per-path contraction.

    python benchmarks/tensor_product.py [--quick] [--device cpu|gpu] [--with-unrolled]
        [--suites fully_connected channelwise train_step] [--batch 4096 32768] [--samples 4096]

writes ``benchmarks/results/tensor_product.json`` (``tensor_product_quick.json`` with
``--quick``, a fast smoke run for CI; ``tensor_product_gpu.json`` on the GPU). The machine may be
shared: the load average at the start and the end of the run is printed and stored.
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make `benchmarks._common` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import (
    RESULTS_DIR,
    Case,
    Worker,
    adam_step,
    alternate,
    format_table,
    n_params,
    serve,
    summarize,
    write_json,
)

IRREPS_IN1 = "8x0e+8x0o+16x1e+16x1o+8x2e+8x2o"
IRREPS_IN2 = "0e+1o+2e+3o"
IRREPS_OUT = IRREPS_IN1
TUTORIAL_IRREPS = "0e+1o+2e+3o+4e+5o"
# channel-wise workloads: (irreps_in1, irreps_in2), every output kept
CHANNELWISE = {
    "gate_points": (IRREPS_IN1, IRREPS_IN2),
    "tutorial_002": (TUTORIAL_IRREPS, TUTORIAL_IRREPS),
}
PASSES = ("forward", "fwd+bwd")
SUITES = ("fully_connected", "channelwise", "train_step")
WORKERS = ("eqx_tensor", "e3nn_jax", "e3nn_torch")
WORKER_SUITES = {  # the suites each worker has cases for: others are not started
    "eqx_tensor": set(SUITES),
    "e3nn_jax": {"fully_connected", "channelwise"},
    "e3nn_torch": {"fully_connected"},
}
# OpenMP threads that spin while waiting collapse (10x, measured) when other processes share
# the cores; passive waiting keeps torch at its unloaded speed on a busy machine
WORKER_ENV = {"e3nn_torch": {"OMP_WAIT_POLICY": "PASSIVE"}}
JAX_PLATFORMS = {"cpu": "cpu", "gpu": "cuda"}
REFERENCE = ("eqx_tensor", "fused")  # the case the ratios are taken against (default method)

# the project's goals for the default method, seconds
KERNEL_TARGETS = {
    "gate_points": {"compile_s": 2.0, "fwd+bwd_s": 0.035},
    "tutorial_002": {"compile_s": 5.0, "fwd+bwd_s": 0.020},
}
TRAIN_TARGETS = {"gate_points": 3.0, "tutorial_002": 10.0}  # compile of the first step

# train_step suite
GATE_POINTS_FRAMES, GATE_POINTS_PARTICLES, GATE_POINTS_BOX = 32, 12, 2.4
GATE_POINTS_CUTOFF = 3.5  # the network's default max_radius
TUTORIAL_NETWORK = {
    "irreps_in": None,
    "irreps_hidden": "0e+0o+1e+1o+2e+2o+3e+3o+4e+4o+5e+5o",
    "irreps_out": TUTORIAL_IRREPS,
    "lmax": 5,
    "layers": 3,
    "max_radius": 3.0,
    "number_of_basis": 10,
    "radial_layers": 1,
    "radial_neurons": 100,
    "num_neighbors": 3,
    "num_nodes": 4,
    "reduce_output": False,
}


def _keyed(irreps: str) -> tuple:
    """``((l, sigma), mul)`` of an e3nn irreps string."""
    import e3nn_jax as e3nn

    from eqx_tensor.o3 import irrep_to_key

    return tuple((irrep_to_key(str(ir)), mul) for mul, ir in e3nn.Irreps(irreps))


def _plan():
    """The fully connected product of the ``fully_connected`` suite."""
    from eqx_tensor.o3 import tensor_product_plan

    return tensor_product_plan(
        _keyed(IRREPS_IN1), _keyed(IRREPS_IN2), irreps_out=_keyed(IRREPS_OUT)
    )


def _channelwise_plan(workload: str):
    """The channel-wise product of a ``channelwise`` workload, no output filter."""
    from eqx_tensor.o3 import tensor_product_plan

    irreps1, irreps2 = CHANNELWISE[workload]
    return tensor_product_plan(_keyed(irreps1), _keyed(irreps2), "channelwise")


def multiply_adds() -> dict[str, int]:
    """Useful multiply-adds per sample of the fully connected workload (see module docstring)."""
    counts = _plan().multiply_adds()
    return {"kernel": counts["total"], "per_path": counts["per_path"]}


def matmul_size(batch: int) -> int:
    """Side of the square matmul with the tensor product's FLOPs (kernel count), multiple of 32."""
    flops = multiply_adds()["kernel"] * batch
    return max(128, 32 * round((flops ** (1 / 3)) / 32))


def _jax_case(function: Callable, *args, info: dict | None = None) -> Case:
    """Jit-compile ``function(*args)`` (timed: trace + lower + compile) into a blocking Case."""
    import jax

    start = time.perf_counter()
    compiled = jax.jit(function).lower(*args).compile()
    compile_s = time.perf_counter() - start
    return Case(
        run=lambda: jax.block_until_ready(compiled(*args)),
        info={**(info or {}), "compile_s": compile_s},
    )


def _sum_sin(outputs) -> object:
    """``sum(sin(out))`` over every output array (a dict of blocks or one array)."""
    import jax
    import jax.numpy as jnp

    return sum(jnp.sum(jnp.sin(x)) for x in jax.tree_util.tree_leaves(outputs))


def _random_blocks(rng, irreps: tuple, batch: int) -> dict:
    """``{key: (batch, 2l+1, mul)}`` float32 standard normal blocks."""
    import jax.numpy as jnp

    return {
        key: jnp.asarray(rng.normal(size=(batch, 2 * key[0] + 1, mul)), jnp.float32)
        for key, mul in irreps
    }


# ------------------------------------------------------------------------------ eqx_tensor
def build_eqx_tensor(args: argparse.Namespace) -> dict[str, Case]:
    """Our kernels, the reference matmul and the train steps of the selected suites."""
    import jax

    cases = {}
    if "fully_connected" in args.suites:
        cases.update(_eqx_fully_connected(args.batch))
    if "channelwise" in args.suites:
        cases.update(_eqx_channelwise(args.samples, args.with_unrolled))
    if "train_step" in args.suites:
        frames = 4 if args.quick else GATE_POINTS_FRAMES
        cases["train:gate_points"] = _train_gate_points(frames)
        cases["train:tutorial_002"] = _train_tutorial()
    for case in cases.values():
        case.info["versions"] = {"jax": jax.__version__}
        case.info["backend"] = jax.default_backend()
    return cases


def _eqx_fully_connected(batches: list[int]) -> dict[str, Case]:
    """The fully connected product with every method, and the reference matmul, per batch."""
    import jax.numpy as jnp
    import numpy as np

    from eqx_tensor.o3 import tensor_product

    plan = _plan()
    rng = np.random.default_rng(0)
    weights = jnp.asarray(rng.normal(size=plan.n_weights), jnp.float32)
    cases = {}
    for batch in batches:
        x1 = _random_blocks(rng, plan.irreps_in1, batch)
        x2 = _random_blocks(rng, plan.irreps_in2, batch)
        info = {"suite": "fully_connected", "batch": batch}
        for method in ("fused", "unrolled", "dense"):
            cases[f"{method}/{batch}"] = _jax_case(
                lambda x1, x2, w, method=method: tensor_product(plan, x1, x2, w, method=method),
                x1,
                x2,
                weights,
                info={**info, "method": method},
            )
        n = matmul_size(batch)
        a = jnp.asarray(rng.normal(size=(n, n)), jnp.float32)
        cases[f"matmul/{batch}"] = _jax_case(jnp.matmul, a, a, info={**info, "n": n})
    return cases


def _eqx_channelwise(samples: int, with_unrolled: bool) -> dict[str, Case]:
    """Channel-wise products with per-sample weights: forward and forward+backward per method."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    from eqx_tensor.o3 import tensor_product

    rng = np.random.default_rng(1)
    cases = {}
    for workload in CHANNELWISE:
        plan = _channelwise_plan(workload)
        x1 = _random_blocks(rng, plan.irreps_in1, samples)
        x2 = _random_blocks(rng, plan.irreps_in2, samples)
        weights = jnp.asarray(rng.normal(size=(samples, plan.n_weights)), jnp.float32)
        methods = ["fused", "compact", "dense"]
        if with_unrolled and workload == "gate_points":
            methods.append("unrolled")
        for method in methods:

            def forward(x1, x2, w, plan=plan, method=method):
                return tensor_product(plan, x1, x2, w, method=method)

            def loss(x1, x2, w, forward=forward):
                return _sum_sin(forward(x1, x2, w))

            functions = {"forward": forward, "fwd+bwd": jax.value_and_grad(loss, argnums=(0, 2))}
            for pass_, function in functions.items():
                info = {
                    "suite": "channelwise",
                    "workload": workload,
                    "method": method,
                    "pass": pass_,
                    "batch": samples,
                    "paths": len(plan.paths),
                    "n_weights": plan.n_weights,
                    "multiply_adds_per_sample": plan.multiply_adds()["total"],
                }
                cases[f"{workload}:{method}:{pass_}/{samples}"] = _jax_case(
                    function, x1, x2, weights, info=info
                )
        # the loss alone, on output-sized arrays: the floor under every contender's fwd+bwd
        # (sin and cos of every output entry are memory- and transcendental-bound)
        shapes = jax.eval_shape(functools.partial(tensor_product, plan), x1, x2, weights)
        outputs = {
            key: jnp.asarray(rng.normal(size=shape.shape), jnp.float32)
            for key, shape in shapes.items()
        }
        info = {"suite": "channelwise", "workload": workload, "method": "sum(sin)"}
        info.update({"pass": "fwd+bwd", "batch": samples, "reference": True})
        cases[f"{workload}:sum_sin:fwd+bwd/{samples}"] = _jax_case(
            jax.value_and_grad(_sum_sin), outputs, info=info
        )
    return cases


def _adam_train_case(model, systems, cutoff: float, capacity: int, rng) -> Case:
    """Init ``model``, then compile (timed) and wrap one jitted Adam step, MSE to random targets.

    The neighbour list is built inside the step, as a training loop over changing positions
    needs. ``info`` gets the seconds of the (jitted) init and of the step's compile, the
    parameter count and the pair count.
    """
    import jax
    import jax.numpy as jnp

    from eqx_tensor import compiler_options
    from eqx_tensor.atomistic import neighbor_list

    pairs = neighbor_list(systems, cutoff, capacity=capacity)
    start = time.perf_counter()
    # as a user calls it: the layers' init is one compiled program (nn.Compiled)
    params = jax.block_until_ready(model.init(jax.random.key(0), systems, pairs))
    init_s = time.perf_counter() - start
    output = jax.eval_shape(model.apply, params, systems, pairs)
    shapes = [block.values.shape for block in output.blocks()]
    targets = [jnp.asarray(rng.normal(size=shape), jnp.float32) for shape in shapes]

    def loss_fn(params, systems, targets):
        pairs = neighbor_list(systems, cutoff, capacity=capacity)
        blocks = model.apply(params, systems, pairs).blocks()
        squared = sum(jnp.sum((b.values - t) ** 2) for b, t in zip(blocks, targets))
        return squared / sum(t.size for t in targets)

    optimizer, step = adam_step(loss_fn)
    opt_state = optimizer.init(params)

    info = {
        "suite": "train_step",
        "init_s": init_s,
        "n_params": n_params(params),
        "n_atoms": systems.n_atoms,
        "n_systems": systems.n_systems,
        "n_pairs": int(pairs.n_pairs),
        "pair_capacity": capacity,
        "cutoff": cutoff,
    }
    if int(pairs.n_pairs) > capacity:
        raise RuntimeError(f"neighbour list overflow: {int(pairs.n_pairs)} > {capacity} pairs")
    # the same program compiled with eqx_tensor.compiler_options(): compile seconds only
    start = time.perf_counter()
    options = compiler_options()
    jax.jit(step, compiler_options=options).lower(params, opt_state, systems, targets).compile()
    info["compile_with_options_s"] = time.perf_counter() - start
    info["compiler_options"] = options
    # the same (params, state) every call: each timed call is one step from the same point
    return _jax_case(step, params, opt_state, systems, targets, info=info)


def _train_gate_points(frames: int) -> Case:
    """``GatePointsNetwork(reduce_output=False)`` on ``frames`` frames of 12 planar particles."""
    import jax.numpy as jnp
    import numpy as np

    from eqx_tensor import nn
    from eqx_tensor.atomistic import Systems, join_systems

    rng = np.random.default_rng(2)
    n = GATE_POINTS_PARTICLES
    frame_systems = []
    for _ in range(frames):
        positions = np.zeros((n, 3), np.float32)
        positions[:, :2] = rng.uniform(0.0, GATE_POINTS_BOX, size=(n, 2))
        frame_systems.append(Systems.from_arrays(jnp.asarray(positions)))
    systems = join_systems(frame_systems)
    model = nn.GatePointsNetwork(reduce_output=False)
    # every particle of a frame is within the cutoff of every other (box diagonal 3.39 < 3.5)
    case = _adam_train_case(model, systems, GATE_POINTS_CUTOFF, frames * n * (n - 1), rng)
    case.info.update(network="gate_points", frames=frames, particles=n)
    return case


def _train_tutorial() -> Case:
    """The tutorial-002 network on the 4 corners of a unit square (z = 0)."""
    import jax.numpy as jnp
    import numpy as np

    from eqx_tensor import nn
    from eqx_tensor.atomistic import Systems

    rng = np.random.default_rng(3)
    square = np.array([[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0]], np.float32)
    systems = Systems.from_arrays(jnp.asarray(square))
    model = nn.GatePointsNetwork(**TUTORIAL_NETWORK)
    case = _adam_train_case(model, systems, TUTORIAL_NETWORK["max_radius"], 4 * 3, rng)
    case.info.update(network="tutorial_002", frames=1, particles=4)
    return case


# ------------------------------------------------------------------------------ e3nn-jax
def build_e3nn_jax(args: argparse.Namespace) -> dict[str, Case]:
    """e3nn-jax's counterparts of the fully connected and channel-wise suites."""
    import e3nn_jax as e3nn
    import jax

    cases = {}
    if "fully_connected" in args.suites:
        cases.update(_e3nn_jax_fully_connected(args.batch))
    if "channelwise" in args.suites:
        cases.update(_e3nn_jax_channelwise(args.samples))
    for case in cases.values():
        case.info["versions"] = {"jax": jax.__version__, "e3nn_jax": e3nn.__version__}
        case.info["backend"] = jax.default_backend()
    return cases


def _e3nn_jax_fully_connected(batches: list[int]) -> dict[str, Case]:
    """tensor_product + flax Linear, and the legacy functional FCTP."""
    import e3nn_jax as e3nn
    import jax
    import jax.numpy as jnp
    from e3nn_jax.legacy import FunctionalFullyConnectedTensorProduct

    irreps1, irreps2, irreps_out = map(e3nn.Irreps, (IRREPS_IN1, IRREPS_IN2, IRREPS_OUT))
    linear = e3nn.flax.Linear(irreps_out)
    fctp = FunctionalFullyConnectedTensorProduct(irreps1, irreps2, irreps_out)
    key = jax.random.key(0)
    fctp_weights = [
        jax.random.normal(jax.random.fold_in(key, i), ins.path_shape, jnp.float32)
        for i, ins in enumerate(fctp.instructions)
    ]

    def products(x1, x2):
        return e3nn.tensor_product(x1, x2, filter_ir_out=[ir for _, ir in irreps_out])

    def tp_linear(params, x1, x2):
        return linear.apply(params, products(x1, x2)).array

    def legacy(weights, x1, x2):
        return jax.vmap(lambda a, b: fctp.left_right(weights, a, b).array)(x1, x2)

    cases = {}
    for batch in batches:
        x1 = e3nn.normal(irreps1, jax.random.fold_in(key, 1), (batch,), dtype=jnp.float32)
        x2 = e3nn.normal(irreps2, jax.random.fold_in(key, 2), (batch,), dtype=jnp.float32)
        params = linear.init(jax.random.fold_in(key, 3), products(x1[:1], x2[:1]))
        info = {"suite": "fully_connected", "batch": batch}
        cases[f"tp+linear/{batch}"] = _jax_case(tp_linear, params, x1, x2, info=info)
        cases[f"legacy_fctp/{batch}"] = _jax_case(legacy, fctp_weights, x1, x2, info=info)
    return cases


def _e3nn_jax_channelwise(samples: int) -> dict[str, Case]:
    """``e3nn.tensor_product(x1, x2) * weights``: forward and forward+backward per workload."""
    import e3nn_jax as e3nn
    import jax
    import jax.numpy as jnp

    key = jax.random.key(1)
    cases = {}
    for index, (workload, (irreps1, irreps2)) in enumerate(CHANNELWISE.items()):
        key1, key2, key3 = jax.random.split(jax.random.fold_in(key, index), 3)
        x1 = e3nn.normal(irreps1, key1, (samples,), dtype=jnp.float32)
        x2 = e3nn.normal(irreps2, key2, (samples,), dtype=jnp.float32)
        irreps_out = e3nn.tensor_product(x1.irreps, x2.irreps)
        plan = _channelwise_plan(workload)
        # the same function as ours: one output channel (and weight) per channel of each path
        if irreps_out.num_irreps != plan.n_weights:
            raise RuntimeError(
                f"{workload}: e3nn-jax has {irreps_out.num_irreps} output channels, "
                f"we have {plan.n_weights}"
            )
        weights = jax.random.normal(key3, (samples, irreps_out.num_irreps), jnp.float32)

        def forward(x1, x2, w):
            # (batch, num_irreps) times an IrrepsArray: channel u of every irrep times w[:, u]
            return (e3nn.tensor_product(x1, x2) * w).array

        def loss(x1, x2, w, forward=forward):
            return _sum_sin(forward(x1, x2, w))

        functions = {"forward": forward, "fwd+bwd": jax.value_and_grad(loss, argnums=(0, 2))}
        for pass_, function in functions.items():
            info = {
                "suite": "channelwise",
                "workload": workload,
                "method": "tp*weights",
                "pass": pass_,
                "batch": samples,
                "paths": len(plan.paths),
                "n_weights": int(irreps_out.num_irreps),
            }
            cases[f"{workload}:tp*weights:{pass_}/{samples}"] = _jax_case(
                function, x1, x2, weights, info=info
            )
    return cases


# ------------------------------------------------------------------------------ e3nn (torch)
def build_e3nn_torch(args: argparse.Namespace) -> dict[str, Case]:
    """e3nn (torch): o3.FullyConnectedTensorProduct, forward without autograd."""
    import e3nn
    import torch
    from e3nn import o3

    if "fully_connected" not in args.suites:
        return {}
    if args.device == "gpu" and not torch.cuda.is_available():
        print("e3nn_torch: this torch has no CUDA device, no torch cases", file=sys.stderr)
        return {}
    device = torch.device("cuda" if args.device == "gpu" else "cpu")
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    torch.set_num_threads(os.cpu_count() or 1)
    torch.manual_seed(0)
    cases = {}
    for batch in args.batch:
        start = time.perf_counter()
        tp = o3.FullyConnectedTensorProduct(IRREPS_IN1, IRREPS_IN2, IRREPS_OUT).to(device)
        x1 = torch.randn(batch, tp.irreps_in1.dim, device=device)
        x2 = torch.randn(batch, tp.irreps_in2.dim, device=device)

        def run(tp=tp, x1=x1, x2=x2):
            with torch.no_grad():
                out = tp(x1, x2)
            sync()
            return out

        run()  # construction (code generation) plus the first call is torch's "compile"
        info = {
            "suite": "fully_connected",
            "batch": batch,
            "compile_s": time.perf_counter() - start,
            "threads": torch.get_num_threads(),
            "backend": device.type,
            "versions": {"torch": torch.__version__, "e3nn": e3nn.__version__},
        }
        cases[f"fctp/{batch}"] = Case(run=run, info=info)
    return cases


BUILDERS = {
    "eqx_tensor": build_eqx_tensor,
    "e3nn_jax": build_e3nn_jax,
    "e3nn_torch": build_e3nn_torch,
}


# ------------------------------------------------------------------------------ reports
def _report(stats: dict, infos: dict, batches: list[int]) -> tuple[str, list[dict]]:
    """Fully connected suite: table and JSON rows (times, GFLOP/s, % of matmul, vs ours)."""
    counts = multiply_adds()
    rows, table = [], []
    for batch in batches:
        matmul = stats.get(("eqx_tensor", f"matmul/{batch}"))
        matmul_gflops = None
        if matmul is not None:
            n = infos[("eqx_tensor", f"matmul/{batch}")]["n"]
            matmul_gflops = 2 * n**3 / matmul["median_s"] / 1e9
        reference = stats.get((REFERENCE[0], f"{REFERENCE[1]}/{batch}"))
        for (worker, case), stat in stats.items():
            info = infos[(worker, case)]
            if info.get("suite") != "fully_connected" or info["batch"] != batch:
                continue
            name = case.rsplit("/", 1)[0]
            if name == "matmul":
                continue
            gflops = {
                count: 2 * per_sample * batch / stat["median_s"] / 1e9
                for count, per_sample in counts.items()
            }
            row = {
                "framework": worker,
                "case": name,
                "batch": batch,
                **stat,
                "compile_s": info["compile_s"],
                "gflops": gflops,
                "matmul_gflops": matmul_gflops,
                "fraction_of_matmul": (
                    {k: v / matmul_gflops for k, v in gflops.items()} if matmul_gflops else None
                ),
                # > 1: our kernel is that many times faster than this contender
                "time_over_ours": stat["median_s"] / reference["median_s"] if reference else None,
                "info": info,
            }
            rows.append(row)
            fraction = row["fraction_of_matmul"] or {}
            table.append(
                [
                    f"{worker}:{name}",
                    batch,
                    stat["median_s"] * 1e3,
                    f"{stat['q1_s'] * 1e3:.3g}-{stat['q3_s'] * 1e3:.3g}",
                    row["compile_s"],
                    gflops["kernel"],
                    f"{100 * fraction['kernel']:.0f}%" if fraction else "-",
                    gflops["per_path"],
                    f"{100 * fraction['per_path']:.0f}%" if fraction else "-",
                    f"{row['time_over_ours']:.2f}x" if reference else "-",
                ]
            )
        if matmul_gflops is not None:
            n = infos[("eqx_tensor", f"matmul/{batch}")]["n"]
            name = f"jnp.matmul {n}x{n}"
            table.append([name, batch, matmul["median_s"] * 1e3, "", "", matmul_gflops, *"----"])
    headers = [
        "contender",
        "batch",
        "median ms",
        "IQR ms",
        "compile s",
        "GFLOP/s kernel",
        "of matmul",
        "GFLOP/s per-path",
        "of matmul",
        "time / ours",
    ]
    return format_table(headers, table), rows


def _verdict(value: float, target: float, label: str) -> str:
    """``"compile<2s met"`` or ``"... MISSED"``."""
    return f"{label} {'met' if value < target else 'MISSED'}"


def _report_channelwise(stats: dict, infos: dict) -> tuple[str, list[dict]]:
    """Channel-wise suite: per workload and pass, times, compile, ratio to ours, targets."""
    selected = [key for key in stats if infos[key].get("suite") == "channelwise"]
    rows, table = [], []
    for workload in CHANNELWISE:
        for pass_ in PASSES:
            keys = [
                k
                for k in selected
                if infos[k]["workload"] == workload and infos[k]["pass"] == pass_
            ]
            reference = next(
                (stats[k] for k in keys if k[0] == REFERENCE[0] and infos[k]["method"] == "fused"),
                None,
            )
            for key in keys:
                stat, info = stats[key], infos[key]
                targets = KERNEL_TARGETS[workload]
                verdicts = []
                if key[0] == "eqx_tensor" and not info.get("reference"):
                    verdicts.append(
                        _verdict(
                            info["compile_s"],
                            targets["compile_s"],
                            f"compile<{targets['compile_s']:g}s",
                        )
                    )
                    if pass_ == "fwd+bwd":
                        verdicts.append(
                            _verdict(
                                stat["median_s"],
                                targets["fwd+bwd_s"],
                                f"run<{1e3 * targets['fwd+bwd_s']:g}ms",
                            )
                        )
                ratio = stat["median_s"] / reference["median_s"] if reference else None
                rows.append(
                    {
                        "framework": key[0],
                        "case": key[1].rsplit("/", 1)[0],
                        "workload": workload,
                        "method": info["method"],
                        "pass": pass_,
                        "batch": info["batch"],
                        **stat,
                        "compile_s": info["compile_s"],
                        "time_over_ours": ratio,
                        "targets": verdicts,
                        "info": info,
                    }
                )
                table.append(
                    [
                        f"{'jnp' if info.get('reference') else key[0]}:{info['method']}",
                        workload,
                        pass_,
                        info["batch"],
                        stat["median_s"] * 1e3,
                        f"{stat['q1_s'] * 1e3:.3g}-{stat['q3_s'] * 1e3:.3g}",
                        info["compile_s"],
                        f"{ratio:.2f}x" if ratio is not None else "-",
                        ", ".join(verdicts) or "-",
                    ]
                )
    headers = [
        "contender",
        "workload",
        "pass",
        "samples",
        "median ms",
        "IQR ms",
        "compile s",
        "time / ours",
        "target (ours)",
    ]
    return format_table(headers, table), rows


def _report_train(stats: dict, infos: dict) -> tuple[str, list[dict]]:
    """Train-step suite: init and compile seconds, step time, compile target."""
    rows, table = [], []
    for key, stat in stats.items():
        info = infos[key]
        if info.get("suite") != "train_step":
            continue
        target = TRAIN_TARGETS[info["network"]]
        verdict = _verdict(info["compile_s"], target, f"compile<{target:g}s")
        rows.append({"framework": key[0], "case": key[1], **stat, "target": verdict, "info": info})
        table.append(
            [
                f"{key[0]}:{info['network']}",
                f"{info['frames']}x{info['particles']}",
                f"{info['n_pairs']}/{info['pair_capacity']}",
                info["n_params"],
                info["init_s"],
                info["compile_s"],
                info["compile_with_options_s"],
                stat["median_s"] * 1e3,
                f"{stat['q1_s'] * 1e3:.3g}-{stat['q3_s'] * 1e3:.3g}",
                verdict,
            ]
        )
    headers = [
        "network",
        "frames x atoms",
        "pairs/slots",
        "params",
        "init s",
        "compile s",
        "with compiler_options s",
        "step ms",
        "IQR ms",
        "target",
    ]
    return format_table(headers, table), rows


def _load() -> str:
    """The 1, 5 and 15 minute load averages, or ``"n/a"``."""
    if not hasattr(os, "getloadavg"):
        return "n/a"
    return ", ".join(f"{value:.2f}" for value in os.getloadavg())


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--suites", nargs="+", choices=SUITES, default=list(SUITES))
    parser.add_argument(
        "--batch", type=int, nargs="+", default=[4096, 32768], help="fully connected batches"
    )
    parser.add_argument("--samples", type=int, default=4096, help="channel-wise batch")
    parser.add_argument("--rounds", type=int, default=7, help="interleaved timing rounds")
    parser.add_argument("--repeats", type=int, default=3, help="timed calls per case and round")
    parser.add_argument("--frameworks", nargs="+", choices=WORKERS, default=list(WORKERS))
    parser.add_argument("--device", choices=tuple(JAX_PLATFORMS), default="cpu")
    parser.add_argument(
        "--with-unrolled",
        action="store_true",
        help="also the unrolled method on the gate_points channel-wise product (slow compile)",
    )
    parser.add_argument(
        "--quick", action="store_true", help="small batches, few rounds (CI smoke test)"
    )
    parser.add_argument("--output", type=Path, default=None)
    parser.add_argument("--worker", choices=WORKERS, help=argparse.SUPPRESS)
    return parser


def main() -> None:
    args = _parser().parse_args()
    if args.quick:
        args.batch, args.samples, args.rounds, args.repeats = [512], 512, 2, 2
    if args.worker:
        serve(lambda: BUILDERS[args.worker](args))
        return

    load_start = _load()
    suffix = ("_quick" if args.quick else "") + ("_gpu" if args.device == "gpu" else "")
    output = args.output or RESULTS_DIR / f"tensor_product{suffix}.json"
    forwarded = [
        *("--suites", *args.suites),
        *("--batch", *map(str, args.batch)),
        *("--samples", str(args.samples)),
        *("--device", args.device),
        *(["--with-unrolled"] if args.with_unrolled else []),
        *(["--quick"] if args.quick else []),
    ]
    env_jax = {"JAX_PLATFORMS": JAX_PLATFORMS[args.device]}
    workers = []
    try:
        for name in args.frameworks:
            if not WORKER_SUITES[name] & set(args.suites):
                continue
            print(f"starting {name} worker (builds and compiles its cases)...", flush=True)
            argv = [sys.executable, __file__, "--worker", name, *forwarded]
            env = {**WORKER_ENV.get(name, {}), **(env_jax if name != "e3nn_torch" else {})}
            workers.append(Worker(name, argv, env=env))
        cases = [(worker, case) for worker in workers for case in worker.cases]
        # torch's scripted graph is re-optimised during its first calls: warm up at least 3
        times = (
            alternate(cases, rounds=args.rounds, repeats=args.repeats, warmup=3) if cases else {}
        )
    finally:
        for worker in workers:
            worker.close()

    stats = {key: summarize(values) for key, values in times.items()}
    infos = {(worker.name, case): info for worker in workers for case, info in worker.cases.items()}
    load_end = _load()
    payload = {
        "benchmark": "tensor_product",
        "dtype": "float32",
        "device": args.device,
        "rounds": args.rounds,
        "repeats": args.repeats,
        "load_average_start_1_5_15min": load_start,
    }
    print(
        f"\nfloat32, {args.device}; medians of {args.rounds} rounds x {args.repeats} calls; "
        f"'time / ours' > 1 means ours ({REFERENCE[0]}:{REFERENCE[1]}) is faster\n"
        f"load average (1, 5, 15 min): {load_start} at the start, {load_end} at the end"
    )
    if "fully_connected" in args.suites:
        table, rows = _report(stats, infos, args.batch)
        counts = multiply_adds()
        print(
            f"\n== fully connected: {IRREPS_IN1} x {IRREPS_IN2} -> {IRREPS_OUT}, shared weights, "
            f"forward\nuseful multiply-adds per sample: kernel {counts['kernel']}, "
            f"per-path {counts['per_path']}\n"
        )
        print(table)
        payload["fully_connected"] = {
            "irreps_in1": IRREPS_IN1,
            "irreps_in2": IRREPS_IN2,
            "irreps_out": IRREPS_OUT,
            "mode": "fully_connected",
            "multiply_adds_per_sample": counts,
            "results": rows,
        }
    if "channelwise" in args.suites:
        table, rows = _report_channelwise(stats, infos)
        workloads = "; ".join(
            f"{name}: {a} x {b}, {len(_channelwise_plan(name).paths)} paths, "
            f"{_channelwise_plan(name).n_weights} weights"
            for name, (a, b) in CHANNELWISE.items()
        )
        print(
            f"\n== channel-wise (uvu), per-sample weights, all outputs; fwd+bwd: value_and_grad "
            f"of sum(sin(out)) w.r.t. x1 and weights\n{workloads}\n"
        )
        print(table)
        payload["channelwise"] = {
            "workloads": {name: list(pair) for name, pair in CHANNELWISE.items()},
            "targets": KERNEL_TARGETS,
            "results": rows,
        }
    if "train_step" in args.suites:
        table, rows = _report_train(stats, infos)
        print("\n== first jitted Adam train step (neighbour list inside), MSE to random targets\n")
        print(table)
        payload["train_step"] = {
            "targets_compile_s": TRAIN_TARGETS,
            "tutorial_002_network": TUTORIAL_NETWORK,
            "results": rows,
        }
    path = write_json(output, payload)
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
