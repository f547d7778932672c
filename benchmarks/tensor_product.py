"""Fully connected Clebsch-Gordan tensor product: eqx_tensor against e3nn-jax and e3nn (torch).

Workload (float32, CPU, forward only, weights shared by all samples):
``8x0e+8x0o+16x1e+16x1o+8x2e+8x2o`` times ``0e+1o+2e+3o`` (e.g. node features times edge
spherical harmonics), fully connected ("uvw") into the *same irreps as the first input*,
``8x0e+8x0o+16x1e+16x1o+8x2e+8x2o``, for batches of 4096 and 32768 samples. All frameworks use
e3nn's normalisation (component irreps, element paths), so they compute the same function
(``tests/test_tensor_product_kernel.py`` checks ours against e3nn-jax to 1e-12).

Contenders, each in its own worker process (see ``benchmarks/_common.py``):

- ``eqx_tensor``: ``eqx_tensor.o3._tensor_product.tensor_product`` under ``jax.jit``, blocks in
  the metatensor layout ``(batch, 2l+1, mul)``; ``unrolled`` (the default kernel) and ``dense``
  (one einsum per path) methods. This worker also times a float32 ``jnp`` matrix product with the
  same FLOP count as the tensor product, the machine's reference speed.
- ``e3nn_jax``: ``e3nn_jax.tensor_product`` followed by ``e3nn_jax.flax.Linear`` (the documented
  haiku-free route), and the legacy ``e3nn_jax.legacy.FunctionalFullyConnectedTensorProduct``
  (vmapped), both jitted.
- ``e3nn_torch``: ``e3nn.o3.FullyConnectedTensorProduct`` under ``torch.no_grad``, as many
  threads as cores, ``OMP_WAIT_POLICY=PASSIVE``.

FLOPs are counted in useful multiply-adds (x2), skipping zero Clebsch-Gordan entries, in two ways:
``kernel``: the work of the factored contraction (CG products of every path, then one weight
matrix per output), and ``per_path``: non-zero CG entries times all multiplicities
(``mul1 mul2 mul_out``) of each path, the count of the direct per-path contraction.

    python benchmarks/tensor_product.py [--quick] [--batch 4096 32768] [--rounds 7]

writes ``benchmarks/results/tensor_product.json`` (``tensor_product_quick.json`` with
``--quick``, a fast smoke run for CI).
"""

from __future__ import annotations

import argparse
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
    alternate,
    format_table,
    serve,
    summarize,
    write_json,
)

IRREPS_IN1 = "8x0e+8x0o+16x1e+16x1o+8x2e+8x2o"
IRREPS_IN2 = "0e+1o+2e+3o"
IRREPS_OUT = IRREPS_IN1
WORKERS = ("eqx_tensor", "e3nn_jax", "e3nn_torch")
# OpenMP threads that spin while waiting collapse (10x, measured) when other processes share
# the cores; passive waiting keeps torch at its unloaded speed on a busy machine
WORKER_ENV = {"e3nn_torch": {"OMP_WAIT_POLICY": "PASSIVE"}}
REFERENCE = ("eqx_tensor", "unrolled")  # the case the ratios are taken against


def _keyed(irreps: str) -> tuple:
    """``((l, sigma), mul)`` of an e3nn irreps string."""
    import e3nn_jax as e3nn

    from eqx_tensor.o3 import irrep_to_key

    return tuple((irrep_to_key(ir), mul) for mul, ir in e3nn.Irreps(irreps))


def _plan():
    from eqx_tensor.o3._tensor_product import tensor_product_plan

    return tensor_product_plan(
        _keyed(IRREPS_IN1), _keyed(IRREPS_IN2), irreps_out=_keyed(IRREPS_OUT)
    )


def multiply_adds() -> dict[str, int]:
    """Useful multiply-adds per sample of the workload (see module docstring)."""
    counts = _plan().multiply_adds()
    return {"kernel": counts["total"], "per_path": counts["per_path"]}


def matmul_size(batch: int) -> int:
    """Side of the square matmul with the tensor product's FLOPs (kernel count), multiple of 32."""
    flops = multiply_adds()["kernel"] * batch
    return max(128, 32 * round((flops ** (1 / 3)) / 32))


def _jax_case(function: Callable, *args) -> Case:
    """Jit-compile ``function(*args)`` (timed: trace + lower + compile) into a blocking Case."""
    import jax

    start = time.perf_counter()
    compiled = jax.jit(function).lower(*args).compile()
    compile_s = time.perf_counter() - start
    return Case(run=lambda: jax.block_until_ready(compiled(*args)), info={"compile_s": compile_s})


