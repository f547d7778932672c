"""The README's Python examples run as written, in a fresh process, with x64 on and off."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import DATA_DIR

# each test runs both precisions in its own subprocess: once per suite run is enough
pytestmark = pytest.mark.x64_only

ROOT = Path(__file__).resolve().parents[1]
BLOCKS = re.findall(r"^```python\n(.*?)^```", (ROOT / "README.md").read_text(), re.M | re.S)


def _run(code: str, tmp_path: Path, x64: bool) -> None:
    """Run ``code`` from a project folder whose ``../shared/data/metatensor`` is the real one."""
    project = tmp_path / "project"
    project.mkdir()
    (tmp_path / "shared" / "data").mkdir(parents=True)
    (tmp_path / "shared" / "data" / "metatensor").symlink_to(DATA_DIR)
    env = {**os.environ, "JAX_ENABLE_X64": "1" if x64 else "0"}
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]


def test_readme_has_the_examples():
    assert len(BLOCKS) == 3, "README: the tour, the model and the point-cloud examples"


@pytest.mark.parametrize("x64", [True, False], ids=["x64", "x32"])
def test_readme_tour_and_model(tmp_path, x64):
    # the tour defines `tensor`, which the model example uses
    _run(BLOCKS[0] + "\n" + BLOCKS[1], tmp_path, x64)


@pytest.mark.slow
@pytest.mark.parametrize("x64", [True, False], ids=["x64", "x32"])
def test_readme_point_clouds(tmp_path, x64):
    _run(BLOCKS[2], tmp_path, x64)
