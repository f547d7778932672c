"""A metatensor-operations pipeline: eqx_tensor (jitted) against metatensor (numpy and torch).

Workload, on ``qm7-spherical-expansion.mts`` (45 blocks, ``positions`` and ``strain``
gradients, float64), the same in every framework::

    tensor = remove_gradients(tensor, ["strain"])            # keep the positions gradients
    tensor = tensor.keys_to_samples("center_type")           # 45 -> 25 blocks
    tensor = sum_over_samples(tensor, ["atom", "center_type"])  # per-system features
    squared = multiply(tensor, tensor)                       # product rule on gradients
    cubed = pow(tensor, 3.0)
    joined = join([squared, cubed], "properties", add_dimension="power")
    result = filter_blocks(joined, Labels(["o3_lambda"], [[0], [1], [2]]))

Contenders, each in its own worker process (see ``benchmarks/_common.py``):

- ``eqx_tensor``: the pipeline under ``jax.jit`` (compile time reported separately); the
  worker also checks the result against metatensor's (max absolute difference in the JSON).
- ``metatensor_numpy``: metatensor-core TensorMaps holding NumPy arrays, metatensor-operations.
- ``metatensor_torch``: metatensor-core TensorMaps holding torch CPU tensors (no
  metatensor-torch), the same metatensor-operations functions. metatensor-core 0.2.6 fails in
  ``keys_to_samples`` on torch arrays (it builds its fill value with ``np.array(fill_value,
  dtype=torch.float64)``); the worker patches that one helper to use the matching NumPy dtype.

    python benchmarks/operations.py [--quick] [--rounds 7] [--repeats 5]

writes ``benchmarks/results/operations.json`` (``operations_quick.json`` with ``--quick``).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make `benchmarks._common` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import (
    QM7,
    RESULTS_DIR,
    Case,
    Worker,
    alternate,
    data_file,
    format_table,
    serve,
    summarize,
    write_json,
)

WORKERS = ("eqx_tensor", "metatensor_numpy", "metatensor_torch")
REFERENCE = "eqx_tensor"
# torch's OpenMP threads spin between calls by default, stealing the other workers' cores
WORKER_ENV = {"metatensor_torch": {"OMP_WAIT_POLICY": "PASSIVE"}}


def pipeline(ops, tensor, labels_class):
    """The workload, written once for any module ``ops`` with metatensor's API."""
    import numpy as np

    tensor = ops.remove_gradients(tensor, ["strain"])
    tensor = tensor.keys_to_samples("center_type")
    tensor = ops.sum_over_samples(tensor, ["atom", "center_type"])
    squared = ops.multiply(tensor, tensor)
    cubed = ops.pow(tensor, 3.0)
    joined = ops.join([squared, cubed], "properties", add_dimension="power")
    selection = labels_class(["o3_lambda"], np.array([[0], [1], [2]], dtype=np.int32))
    return ops.filter_blocks(joined, selection)


def _count(tensor) -> dict[str, int]:
    arrays = sum(1 + len(block.gradients_list()) for block in tensor.blocks())
    return {"blocks_out": len(tensor), "arrays_out": arrays}


# --------------------------------------------------------------------------- workers
def build_eqx_tensor() -> dict[str, Case]:
    import jax

    jax.config.update("jax_enable_x64", True)
    import metatensor
    import numpy as np

    import eqx_tensor as eqt

    path = data_file(QM7)
    theirs = metatensor.load(str(path))
    ours = eqt.TensorMap(
        eqt.Labels(theirs.keys.names, np.asarray(theirs.keys.values)),
        [_block_from_metatensor(eqt, block) for block in theirs.blocks()],
    )
    function = jax.jit(lambda tensor: pipeline(eqt, tensor, eqt.Labels))

    start = time.perf_counter()
    result = function(ours)
    jax.block_until_ready(jax.tree_util.tree_leaves(result))
    compile_s = time.perf_counter() - start

    # check the result against metatensor's own pipeline
    reference = pipeline(metatensor, theirs, metatensor.Labels)
    max_difference = 0.0
    for block, their_block in zip(result, reference.blocks()):
        assert block.samples.names == list(their_block.samples.names)
        assert np.array_equal(np.asarray(block.samples.values), their_block.samples.values)
        assert np.array_equal(np.asarray(block.properties.values), their_block.properties.values)
        pairs = [(block.values, their_block.values)]
        for parameter, gradient in block.gradients():
            their_gradient = their_block.gradient(parameter)
            assert np.array_equal(
                np.asarray(gradient.samples.values), their_gradient.samples.values
            )
            pairs.append((gradient.values, their_gradient.values))
        for ours_array, their_array in pairs:
            scale = max(1.0, float(np.max(np.abs(their_array), initial=0.0)))
            difference = float(np.max(np.abs(np.asarray(ours_array) - their_array), initial=0.0))
            max_difference = max(max_difference, difference / scale)

    def run():
        jax.block_until_ready(jax.tree_util.tree_leaves(function(ours)))

    info = {
        "compile_s": compile_s,
        "max_relative_difference_to_metatensor": max_difference,
        "jax": jax.__version__,
        **_count(result),
    }
    return {"pipeline": Case(run=run, info=info)}


def _block_from_metatensor(eqt, block):
    import numpy as np

    def convert(b):
        return eqt.TensorBlock(
            np.array(b.values),
            eqt.Labels(b.samples.names, np.asarray(b.samples.values)),
            [eqt.Labels(c.names, np.asarray(c.values)) for c in b.components],
            eqt.Labels(b.properties.names, np.asarray(b.properties.values)),
        )

    result = convert(block)
    for parameter, gradient in block.gradients():
        result.add_gradient(parameter, convert(gradient))
    return result


