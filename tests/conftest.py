"""Shared test configuration: the precision of the run, and the path to the shared metatensor files.

The suite runs in two configurations, each in its own process: float64 (the default here:
``jax_enable_x64`` on) and JAX's own default, float32 (``JAX_ENABLE_X64=0 python -m pytest``),
which is what users get. Tests that only make sense in one of them are marked ``x64_only`` or
``x32_only`` and skipped in the other; tolerances that depend on the precision come from
:data:`tests.helpers.TOL` / :func:`tests.helpers.tol`.
"""

import os
import subprocess
import sys
from pathlib import Path

import jax
import pytest

X64 = os.environ.get("JAX_ENABLE_X64", "1").strip().lower() not in ("0", "false", "no", "off")
jax.config.update("jax_enable_x64", X64)


def _xla_knows(flag: str) -> bool:
    """Whether this jaxlib accepts ``flag`` in ``XLA_FLAGS`` (an unknown flag aborts the process).

    Asked once per test run, in a subprocess; pytest-xdist's workers inherit the answer.
    """
    name = "EQX_TENSOR_TESTS_XLA_KNOWS_" + flag.lstrip("-").split("=")[0].upper()
    if name not in os.environ:
        probe = subprocess.run(
            [sys.executable, "-c", "import jax; jax.devices()"],
            env={**os.environ, "XLA_FLAGS": flag},
            capture_output=True,
        )
        os.environ[name] = "1" if probe.returncode == 0 else "0"
    return os.environ[name] == "1"


def _compile_fast() -> bool:
    """Start this process's XLA backend with compile-time-favouring CPU flags.

    The tests' arrays are tiny: their time goes into compiling, not running. Without LLVM's
    optimisation passes XLA compiles about a third faster, and its classic loop emitters
    (what :func:`eqx_tensor.compiler_options` selects per program) faster again. The generated
    code is slower but computes the same operations (results agree to rounding). Only this
    process: XLA reads ``XLA_FLAGS`` once, when the backend starts, and the variable is
    restored afterwards, so that subprocesses (the notebooks, the demo) keep the defaults.
    Flags already given in ``XLA_FLAGS`` are kept. Returns whether the emitters were changed.
    """
    previous = os.environ.get("XLA_FLAGS")
    flags = [previous or ""]
    if "xla_backend_optimization_level" not in (previous or ""):
        flags.append("--xla_backend_optimization_level=0")
    emitters = "--xla_cpu_use_fusion_emitters=false"
    classic = "xla_cpu_use_fusion_emitters" not in (previous or "") and _xla_knows(emitters)
    if classic:
        flags.append(emitters)
    os.environ["XLA_FLAGS"] = " ".join(flags).strip()
    try:
        jax.devices()
    finally:
        if previous is None:
            del os.environ["XLA_FLAGS"]
        else:
            os.environ["XLA_FLAGS"] = previous
    return classic


CLASSIC_EMITTERS = _compile_fast()
"""Whether this process compiles with XLA's classic CPU emitters (see :func:`_compile_fast`)."""

ROOT = Path(__file__).resolve().parents[1]
DATA_DIR = Path(os.environ.get("EQX_TENSOR_DATA", ROOT.parent / "shared" / "data" / "metatensor"))


def data_path(name: str) -> Path:
    """Path of a file in the shared metatensor data folder, or a clear failure if missing."""
    path = DATA_DIR / name
    if not path.exists():
        pytest.fail(
            f"shared data file {path} is missing: the tests expect the metatensor files in "
            f"'../shared/data/metatensor/' beside the project root (or set EQX_TENSOR_DATA)",
            pytrace=False,
        )
    return path


@pytest.fixture
def data_dir() -> Path:
    data_path("README.md")
    return DATA_DIR


def pytest_report_header(config: pytest.Config) -> str:
    return f"eqx_tensor tests: jax_enable_x64={X64} (set JAX_ENABLE_X64=0 for the float32 run)"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    skip_x64 = pytest.mark.skip(reason="float64 only: the run has x64 off (JAX_ENABLE_X64=0)")
    skip_x32 = pytest.mark.skip(reason="float32 only: the run has x64 on")
    for item in items:
        if not X64 and "x64_only" in item.keywords:
            item.add_marker(skip_x64)
        if X64 and "x32_only" in item.keywords:
            item.add_marker(skip_x32)
