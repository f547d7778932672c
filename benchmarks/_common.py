"""Shared timing helpers for benchmarks that compare frameworks: one worker process each.

Why worker processes: torch and jax each start thread pools sized to the machine, and in one
process they compete and slow each other down. Each framework therefore runs in its own
subprocess, built and warmed up there, while the parent only sends commands over a pipe and
*alternates* the timing rounds between workers, so that background load on a shared machine hits
every framework alike. Results are medians over all timed calls.

Writing a benchmark with these helpers::

    # in the worker process (the benchmark script started with e.g. ``--worker jax``)
    cases = {"ours": Case(run=lambda: jax.block_until_ready(f(x)), info={"compile_s": ...})}
    serve(cases)  # answers the parent's commands until it says quit

    # in the parent
    workers = [Worker("jax", [sys.executable, __file__, "--worker", "jax"]), ...]
    times = alternate([(w, case) for w in workers for case in w.cases], rounds=7, repeats=5)
    stats = {key: summarize(t) for key, t in times.items()}
    write_json(path, {"benchmark": ..., "results": ...})

The workloads several benchmarks share are built here too: :func:`load_features` (a data file as
a float64 eqx_tensor TensorMap without gradients), :func:`readme_model` (the README's
equivariant MLP), :func:`adam_step` (the optax Adam training step) and :func:`n_params`.

Protocol, one JSON object per line on the worker's stdin / stdout (library chatter on stdout is
redirected to stderr, so it cannot corrupt the protocol):

- worker, once ready: ``{"ready": true, "cases": {name: info}}`` (or ``{"error": message}``)
- parent: ``{"cmd": "time", "case": name, "repeats": n}``; worker: ``{"times": [seconds, ...]}``
- parent: ``{"cmd": "quit"}``
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

RESULTS_DIR = Path(__file__).resolve().parent / "results"
DATA_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "metatensor"
QM7 = "qm7-spherical-expansion.mts"  # 45 blocks, l = 0..4, 10 systems
HIDDEN = 64  # hidden width of the README's model
LEARNING_RATE = 1e-3  # the README's optax.adam(1e-3)


def data_file(name: str) -> Path:
    """``name`` in the shared metatensor files beside the project root; exit if it is missing."""
    path = DATA_DIR / name
    if not path.exists():
        sys.exit(
            f"missing data file {path}: the benchmarks read the shared metatensor files in "
            "'../shared/data/metatensor/' beside the project root"
        )
    return path


def load_features(name: str = QM7) -> Any:
    """The data file ``name`` as an eqx_tensor TensorMap, gradients removed; enables float64.

    ``jax_enable_x64`` is switched on before eqx_tensor is imported, as the README does.
    """
    import jax

    jax.config.update("jax_enable_x64", True)
    import eqx_tensor as eqt

    return eqt.remove_gradients(eqt.load(str(data_file(name))))


def readme_model(*, hidden: int = HIDDEN, stacking: str = "auto", fuse_linear: bool = True) -> Any:
    """The README's ``nn.Sequential([EquivariantLinear(hidden), InvariantSiLU(),
    EquivariantLinear(1)])``; ``stacking`` and ``fuse_linear`` as in ``eqx_tensor.nn``."""
    from eqx_tensor import nn

    return nn.Sequential(
        [
            nn.EquivariantLinear(out_features=hidden, stacking=stacking),
            nn.InvariantSiLU(),
            nn.EquivariantLinear(out_features=1, stacking=stacking),
        ],
        fuse_linear=fuse_linear,
    )


def adam_step(
    loss_fn: Callable, learning_rate: float = LEARNING_RATE, *, has_aux: bool = False
) -> tuple[Any, Callable]:
    """``(optimizer, step)``: optax Adam and its training step around ``loss_fn(params, *batch)``.

    ``step(params, opt_state, *batch)`` returns ``(params, opt_state, loss)``, or ``(params,
    opt_state, loss, aux)`` when ``has_aux`` (``loss_fn`` then returns ``(loss, aux)``). The step
    is not jitted: callers choose ``jax.jit`` and its donated arguments.
    """
    import jax
    import optax

    optimizer = optax.adam(learning_rate)

    def step(params, opt_state, *batch):
        value, grads = jax.value_and_grad(loss_fn, has_aux=has_aux)(params, *batch)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        params = optax.apply_updates(params, updates)
        return (params, opt_state, *value) if has_aux else (params, opt_state, value)

    return optimizer, step


def n_params(params: Any) -> int:
    """Number of scalars in a parameter pytree."""
    import jax

    return int(sum(x.size for x in jax.tree_util.tree_leaves(params)))


@dataclass
class Case:
    """One timed workload inside a worker.

    ``run`` performs one complete, blocking call (e.g. ending in ``jax.block_until_ready`` or a
    synchronised torch op): the worker times it with a wall clock. ``info`` is any JSON-able
    metadata sent to the parent once (compile time, sizes, FLOP counts, versions).
    """

    run: Callable[[], object]
    info: dict[str, Any] = field(default_factory=dict)


def time_calls(run: Callable[[], object], repeats: int) -> list[float]:
    """Wall-clock seconds of ``repeats`` consecutive calls of ``run``, one entry per call."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return times