def _metatensor_case(tensor) -> dict[str, Case]:
    import metatensor

    start = time.perf_counter()
    result = pipeline(metatensor, tensor, metatensor.Labels)
    first_call_s = time.perf_counter() - start
    info = {"first_call_s": first_call_s, **_count(result)}
    return {
        "pipeline": Case(run=lambda: pipeline(metatensor, tensor, metatensor.Labels), info=info)
    }


def build_metatensor_numpy() -> dict[str, Case]:
    import metatensor

    return _metatensor_case(metatensor.load(str(data_file(QM7))))


def build_metatensor_torch() -> dict[str, Case]:
    import metatensor
    import metatensor._tensor as core_tensor
    import numpy as np
    import torch

    original = core_tensor._make_fill_value_array

    def fill_value_array(tensor, fill_value):
        # metatensor-core 0.2.6 passes a torch dtype to np.array here; use the NumPy one
        if len(tensor) and isinstance(tensor.block_by_id(0).values, torch.Tensor):
            dtype = torch.empty(0, dtype=tensor.block_by_id(0).values.dtype).numpy().dtype
            return core_tensor._data.create_mts_array(np.array(fill_value, dtype=dtype))
        return original(tensor, fill_value)

    core_tensor._make_fill_value_array = fill_value_array

    def to_torch(block):
        new = metatensor.TensorBlock(
            torch.tensor(block.values), block.samples, block.components, block.properties
        )
        for parameter, gradient in block.gradients():
            new.add_gradient(
                parameter,
                metatensor.TensorBlock(
                    torch.tensor(gradient.values),
                    gradient.samples,
                    gradient.components,
                    gradient.properties,
                ),
            )
        return new

    tensor = metatensor.load(str(data_file(QM7)))
    tensor = metatensor.TensorMap(tensor.keys, [to_torch(b) for b in tensor.blocks()])
    cases = _metatensor_case(tensor)
    cases["pipeline"].info["torch"] = torch.__version__
    cases["pipeline"].info["torch_threads"] = torch.get_num_threads()
    return cases


BUILDERS = {
    "eqx_tensor": build_eqx_tensor,
    "metatensor_numpy": build_metatensor_numpy,
    "metatensor_torch": build_metatensor_torch,
}


# --------------------------------------------------------------------------- parent
def _report(stats: dict, infos: dict) -> tuple[str, list[dict]]:
    reference = stats[(REFERENCE, "pipeline")]["median_s"]
    rows, table = [], []
    for (worker, case), stat in stats.items():
        info = infos[(worker, case)]
        ratio = stat["median_s"] / reference
        rows.append({"framework": worker, "case": case, **stat, "time_over_ours": ratio, **info})
        setup = info.get("compile_s", info.get("first_call_s"))
        table.append(
            [worker, stat["median_s"] * 1e3, stat["q1_s"] * 1e3, stat["q3_s"] * 1e3, ratio, setup]
        )
    headers = ["framework", "median ms", "q1 ms", "q3 ms", "time / ours", "compile|1st call s"]
    return format_table(headers, table), rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7, help="interleaved timing rounds")
    parser.add_argument("--repeats", type=int, default=5, help="timed calls per case and round")
    parser.add_argument("--frameworks", nargs="+", choices=WORKERS, default=list(WORKERS))
    parser.add_argument("--quick", action="store_true", help="few rounds (CI smoke)")
    parser.add_argument("--output", type=Path, default=None)
    parser.add_argument("--worker", choices=WORKERS, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.worker:
        serve(BUILDERS[args.worker])
        return
    data_file(QM7)
    if args.quick:
        args.rounds, args.repeats = 2, 2
    output = args.output or RESULTS_DIR / (
        "operations_quick.json" if args.quick else "operations.json"
    )
    if REFERENCE not in args.frameworks:
        args.frameworks = [REFERENCE, *args.frameworks]

    workers = []
    try:
        for name in args.frameworks:
            print(f"starting {name} worker (loads the data, compiles / warms up)...", flush=True)
            argv = [sys.executable, __file__, "--worker", name]
            workers.append(Worker(name, argv, env=WORKER_ENV.get(name)))
        cases = [(worker, case) for worker in workers for case in worker.cases]
        times = alternate(cases, rounds=args.rounds, repeats=args.repeats, warmup=2)
    finally:
        for worker in workers:
            worker.close()

    stats = {key: summarize(values) for key, values in times.items()}
    infos = {(w.name, case): info for w in workers for case, info in w.cases.items()}
    table, rows = _report(stats, infos)
    peers = [r["median_s"] for r in rows if r["framework"] != REFERENCE]
    speedup = min(peers) / stats[(REFERENCE, "pipeline")]["median_s"] if peers else None
    print(
        f"\n{QM7}: remove_gradients, keys_to_samples, sum_over_samples, multiply, pow, "
        f"join, filter_blocks (float64, CPU)\nmedians of {args.rounds} rounds x {args.repeats} "
        "calls; 'time / ours' > 1 means eqx_tensor (jitted) is faster\n"
    )
    print(table)
    if speedup is not None:
        print(f"\neqx_tensor per call vs the faster peer: {speedup:.1f}x (target >= 10x)")
    path = write_json(
        output,
        {
            "benchmark": "operations",
            "data": QM7,
            "pipeline": [
                "remove_gradients(['strain'])",
                "keys_to_samples('center_type')",
                "sum_over_samples(['atom', 'center_type'])",
                "multiply(t, t)",
                "pow(t, 3.0)",
                "join([squared, cubed], 'properties', add_dimension='power')",
                "filter_blocks(o3_lambda in 0, 1, 2)",
            ],
            "dtype": "float64",
            "rounds": args.rounds,
            "repeats": args.repeats,
            "speedup_vs_faster_peer": speedup,
            "results": rows,
        },
    )
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
