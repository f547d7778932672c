"""Latencies a user feels, each against the project's target: imports, eager calls, first compiles,
Labels at a million entries (against metatensor-core), and the per-call plan lookup of tensor
products.

Rows (``target`` is the goal; a row passes when the measured median is at most the target):

=============================================  ===============================================
``import eqx_tensor`` in a fresh interpreter   at most ``import jax`` (also measured) + 0.3 s
``model.init`` eagerly (not jitted)            under 0.5 s
first call of the jitted Adam train step       under 1.5 s (tracing, compiling and one step);
                                               also with ``eqx_tensor.compiler_options()``
``jax.grad`` of the loss, not jitted           under 2 s (first call)
Labels, 1,000,000 entries: construction,       within 2x of metatensor-core (Rust) on the same
  position of every entry, union (and           machine, each side in its own worker process
  intersection, lookups with a fresh index)
plan hashing / lookup per tensor-product call  under 2 us
=============================================  ===============================================

Model rows: the README's ``nn.Sequential([EquivariantLinear(64), InvariantSiLU(),
EquivariantLinear(1)])`` on ``qm7-spherical-expansion.mts`` (45 blocks, gradients removed,
float64), the README's train step (``optax.adam(1e-3)``, ``nn.sum_squared_error`` of the output
against a random target with the output's metadata) and its loss. Each of these "first call"
rows, and each import, is measured in a fresh interpreter (one subprocess per measurement, the
kinds alternating), so nothing is cached from an earlier call; ``model.init`` is timed after
the key ``jax.random.key(0)`` exists (creating it starts JAX's CPU backend, reported apart as
``backend_start_s``). No persistent compilation cache is used.

Labels rows: entries ``(system, atom, center_type)`` (20,000 systems of 50 atoms, the center
type of each atom index drawn from 5), shuffled, int32. "Construction" builds the labels from
that array (uniqueness checked). "Position of every entry" looks up a permutation of all the
entries: eqx_tensor's ``Labels.positions(other)``; metatensor-core's fastest equivalent,
``Labels.select(other)`` with labels of the same names (its vectorised path: one hash-map
lookup per entry in Rust; a Python loop over ``position`` would be unfair). Both reuse the
lookup structure of the labels once built (warm-up calls build it); "lookups with a fresh
index" builds the labels without the uniqueness check (``assume_unique=True``) and looks up
every entry, so it includes building the index (eqx_tensor) or hash map (metatensor-core).
"Union" and "intersection" take labels sharing half of their entries (``union`` /
``intersection_and_mapping``). The workers check that both sides compute the same results
(checksums in the JSON).

Plan rows: the fully connected product of ``benchmarks/tensor_product.py``
(``8x0e+8x0o+16x1e+16x1o+8x2e+8x2o`` x ``0e+1o+2e+3o``) and its channel-wise ``gate_points``
product: ``hash(plan)`` (what every cache keyed by the plan, and ``jax.jit`` with the plan
static, pays per call), the cached fused layout of the plan that ``o3.tensor_product`` looks up
per call, and ``nn.tensor_product_plan(x1, x2, ...)``, which ``nn.TensorProduct`` runs per
call to find its plan from the input TensorMaps (metadata checks included).

    python benchmarks/latency.py [--quick] [--out PATH] [--rows N] [--cold-repeats N]

writes ``benchmarks/results/latency.json`` (``latency_quick.json`` with ``--quick``: 100,000
Labels entries, one fresh process per cold row, few rounds: a smoke run, not the figures).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make `benchmarks._common` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import (
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

LABEL_NAMES = ["system", "atom", "center_type"]
ATOMS_PER_SYSTEM = 50
CENTER_TYPES = 5
PLAN_CALLS = 1000  # calls per timed run of a plan case: single calls are below the clock's grain

TARGETS = {
    "import_eqx_tensor_extra_s": 0.3,
    "model_init_s": 0.5,
    "train_step_first_call_s": 1.5,
    "grad_eager_first_call_s": 2.0,
    "labels_ratio": 2.0,
    "plan_lookup_s": 2e-6,
}
COLD_KINDS = (
    "import_jax",
    "import_eqx_tensor",
    "model_init",
    "train_step",
    "train_step_options",
    "grad_eager",
)


# ------------------------------------------------------------------ fresh-process measurements
def _cold_import_jax() -> dict[str, Any]:
    start = time.perf_counter()
    import jax

    return {"seconds": time.perf_counter() - start, "jax": jax.__version__}


def _cold_import_eqx_tensor() -> dict[str, Any]:
    start = time.perf_counter()
    import eqx_tensor

    seconds = time.perf_counter() - start
    return {"seconds": seconds, "modules": len(sys.modules), "eqx_tensor": eqx_tensor.__version__}


def _model_setup() -> dict[str, Any]:
    """The README's model and data, and the key: everything before the timed call."""
    import jax

    features = load_features(QM7)
    model = readme_model()
    start = time.perf_counter()
    key = jax.random.key(0)
    backend_start_s = time.perf_counter() - start
    return {"features": features, "model": model, "key": key, "backend_start_s": backend_start_s}


