"""Training step of an equivariant MLP: eqx_tensor (JAX) against metatensor-learn (torch).

Workload (the model of metatensor-learn's equivariant nn tutorial, float64, CPU):
``EquivariantLinear(64) -> InvariantSiLU -> EquivariantLinear(1)`` applied per block to a
spherical expansion, ``keys_to_samples(["center_type", "neighbor_type"])``, then
``sum_over_samples(["atom", "center_type", "neighbor_type"])`` to one prediction per system and
``(o3_lambda, o3_sigma)``, a sum-of-squared-errors loss against a random target, backward and
one Adam update. Datasets (gradients removed):

- ``qm7``: ``qm7-spherical-expansion.mts``, 45 blocks (l = 0..4), 10 systems;
- ``small``: ``spherical-expansion.mts``, 12 blocks (l = 0..2), 1 system.

Contenders, each in its own worker process (see ``benchmarks/_common.py``):

- ``eqx_tensor``: ``eqx_tensor.nn`` + optax, the whole step under one ``jax.jit`` (params and
  optimiser state donated). Variants: ``default`` (``nn.Sequential`` as is: the two linear
  layers are composed on the covariant blocks, which InvariantSiLU leaves unchanged, and the
  blocks are batched with ``stacking="auto"``); ``unfused`` (``fuse_linear=False``: every layer
  computed as written, through the hidden width); ``unfused-blocks`` (also one matrix product
  per block, ``stacking="blocks"``); ``unfused-pad`` (every block zero-padded into one batched
  product, ``stacking="pad"``).
- ``metatensor_learn``: ``metatensor.learn.nn`` on metatensor-core TensorMaps holding torch
  tensors, ``metatensor.operations`` for the reduction, ``torch.optim.Adam`` (eager), one torch
  thread by default (see ``--torch-threads``).

Compile time (the first call of the jitted step: tracing, compiling and one step) is
reported apart; step times are medians over
interleaved rounds after warm-up.

    python benchmarks/equivariant_mlp.py [--quick] [--rounds 7] [--repeats 20] [--torch-threads 1]

writes ``benchmarks/results/equivariant_mlp.json`` (``equivariant_mlp_quick.json`` with
``--quick``: fewer rounds, for CI).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make `benchmarks._common` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import (
    HIDDEN,
    LEARNING_RATE,
    QM7,
    RESULTS_DIR,
    Case,
    Worker,
    adam_step,
    alternate,
    data_file,
    format_table,
    load_features,
    n_params,
    readme_model,
    serve,
    summarize,
    write_json,
)

DATASETS = {"qm7": QM7, "small": "spherical-expansion.mts"}
# variant name -> (fuse_linear, stacking); "default" is what `nn.Sequential` does out of the box
VARIANTS = {
    "default": (True, "auto"),
    "unfused": (False, "auto"),
    "unfused-blocks": (False, "blocks"),
    "unfused-pad": (False, "pad"),
}
QUICK_VARIANTS = ("default", "unfused")
REFERENCE = ("metatensor_learn", "step")


def _target_values(n_systems: int, orders: list[tuple[int, int]], seed: int = 0):
    """Random per-system target, one (n_systems, 2l+1, 1) array per (o3_lambda, o3_sigma)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    return [rng.normal(size=(n_systems, 2 * l + 1, 1)) for l, _ in orders]


def _orders(keys_values) -> list[tuple[int, int]]:
    seen: list[tuple[int, int]] = []
    for l, sigma in keys_values[:, :2].tolist():
        if (l, sigma) not in seen:
            seen.append((l, sigma))
    return seen


