"""Python dispatch overhead of passing a TensorMap to a jitted function.

Times a jitted identity over ``qm7-spherical-expansion.mts`` (45 blocks, positions and strain
gradients: 135 arrays) against the same jitted identity over the flat list of its arrays.
Both sides run in this process (there is no peer), alternating call batches, and report
medians of several rounds. The ratio should be at most 1.5.

    python benchmarks/pytree_overhead.py [--rounds 15] [--calls 200]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp

import eqx_tensor as eqt

if __package__ in (None, ""):  # run as a script: make `benchmarks._common` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import QM7, RESULTS_DIR, data_file


def _time_calls(function, argument, calls: int) -> float:
    """Seconds per call, blocking on the last result only (dispatch is what we measure)."""
    start = time.perf_counter()
    for _ in range(calls):
        out = function(argument)
    jax.block_until_ready(out)
    return (time.perf_counter() - start) / calls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--quick", action="store_true", help="few rounds, for a smoke test")
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.calls = 3, 20
    jax.config.update("jax_enable_x64", True)
    tensor = jax.tree_util.tree_map(jnp.asarray, eqt.load(data_file(QM7)))
    leaves = jax.tree_util.tree_leaves(tensor)

    on_tensor = jax.jit(lambda t: t)
    on_leaves = jax.jit(lambda xs: xs)
    compile_s = {}
    for name, function, argument in [("tensormap", on_tensor, tensor), ("flat", on_leaves, leaves)]:
        start = time.perf_counter()
        jax.block_until_ready(function(argument))
        compile_s[name] = time.perf_counter() - start
        for _ in range(3):  # warm up
            _time_calls(function, argument, args.calls)

    tensor_times, flat_times = [], []
    for _ in range(args.rounds):  # alternate, so that machine noise hits both sides alike
        tensor_times.append(_time_calls(on_tensor, tensor, args.calls))
        flat_times.append(_time_calls(on_leaves, leaves, args.calls))

    median_tensor = statistics.median(tensor_times)
    median_flat = statistics.median(flat_times)
    result = {
        "benchmark": "pytree_overhead",
        "file": QM7,
        "n_blocks": len(tensor),
        "n_arrays": len(leaves),
        "rounds": args.rounds,
        "calls_per_round": args.calls,
        "tensormap_us_per_call": median_tensor * 1e6,
        "flat_list_us_per_call": median_flat * 1e6,
        "ratio": median_tensor / median_flat,
        "first_call_s": compile_s,
        "backend": jax.default_backend(),
    }
    print(f"{QM7}: {len(tensor)} blocks, {len(leaves)} arrays")
    print(f"  jitted identity on TensorMap : {median_tensor * 1e6:8.1f} us/call (median)")
    print(f"  jitted identity on flat list : {median_flat * 1e6:8.1f} us/call (median)")
    print(f"  ratio TensorMap / flat list  : {result['ratio']:.2f} (target <= 1.5)")
    first = f"{compile_s['tensormap']:.3f} s vs {compile_s['flat']:.3f} s"
    print(f"  first call (trace + compile) : {first}")
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    (RESULTS_DIR / "pytree_overhead.json").write_text(json.dumps(result, indent=2))
    print(f"wrote {RESULTS_DIR / 'pytree_overhead.json'}")


if __name__ == "__main__":
    main()