def _target(features) -> Any:
    """A random target with the metadata of the model's output (one property ``_``)."""
    import numpy as np

    import eqx_tensor as eqt

    rng = np.random.default_rng(0)
    blocks = [
        eqt.TensorBlock(
            rng.normal(size=(*block.values.shape[:-1], 1)),
            block.samples,
            block.components,
            eqt.Labels.range("_", 1),
        )
        for block in features.blocks()
    ]
    return eqt.TensorMap(features.keys, blocks)


def _cold_model_init() -> dict[str, Any]:
    import jax

    setup = _model_setup()
    model, features, key = setup["model"], setup["features"], setup["key"]
    start = time.perf_counter()
    params = jax.block_until_ready(model.init(key, features))
    seconds = time.perf_counter() - start
    start = time.perf_counter()
    jax.block_until_ready(model.init(key, features))
    second = time.perf_counter() - start
    return {
        "seconds": seconds,
        "second_call_s": second,
        "backend_start_s": setup["backend_start_s"],
        "n_blocks": len(features),
        "n_params": n_params(params),
    }


def _cold_train_step(compiler_options: bool = False) -> dict[str, Any]:
    import jax

    import eqx_tensor as eqt
    from eqx_tensor import nn

    setup = _model_setup()
    model, features = setup["model"], setup["features"]
    params = model.init(setup["key"], features)
    target = _target(features)
    optimizer, step = adam_step(
        lambda params, features, target: nn.sum_squared_error(model.apply(params, features), target)
    )
    opt_state = optimizer.init(params)
    step = jax.jit(step, compiler_options=eqt.compiler_options() if compiler_options else None)

    start = time.perf_counter()
    new_params, new_state, loss = step(params, opt_state, features, target)
    jax.block_until_ready(loss)
    seconds = time.perf_counter() - start
    start = time.perf_counter()
    jax.block_until_ready(step(new_params, new_state, features, target))
    second = time.perf_counter() - start
    return {"seconds": seconds, "second_call_s": second, "loss": float(loss)}


def _cold_grad_eager() -> dict[str, Any]:
    import jax

    from eqx_tensor import nn

    setup = _model_setup()
    model, features = setup["model"], setup["features"]
    params = model.init(setup["key"], features)
    target = _target(features)

    def loss(params):
        return nn.sum_squared_error(model.apply(params, features), target)

    start = time.perf_counter()
    jax.block_until_ready(jax.grad(loss)(params))
    seconds = time.perf_counter() - start
    start = time.perf_counter()
    jax.block_until_ready(jax.grad(loss)(params))
    second = time.perf_counter() - start
    return {"seconds": seconds, "second_call_s": second}


COLD = {
    "import_jax": _cold_import_jax,
    "import_eqx_tensor": _cold_import_eqx_tensor,
    "model_init": _cold_model_init,
    "train_step": _cold_train_step,
    "train_step_options": lambda: _cold_train_step(compiler_options=True),
    "grad_eager": _cold_grad_eager,
}


def _cold_environment() -> dict[str, str]:
    environment = dict(os.environ)
    for name in ("JAX_COMPILATION_CACHE_DIR", "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"):
        environment.pop(name, None)  # every first call compiles from scratch
    environment["JAX_ENABLE_COMPILATION_CACHE"] = "false"
    return environment


def _run_cold(kind: str) -> dict[str, Any]:
    """One measurement of ``kind`` in a fresh interpreter."""
    start = time.perf_counter()
    process = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "--cold", kind],
        capture_output=True,
        text=True,
        env=_cold_environment(),
        check=False,
    )
    wall = time.perf_counter() - start
    lines = [line for line in process.stdout.splitlines() if line.startswith("{")]
    if process.returncode != 0 or not lines:
        raise RuntimeError(f"fresh process for {kind!r} failed:\n{process.stderr[-4000:]}")
    result = json.loads(lines[-1])
    result["process_wall_s"] = wall
    return result