# ---------------------------------------------------------------------------------- workers
def _jax_cases(datasets: list[str], variants: list[str]) -> dict[str, Case]:
    import jax

    jax.config.update("jax_enable_x64", True)
    import numpy as np

    import eqx_tensor as eqt
    from eqx_tensor import nn

    cases = {}
    for name in datasets:
        features = load_features(DATASETS[name])
        orders = _orders(np.asarray(features.keys.values))
        systems = np.unique(np.asarray(features.block(0).samples.column("system")))
        target = eqt.TensorMap(
            eqt.Labels(["o3_lambda", "o3_sigma"], np.array(orders)),
            [
                eqt.TensorBlock(
                    values,
                    eqt.Labels(["system"], systems.reshape(-1, 1)),
                    [eqt.Labels(["o3_mu"], np.arange(-l, l + 1).reshape(-1, 1))],
                    eqt.Labels.range("_", 1),
                )
                for (l, _), values in zip(orders, _target_values(len(systems), orders))
            ],
        )
        for variant in variants:
            fuse_linear, stacking = VARIANTS[variant]
            model = readme_model(stacking=stacking, fuse_linear=fuse_linear)
            params = model.init(jax.random.key(0), features)

            def loss_fn(params, features, target, model=model):
                per_atom = model.apply(params, features)
                per_atom = per_atom.keys_to_samples(["center_type", "neighbor_type"])
                per_system = eqt.sum_over_samples(
                    per_atom, ["atom", "center_type", "neighbor_type"]
                )
                return nn.sum_squared_error(per_system, target)

            optimizer, step = adam_step(loss_fn)
            step = jax.jit(step, donate_argnums=(0, 1))
            state = {"params": params, "opt_state": optimizer.init(params)}

            def run(state=state, step=step, features=features, target=target):
                state["params"], state["opt_state"], loss = step(
                    state["params"], state["opt_state"], features, target
                )
                jax.block_until_ready(loss)

            start = time.perf_counter()
            run()  # tracing and compiling, plus one step
            compile_s = time.perf_counter() - start
            cases[f"{name}/{variant}"] = Case(
                run,
                {
                    "compile_s": compile_s,
                    "n_blocks": len(features),
                    "n_params": n_params(params),
                    "jax": jax.__version__,
                },
            )
    return cases


def _torch_cases(datasets: list[str], threads: int) -> dict[str, Case]:
    import metatensor as mts
    import numpy as np
    import torch
    from metatensor.learn import nn as mtl

    torch.set_default_dtype(torch.float64)
    if threads > 0:
        torch.set_num_threads(threads)
    _patch_metatensor_fill_value()
    cases = {}
    for name in datasets:
        features = mts.remove_gradients(mts.load(str(data_file(DATASETS[name])))).to(arrays="torch")
        keys = features.keys
        orders = _orders(np.asarray(keys.values))
        systems = np.unique(np.asarray(features.block(0).samples.column("system")))
        target = mts.TensorMap(
            mts.Labels(["o3_lambda", "o3_sigma"], np.array(orders, dtype=np.int32)),
            [
                mts.TensorBlock(
                    torch.from_numpy(values),
                    mts.Labels(["system"], systems.reshape(-1, 1).astype(np.int32)),
                    [mts.Labels(["o3_mu"], np.arange(-l, l + 1, dtype=np.int32).reshape(-1, 1))],
                    mts.Labels.range("_", 1),
                )
                for (l, _), values in zip(orders, _target_values(len(systems), orders))
            ],
        )
        torch.manual_seed(0)
        in_features = [len(block.properties) for block in features.blocks()]
        model = mtl.Sequential(
            keys,
            mtl.EquivariantLinear(keys, in_features, out_features=HIDDEN),
            mtl.InvariantSiLU(keys),
            mtl.EquivariantLinear(keys, HIDDEN, out_features=1),
        )
        optimizer = torch.optim.Adam(model.parameters(), lr=LEARNING_RATE)

        def run(model=model, optimizer=optimizer, features=features, target=target):
            optimizer.zero_grad()
            per_atom = model(features).keys_to_samples(["center_type", "neighbor_type"])
            per_system = mts.sum_over_samples(per_atom, ["atom", "center_type", "neighbor_type"])
            loss = 0.0
            for key, block in per_system.items():
                loss = loss + torch.sum((block.values - target.block(key).values) ** 2)
            loss.backward()
            optimizer.step()

        cases[f"{name}/step"] = Case(
            run,
            {
                "n_blocks": len(features),
                "n_params": int(sum(p.numel() for p in model.parameters())),
                "torch": torch.__version__,
                "torch_threads": torch.get_num_threads(),
            },
        )
    return cases


