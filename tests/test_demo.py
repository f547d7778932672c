"""The README's demo command runs ``examples/demo.py``: it must run and show what it claims."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

DEMO = Path(__file__).resolve().parents[1] / "examples" / "demo.py"


@pytest.mark.slow  # a fresh process that compiles everything again; CI runs it with -m slow
def test_demo_runs_and_trains_an_equivariant_model(tmp_path):
    result = subprocess.run(
        [sys.executable, str(DEMO), "--quick", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    # the gate-points network learns the dynamics: below the zero predictor after 3 epochs
    (mse, zero) = re.findall(r"test MSE: (\S+) \(zero predictor (\S+),", out)[0]
    assert float(mse) < float(zero)
    assert "1 compiled step" in out
    for name in ("positions x + dx", "displacements dx"):
        (line,) = re.findall(rf"r\^2 on {re.escape(name)}: (.*)", out)
        assert len(re.findall(r"(cm|p1 cm|p7 x|p12 y) (\S+)", line)) == 4
    (error,) = re.findall(r"equivariance error \(rotation, inversion, translation\): (\S+)", out)
    assert float(error) < 1e-4  # float32
    for png in ("frames", "losses", "correlation_positions", "correlation_displacements"):
        assert (tmp_path / f"{png}.png").stat().st_size > 1000
    assert (tmp_path / "trajectories.png").exists()