def measure_cold(kinds: tuple[str, ...], repeats: int) -> dict[str, list[dict[str, Any]]]:
    """``repeats`` fresh processes per kind, the kinds alternating (rotated each round)."""
    results: dict[str, list[dict[str, Any]]] = {kind: [] for kind in kinds}
    for round_index in range(repeats):
        shift = round_index % len(kinds)
        for kind in (*kinds[shift:], *kinds[:shift]):
            print(f"  fresh process {round_index + 1}/{repeats}: {kind}", flush=True)
            results[kind].append(_run_cold(kind))
    return results


# ------------------------------------------------------------------ Labels workers
def _label_values(rows: int):
    """``(a, permuted, shifted)`` int32 arrays of ``rows`` entries (module docstring)."""
    import numpy as np

    rng = np.random.default_rng(0)
    n_systems = rows // ATOMS_PER_SYSTEM
    system = np.repeat(np.arange(n_systems), ATOMS_PER_SYSTEM)
    atom = np.tile(np.arange(ATOMS_PER_SYSTEM), n_systems)
    # a type per atom index: the shifted copy below then shares exactly half of the entries
    center_type = rng.integers(0, CENTER_TYPES, size=ATOMS_PER_SYSTEM)[atom]
    values = np.stack([system, atom, center_type], axis=1).astype(np.int32)
    values = values[rng.permutation(len(values))]
    permuted = np.ascontiguousarray(values[rng.permutation(len(values))])
    shifted = values.copy()
    shifted[:, 0] += n_systems // 2  # half of the entries are shared with `values`
    shifted = np.ascontiguousarray(shifted[rng.permutation(len(shifted))])
    return np.ascontiguousarray(values), permuted, shifted


def _labels_cases(framework: str, rows: int) -> dict[str, Case]:
    import numpy as np

    if framework == "eqx_tensor":
        from eqx_tensor import Labels

        def positions(labels, other):
            return labels.positions(other)

    else:
        import metatensor

        Labels = metatensor.Labels

        def positions(labels, other):
            # vectorised in Rust: same names, so the positions come in the order of `other`
            return labels.select(other)

    values, permuted, shifted = _label_values(rows)
    a = Labels(LABEL_NAMES, values)
    p = Labels(LABEL_NAMES, permuted)
    b = Labels(LABEL_NAMES, shifted)

    found = positions(a, p)
    union = a.union(b)
    intersection, first, second = a.intersection_and_mapping(b)
    checks = {
        "positions_checksum": int(
            np.sum(np.asarray(found, dtype=np.int64) * np.arange(len(found)))
        ),
        "positions_found": len(found),
        "union_entries": len(union),
        "union_checksum": int(np.asarray(union.values, dtype=np.int64).sum()),
        "intersection_entries": len(intersection),
        "intersection_mapping_checksum": int(first.sum() + second.sum()),
    }
    info = {"rows": rows, "names": LABEL_NAMES, **checks}
    return {
        "construct": Case(lambda: Labels(LABEL_NAMES, values), info),
        "positions": Case(lambda: positions(a, p), info),
        "union": Case(lambda: a.union(b), info),
        "intersection": Case(lambda: a.intersection_and_mapping(b), info),
        "positions_fresh_index": Case(
            lambda: positions(Labels(LABEL_NAMES, values, assume_unique=True), p), info
        ),
    }


LABEL_CASES = {
    "construct": "construction",
    "positions": "position of every entry",
    "union": "union",
    "intersection": "intersection_and_mapping",
    "positions_fresh_index": "lookups with a fresh index",
}


# ------------------------------------------------------------------ plan worker
def _o3_blocks(irreps: str, n: int = 4):
    """A TensorMap with keys (o3_lambda, o3_sigma), one block per irrep of ``irreps``."""
    import numpy as np

    import eqx_tensor as eqt
    from benchmarks.tensor_product import _keyed

    rng = np.random.default_rng(0)
    keyed = _keyed(irreps)
    blocks = [
        eqt.TensorBlock(
            rng.normal(size=(n, 2 * l + 1, mul)),
            eqt.Labels.range("sample", n),
            [eqt.Labels(["o3_mu"], np.arange(-l, l + 1).reshape(-1, 1))],
            eqt.Labels.range("n", mul),
        )
        for (l, _), mul in keyed
    ]
    keys = eqt.Labels(["o3_lambda", "o3_sigma"], np.array([key for key, _ in keyed]))
    return eqt.TensorMap(keys, blocks)