def _patch_metatensor_fill_value() -> None:
    """Let metatensor-core 0.2.6 merge blocks holding torch tensors.

    ``TensorMap.keys_to_samples`` builds its fill value with ``np.array(0.0, dtype=values.dtype)``,
    which fails for a torch dtype; give it the equivalent NumPy dtype instead.
    """
    import metatensor._tensor as tensor_module
    import numpy as np
    import torch

    original = tensor_module._make_fill_value_array

    def make_fill_value_array(tensor, fill_value):
        if len(tensor) and isinstance(tensor.block_by_id(0).values, torch.Tensor):
            dtype = torch.empty(0, dtype=tensor.block_by_id(0).values.dtype).numpy().dtype
            return tensor_module._data.create_mts_array(np.array(fill_value, dtype=dtype))
        return original(tensor, fill_value)

    tensor_module._make_fill_value_array = make_fill_value_array


# ---------------------------------------------------------------------------------- parent
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="few rounds, for CI")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=list(DATASETS))
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS), help="eqx_tensor cases")
    parser.add_argument(
        "--torch-threads",
        type=int,
        default=1,
        help="torch intra-op threads (0: torch's default). Default 1: these ops are far too small "
        "to gain from threads, and on a shared machine extra threads only spin",
    )
    parser.add_argument("--worker", choices=["jax", "torch"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    variants = args.variants or list(QUICK_VARIANTS if args.quick else VARIANTS)
    if args.worker == "jax":
        serve(lambda: _jax_cases(args.datasets, variants))
        return
    if args.worker == "torch":
        serve(lambda: _torch_cases(args.datasets, args.torch_threads))
        return
    for name in args.datasets:
        data_file(DATASETS[name])  # fail early, with the message, before starting workers
    rounds, repeats = (2, 5) if args.quick else (args.rounds, args.repeats)

    command = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--datasets",
        *args.datasets,
        "--variants",
        *variants,
        "--torch-threads",
        str(args.torch_threads),
    ]
    print("starting workers (the jax worker compiles every case first) ...", flush=True)
    with (
        Worker("eqx_tensor", [*command, "--worker", "jax"]) as ours,
        Worker("metatensor_learn", [*command, "--worker", "torch"]) as theirs,
    ):
        pairs = [(w, case) for w in (ours, theirs) for case in w.cases]
        times = alternate(pairs, rounds=rounds, repeats=repeats)
        infos = {(w.name, case): w.cases[case] for w, case in pairs}

    results = []
    for (worker, case), values in times.items():
        dataset, variant = case.split("/")
        stats = summarize(values)
        reference = summarize(times[(REFERENCE[0], f"{dataset}/{REFERENCE[1]}")])
        results.append(
            {
                "dataset": dataset,
                "framework": worker,
                "variant": variant,
                **stats,
                "speedup_vs_metatensor_learn": reference["median_s"] / stats["median_s"],
                **infos[(worker, case)],
            }
        )
    rows = [
        (
            r["dataset"],
            r["framework"],
            r["variant"],
            r["median_s"] * 1e3,
            r["q1_s"] * 1e3,
            r["q3_s"] * 1e3,
            r.get("compile_s", float("nan")),
            r["speedup_vs_metatensor_learn"],
        )
        for r in sorted(results, key=lambda r: (r["dataset"], r["median_s"]))
    ]
    print(
        format_table(
            [
                "dataset",
                "framework",
                "variant",
                "median ms",
                "q1 ms",
                "q3 ms",
                "compile s",
                "speedup",
            ],
            rows,
        )
    )
    path = RESULTS_DIR / ("equivariant_mlp_quick.json" if args.quick else "equivariant_mlp.json")
    write_json(
        path,
        {
            "benchmark": "equivariant_mlp",
            "description": "training step (forward, backward, Adam) of EquivariantLinear(64) -> "
            "InvariantSiLU -> EquivariantLinear(1) summed per system, float64, CPU",
            "rounds": rounds,
            "repeats": repeats,
            "torch_threads": args.torch_threads,
            "variants": {v: dict(zip(("fuse_linear", "stacking"), VARIANTS[v])) for v in variants},
            "results": results,
        },
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
