"""The README's demo command runs ``examples/demo.py``: it must run and show what it claims."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

DEMO = Path(__file__).resolve().parents[1] / "examples" / "demo.py"


@pytest.mark.slow  # a fresh process that compiles everything again; CI runs it with -m slow
def test_demo_runs_and_trains_an_equivariant_model():
    result = subprocess.run(
        [sys.executable, str(DEMO)], capture_output=True, text=True, timeout=600, check=False
    )
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    assert "its gradient is a TensorMap with the same keys: True" in out
    assert "pow(x, 2) explicit positions gradient matches 2 x dx: True" in out
    losses = [float(x) for x in re.findall(r"sum of squared errors (\S+)", out)]
    assert len(losses) >= 2 and losses[-1] < 1e-6 * losses[0]
    (error,) = re.findall(r"equivariance error under random rotations and inversion: (\S+)", out)
    assert float(error) < 1e-10