def serve(build: Callable[[], Mapping[str, Case]]) -> None:
    """Worker main loop: build the cases, report ready, then answer commands until ``quit``.

    ``build`` runs after stdout is redirected, so anything it prints goes to stderr; an
    exception in it is reported to the parent as ``{"error": ...}``.
    """
    protocol = _protocol_stream()
    try:
        cases = dict(build())
    except Exception:  # the parent shows the worker's traceback instead of hanging
        _send(protocol, {"error": traceback.format_exc()})
        return
    _send(protocol, {"ready": True, "cases": {name: case.info for name, case in cases.items()}})
    for line in sys.stdin:
        command = json.loads(line)
        if command["cmd"] == "quit":
            return
        if command["cmd"] == "time":
            _send(protocol, {"times": time_calls(cases[command["case"]].run, command["repeats"])})
        else:
            _send(protocol, {"error": f"unknown command {command!r}"})


def _protocol_stream() -> IO[str]:
    """A private copy of stdout for the protocol; fd 1 itself then points at stderr."""
    sys.stdout.flush()
    protocol = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return protocol


def _send(stream: IO[str], message: Mapping[str, Any]) -> None:
    stream.write(json.dumps(message) + "\n")
    stream.flush()


class Worker:
    """A framework's worker subprocess, driven over its stdin / stdout.

    Args:
        name: label used in results and error messages.
        argv: command line of the worker (it must call :func:`serve`).
        env: extra environment variables (e.g. thread counts), added to the parent's.

    The constructor waits until the worker has built (and compiled) its cases; ``cases`` then
    holds each case's ``info``.
    """

    def __init__(self, name: str, argv: Sequence[str], env: Mapping[str, str] | None = None):
        self.name = name
        self._process = subprocess.Popen(
            list(argv),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env={**os.environ, **(env or {})},
        )
        ready = self._receive()
        self.cases: dict[str, dict[str, Any]] = ready["cases"]

    def time(self, case: str, repeats: int) -> list[float]:
        """Seconds of each of ``repeats`` consecutive calls of ``case`` in the worker."""
        self._send({"cmd": "time", "case": case, "repeats": repeats})
        return self._receive()["times"]

    def close(self) -> None:
        """Ask the worker to quit and wait for it."""
        if self._process.poll() is None:
            self._send({"cmd": "quit"})
            self._process.wait(timeout=60)

    def __enter__(self) -> Worker:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def _send(self, message: Mapping[str, Any]) -> None:
        self._process.stdin.write(json.dumps(message) + "\n")
        self._process.stdin.flush()

    def _receive(self) -> dict[str, Any]:
        line = self._process.stdout.readline()
        if not line:
            raise RuntimeError(f"worker {self.name!r} exited (code {self._process.wait()})")
        message = json.loads(line)
        if "error" in message:
            raise RuntimeError(f"worker {self.name!r} failed:\n{message['error']}")
        return message


def alternate(
    cases: Sequence[tuple[Worker, str]], *, rounds: int, repeats: int, warmup: int = 2
) -> dict[tuple[str, str], list[float]]:
    """Time every ``(worker, case)`` in interleaved rounds; per-call seconds by (worker, case).

    Each case first runs ``warmup`` untimed calls. Then, in each of ``rounds`` rounds, every case
    runs ``repeats`` timed calls; the order of the cases rotates from round to round so that no
    framework always follows the same neighbour (caches, CPU frequency after a heavy case).
    """
    for worker, case in cases:
        if warmup:
            worker.time(case, warmup)
    times: dict[tuple[str, str], list[float]] = {(w.name, case): [] for w, case in cases}
    for round_index in range(rounds):
        shift = round_index % len(cases)
        for worker, case in [*cases[shift:], *cases[:shift]]:
            times[(worker.name, case)].extend(worker.time(case, repeats))
    return times


def summarize(times: Iterable[float]) -> dict[str, float]:
    """Median, min, quartiles (seconds) and count of a list of per-call times."""
    values = sorted(times)
    q1, _, q3 = statistics.quantiles(values, n=4) if len(values) > 1 else (values[0],) * 3
    return {
        "median_s": statistics.median(values),
        "min_s": values[0],
        "q1_s": q1,
        "q3_s": q3,
        "n": len(values),
    }


def machine_info() -> dict[str, Any]:
    """Where the numbers were taken: CPU model and count, load, OS, Python."""
    info: dict[str, Any] = {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
    }
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            models = [ln.split(":", 1)[1].strip() for ln in cpuinfo if ln.startswith("model name")]
        info["cpu"] = models[0] if models else platform.processor()
    except OSError:
        info["cpu"] = platform.processor()
    if hasattr(os, "getloadavg"):
        # the machine may be shared: the load at the end of the run qualifies the timings
        info["load_average_1_5_15min"] = list(os.getloadavg())
    return info


def write_json(path: Path, payload: Mapping[str, Any]) -> Path:
    """Write ``payload`` plus ``machine`` and ``timestamp`` entries as indented JSON."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    document = {
        **payload,
        "machine": machine_info(),
        "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    path.write_text(json.dumps(document, indent=2) + "\n")
    return path


def format_table(headers: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """A plain-text table, columns right-aligned except the first; floats as given."""
    cells = [list(map(str, headers))] + [[_cell(value) for value in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]

    def line(row: list[str]) -> str:
        first = row[0].ljust(widths[0])
        return "  ".join([first, *(cell.rjust(w) for cell, w in zip(row[1:], widths[1:]))])

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(cells[0]), rule, *(line(row) for row in cells[1:])])


def _cell(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 100 else f"{value:.0f}"
    return str(value)