def _plan_cases() -> dict[str, Case]:
    from benchmarks.tensor_product import IRREPS_IN1, IRREPS_IN2, _channelwise_plan, _plan
    from eqx_tensor import nn
    from eqx_tensor.o3 import _tensor_product as kernel

    fully_connected = _plan()
    channelwise = _channelwise_plan("gate_points")
    x1, x2 = _o3_blocks(IRREPS_IN1), _o3_blocks(IRREPS_IN2)
    out_features = {key: mul for key, mul in fully_connected.irreps_out}

    def repeated(call: Callable[[], object]) -> Callable[[], None]:
        call()  # fill the caches: the rows time the lookups of every later call

        def run():
            for _ in range(PLAN_CALLS):
                call()

        return run

    info = {"calls_per_run": PLAN_CALLS}
    return {
        "hash fully_connected": Case(repeated(lambda: hash(fully_connected)), info),
        "hash channelwise": Case(repeated(lambda: hash(channelwise)), info),
        "fused layout channelwise": Case(repeated(lambda: kernel._fused_layout(channelwise)), info),
        "nn.tensor_product_plan": Case(
            repeated(
                lambda: nn.tensor_product_plan(x1, x2, "fully_connected", out_features=out_features)
            ),
            info,
        ),
    }


PLAN_ROWS = {
    "hash fully_connected": "TP plan: hash(plan), fully connected",
    "hash channelwise": "TP plan: hash(plan), channel-wise",
    "fused layout channelwise": "TP plan: o3 fused-layout lookup",
    "nn.tensor_product_plan": "TP plan: nn.tensor_product_plan",
}


def _build_worker(name: str, rows: int) -> dict[str, Case]:
    if name == "plan":
        return _plan_cases()
    return _labels_cases(name, rows)


# ------------------------------------------------------------------ report
def _median(results: list[dict[str, Any]], key: str = "seconds") -> float:
    return statistics.median(r[key] for r in results)


def _row(what: str, measured: float, target: float, unit: str, **extra) -> dict[str, Any]:
    return {
        "what": what,
        "measured": measured,
        "target": target,
        "unit": unit,
        "ratio": measured / target,
        "passed": measured <= target,
        **extra,
    }


def _format(value: float, unit: str) -> str:
    if unit == "us":
        return f"{value * 1e6:.3g} us"
    if value < 1:
        return f"{value * 1e3:.3g} ms"
    return f"{value:.3g} s"


def build_rows(cold: dict, labels: dict, plans: dict, n_rows: int) -> list[dict[str, Any]]:
    rows = []
    if cold:
        jax_s = _median(cold["import_jax"])
        rows.append(
            {
                "what": "import jax (fresh interpreter)",
                "measured": jax_s,
                "target": None,
                "unit": "s",
                "ratio": None,
                "passed": None,
            }
        )
        rows.append(
            _row(
                "import eqx_tensor (fresh interpreter)",
                _median(cold["import_eqx_tensor"]),
                jax_s + TARGETS["import_eqx_tensor_extra_s"],
                "s",
                target_note="import jax + 0.3 s",
            )
        )
        first_calls = [
            ("model_init", "model.init, eager (qm7, 45 blocks)", "model_init_s"),
            ("train_step", "jitted Adam train step, first call", "train_step_first_call_s"),
            (
                "train_step_options",
                "same, jit with eqx_tensor.compiler_options()",
                "train_step_first_call_s",
            ),
            ("grad_eager", "jax.grad of the loss, eager, first call", "grad_eager_first_call_s"),
        ]
        for kind, what, target in first_calls:
            results = cold[kind]
            extra = {"second_call_s": _median(results, "second_call_s")}
            if kind == "model_init":
                extra["backend_start_s"] = _median(results, "backend_start_s")
            rows.append(_row(what, _median(results), TARGETS[target], "s", **extra))
    for case, what in LABEL_CASES.items():
        if ("eqx_tensor", case) not in labels:
            continue
        ours = labels[("eqx_tensor", case)]["median_s"]
        theirs = labels[("metatensor", case)]["median_s"]
        rows.append(
            _row(
                f"Labels {n_rows:,}: {what}",
                ours,
                TARGETS["labels_ratio"] * theirs,
                "s",
                target_note=f"2 x metatensor-core ({_format(theirs, 's')})",
                metatensor_s=theirs,
                ratio_vs_metatensor=ours / theirs,
            )
        )
    for case, what in PLAN_ROWS.items():
        if case in plans:
            rows.append(
                _row(
                    what,
                    plans[case]["median_s"] / PLAN_CALLS,
                    TARGETS["plan_lookup_s"],
                    "us",
                )
            )
    return rows