def build_eqx_tensor(batches: list[int]) -> dict[str, Case]:
    """Our kernel (both methods) and the reference matmul, per batch size."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    from eqx_tensor.o3._tensor_product import tensor_product

    plan = _plan()
    rng = np.random.default_rng(0)
    weights = jnp.asarray(rng.normal(size=plan.n_weights), jnp.float32)
    cases = {}
    for batch in batches:
        x1, x2 = (
            {
                key: jnp.asarray(rng.normal(size=(batch, 2 * key[0] + 1, mul)), jnp.float32)
                for key, mul in irreps
            }
            for irreps in (plan.irreps_in1, plan.irreps_in2)
        )
        for method in ("unrolled", "dense"):
            cases[f"{method}/{batch}"] = _jax_case(
                lambda x1, x2, w, method=method: tensor_product(plan, x1, x2, w, method=method),
                x1,
                x2,
                weights,
            )
        n = matmul_size(batch)
        a = jnp.asarray(rng.normal(size=(n, n)), jnp.float32)
        cases[f"matmul/{batch}"] = _jax_case(jnp.matmul, a, a)
        cases[f"matmul/{batch}"].info["n"] = n
    for case in cases.values():
        case.info["versions"] = {"jax": jax.__version__}
    return cases


def build_e3nn_jax(batches: list[int]) -> dict[str, Case]:
    """e3nn-jax: tensor_product + flax Linear, and the legacy functional FCTP."""
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
        cases[f"tp+linear/{batch}"] = _jax_case(tp_linear, params, x1, x2)
        cases[f"legacy_fctp/{batch}"] = _jax_case(legacy, fctp_weights, x1, x2)
    for case in cases.values():
        case.info["versions"] = {"jax": jax.__version__, "e3nn_jax": e3nn.__version__}
    return cases


def build_e3nn_torch(batches: list[int]) -> dict[str, Case]:
    """e3nn (torch): o3.FullyConnectedTensorProduct, forward without autograd."""
    import e3nn
    import torch
    from e3nn import o3

    torch.set_num_threads(os.cpu_count() or 1)
    torch.manual_seed(0)
    cases = {}
    for batch in batches:
        start = time.perf_counter()
        tp = o3.FullyConnectedTensorProduct(IRREPS_IN1, IRREPS_IN2, IRREPS_OUT)
        x1 = torch.randn(batch, tp.irreps_in1.dim)
        x2 = torch.randn(batch, tp.irreps_in2.dim)

        def run(tp=tp, x1=x1, x2=x2):
            with torch.no_grad():
                return tp(x1, x2)

        run()  # construction (code generation) plus the first call is torch's "compile"
        info = {
            "compile_s": time.perf_counter() - start,
            "threads": torch.get_num_threads(),
            "versions": {"torch": torch.__version__, "e3nn": e3nn.__version__},
        }
        cases[f"fctp/{batch}"] = Case(run=run, info=info)
    return cases


BUILDERS = {
    "eqx_tensor": build_eqx_tensor,
    "e3nn_jax": build_e3nn_jax,
    "e3nn_torch": build_e3nn_torch,
}


def _report(stats: dict, infos: dict, batches: list[int]) -> tuple[str, list[dict]]:
    """The printed table and the JSON rows: times, GFLOP/s, % of matmul, ratios vs ours."""
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
            name, case_batch = case.rsplit("/", 1)
            if int(case_batch) != batch or name == "matmul":
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
                "compile_s": infos[(worker, case)]["compile_s"],
                "gflops": gflops,
                "matmul_gflops": matmul_gflops,
                "fraction_of_matmul": (
                    {k: v / matmul_gflops for k, v in gflops.items()} if matmul_gflops else None
                ),
                # > 1: our kernel is that many times faster than this contender
                "time_over_ours": stat["median_s"] / reference["median_s"] if reference else None,
                "info": infos[(worker, case)],
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, nargs="+", default=[4096, 32768])
    parser.add_argument("--rounds", type=int, default=7, help="interleaved timing rounds")
    parser.add_argument("--repeats", type=int, default=3, help="timed calls per case and round")
    parser.add_argument("--frameworks", nargs="+", choices=WORKERS, default=list(WORKERS))
    parser.add_argument("--quick", action="store_true", help="small batch, few rounds (CI smoke)")
    parser.add_argument("--output", type=Path, default=None)
    parser.add_argument("--worker", choices=WORKERS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.quick:
        args.batch, args.rounds, args.repeats = [512], 2, 2
    if args.worker:
        serve(lambda: BUILDERS[args.worker](args.batch))
        return

    output = args.output or RESULTS_DIR / (
        "tensor_product_quick.json" if args.quick else "tensor_product.json"
    )
    batch_args = ["--batch", *map(str, args.batch)]
    workers = []
    try:
        for name in args.frameworks:
            print(f"starting {name} worker (builds and compiles its cases)...", flush=True)
            argv = [sys.executable, __file__, "--worker", name, *batch_args]
            workers.append(Worker(name, argv, env=WORKER_ENV.get(name)))
        cases = [(worker, case) for worker in workers for case in worker.cases]
        # torch's scripted graph is re-optimised during its first calls: warm up at least 3
        times = alternate(cases, rounds=args.rounds, repeats=args.repeats, warmup=3)
    finally:
        for worker in workers:
            worker.close()

    stats = {key: summarize(values) for key, values in times.items()}
    infos = {(worker.name, case): info for worker in workers for case, info in worker.cases.items()}
    table, rows = _report(stats, infos, args.batch)
    counts = multiply_adds()
    print(
        f"\n{IRREPS_IN1} x {IRREPS_IN2} -> {IRREPS_OUT}, fully connected, float32\n"
        f"useful multiply-adds per sample: kernel {counts['kernel']}, per-path {counts['per_path']}"
        f"\nmedians of {args.rounds} rounds x {args.repeats} calls; 'time / ours' > 1 means ours "
        f"({REFERENCE[0]}:{REFERENCE[1]}) is faster\n"
    )
    print(table)
    path = write_json(
        output,
        {
            "benchmark": "tensor_product",
            "irreps_in1": IRREPS_IN1,
            "irreps_in2": IRREPS_IN2,
            "irreps_out": IRREPS_OUT,
            "mode": "fully_connected",
            "dtype": "float32",
            "multiply_adds_per_sample": counts,
            "rounds": args.rounds,
            "repeats": args.repeats,
            "results": rows,
        },
    )
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