def _table(rows: list[dict[str, Any]]) -> str:
    lines = []
    for row in rows:
        unit = row["unit"]
        target = "-" if row["target"] is None else _format(row["target"], unit)
        if row.get("target_note"):
            target += f" ({row['target_note']})"
        versus = row.get("ratio_vs_metatensor")
        lines.append(
            [
                row["what"],
                _format(row["measured"], unit),
                target,
                "-" if row["ratio"] is None else f"{row['ratio']:.2f}",
                "-" if versus is None else f"{versus:.2f}",
                "-" if row["passed"] is None else ("pass" if row["passed"] else "FAIL"),
            ]
        )
    headers = ["what", "measured", "target", "measured/target", "ours/metatensor", "result"]
    return format_table(headers, lines)


# ------------------------------------------------------------------ main
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a fast smoke run (module doc)")
    parser.add_argument("--out", type=Path, default=None, help="JSON output path")
    parser.add_argument("--rows", type=int, default=None, help="Labels entries (1,000,000)")
    parser.add_argument("--cold-repeats", type=int, default=None, help="fresh processes per row")
    parser.add_argument("--rounds", type=int, default=None, help="interleaved timing rounds")
    parser.add_argument("--repeats", type=int, default=None, help="timed calls per round")
    parser.add_argument(
        "--skip", nargs="*", default=[], choices=["cold", "labels", "plan"], help="row groups"
    )
    parser.add_argument("--cold", choices=COLD_KINDS, help=argparse.SUPPRESS)
    parser.add_argument(
        "--worker", choices=["eqx_tensor", "metatensor", "plan"], help=argparse.SUPPRESS
    )
    args = parser.parse_args()

    if args.cold:
        print(json.dumps(COLD[args.cold]()), flush=True)
        return
    rows_count = args.rows or (100_000 if args.quick else 1_000_000)
    if args.worker:
        serve(lambda: _build_worker(args.worker, rows_count))
        return

    data_file(QM7)  # fail early, with the message
    cold_repeats = args.cold_repeats or (1 if args.quick else 5)
    rounds = args.rounds or (2 if args.quick else 5)
    repeats = args.repeats or (1 if args.quick else 2)
    output = args.out or RESULTS_DIR / ("latency_quick.json" if args.quick else "latency.json")
    load_start = os.getloadavg() if hasattr(os, "getloadavg") else None

    cold = {}
    if "cold" not in args.skip:
        print(f"fresh-process rows ({cold_repeats} process(es) per row) ...", flush=True)
        cold = measure_cold(COLD_KINDS, cold_repeats)

    command = [sys.executable, str(Path(__file__).resolve()), "--rows", str(rows_count)]
    labels, labels_info = {}, {}
    if "labels" not in args.skip:
        print(f"Labels rows ({rows_count} entries), eqx_tensor and metatensor workers ...")
        with (
            Worker("eqx_tensor", [*command, "--worker", "eqx_tensor"]) as ours,
            Worker("metatensor", [*command, "--worker", "metatensor"]) as theirs,
        ):
            pairs = [(w, case) for case in LABEL_CASES for w in (ours, theirs)]
            times = alternate(pairs, rounds=rounds, repeats=repeats, warmup=1)
            labels_info = {f"{w.name}/{case}": w.cases[case] for w, case in pairs}
        labels = {key: summarize(values) for key, values in times.items()}
        # every case of a worker carries the same checks
        mine, yours = labels_info["eqx_tensor/construct"], labels_info["metatensor/construct"]
        checked = [k for k in mine if k.endswith(("checksum", "entries", "found"))]
        different = [k for k in checked if mine[k] != yours[k]]
        if different:
            raise RuntimeError(f"eqx_tensor and metatensor disagree on {different}")

    plans = {}
    if "plan" not in args.skip:
        print("tensor-product plan rows ...", flush=True)
        with Worker("plan", [*command, "--worker", "plan"]) as worker:
            pairs = [(worker, case) for case in worker.cases]
            times = alternate(pairs, rounds=rounds, repeats=max(repeats, 3), warmup=1)
        plans = {case: summarize(values) for (_, case), values in times.items()}

    rows = build_rows(cold, labels, plans, rows_count)
    print(
        f"\nmedians; Labels: {rounds} rounds x {repeats} calls per side, alternating; "
        f"fresh processes: {cold_repeats} per row\n"
    )
    print(_table(rows))
    path = write_json(
        output,
        {
            "benchmark": "latency",
            "quick": args.quick,
            "data": QM7,
            "labels_rows": rows_count,
            "rounds": rounds,
            "repeats": repeats,
            "cold_repeats": cold_repeats,
            "targets": TARGETS,
            "load_average_at_start": list(load_start) if load_start else None,
            "rows": rows,
            "cold_measurements": cold,
            "labels_times": {f"{w}/{c}": s for (w, c), s in labels.items()},
            "labels_info": labels_info,
            "plan_times": plans,
        },
    )
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
