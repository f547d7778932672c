"""Execute the notebooks in ``notebooks/`` (they must run from start to end without error)."""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest
from conftest import data_path
from nbclient import NotebookClient

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"

# each notebook runs in a fresh kernel that compiles everything again (about a minute in all):
# in the slow step (CI runs it); the notebooks choose their own precision
pytestmark = pytest.mark.slow


def run_notebook(name: str, timeout: int = 300) -> nbformat.NotebookNode:
    """Execute ``notebooks/<name>`` with ``notebooks/`` as working directory; return it.

    Nothing is written back: the committed notebook keeps its own outputs.
    """
    path = NOTEBOOKS / name
    if not path.exists():
        pytest.fail(f"notebook {path} does not exist", pytrace=False)
    notebook = nbformat.read(path, as_version=4)
    client = NotebookClient(
        notebook,
        timeout=timeout,
        kernel_name="python3",
        resources={"metadata": {"path": str(NOTEBOOKS)}},
    )
    client.execute()
    return notebook


def _outputs(notebook: nbformat.NotebookNode) -> str:
    """All text printed by the code cells, concatenated."""
    texts = []
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            texts.append(output.get("text", "") or output.get("data", {}).get("text/plain", ""))
    return "\n".join(texts)


def test_managing_gradients_notebook():
    data_path("radial-spectrum.mts")
    notebook = run_notebook("managing-gradients.ipynb")
    output = _outputs(notebook)
    # the tutorial's gradient metadata, and every check printed True: equal properties,
    # equal(multiply), equal(pow), allclose under jit, explicit == implicit gradients
    # printed in metatensor's format
    assert "samples: [sample, system, atom]" in output
    assert "components: [xyz, o3_mu]" in output
    assert output.count("True") == 5 and "False" not in output


def _printed_numbers(output: str, prefix: str) -> list[float]:
    """The numbers printed after ``prefix`` on the last output line that starts with it."""
    lines = [line for line in output.splitlines() if line.startswith(prefix)]
    assert lines, f"no output line starts with {prefix!r}"
    return [float(word) for word in lines[-1][len(prefix) :].split()]


def test_nn_modules_basic_notebook():
    output = _outputs(run_notebook("nn-modules-basic.ipynb"))
    # plain arrays and TensorMaps follow the same loss curves, the MLP fits to round-off
    for model in ("[Linear]", "[Linear, ReLU, Linear]"):
        (difference,) = _printed_numbers(output, f"{model:22} max difference of sqrt(loss):")
        assert difference < 1e-10
    for data in ("arrays:    ", "TensorMaps:"):
        (loss,) = _printed_numbers(output, f"final loss of the MLP on {data}")
        assert loss < 1e-27


def test_nn_modules_equivariant_notebook():
    data_path("spherical-expansion.mts")
    output = _outputs(run_notebook("nn-modules-equivariant.ipynb"))
    (bound,) = _printed_numbers(output, "least-squares bound")
    assert bound > 0.1
    for model in ("linear", "MLP"):
        # the invariant block is fitted, the random covariant block stays at the bound
        invariant, covariant = _printed_numbers(output, model)
        assert invariant < 1e-12
        assert covariant == pytest.approx(bound, rel=1e-6)


def test_trajectory_notebook(monkeypatch):
    # CI settings: fewer frames and epochs, a one-layer gate-points network
    monkeypatch.setenv("EQX_TENSOR_NOTEBOOK_SMALL", "1")
    output = _outputs(run_notebook("trajectory.ipynb"))
    assert "small settings: True" in output
    # the data are learnable: the least-squares pair model is far below the zero predictor
    (ratio,) = re.findall(r"least-squares pair model test MSE: \S+, (\S+) times lower", output)
    assert float(ratio) > 1000
    rows = {
        name: (float(mse), float(error))
        for name, mse, error in re.findall(
            r"^(.+): test MSE (\S+), equivariance error (\S+),", output, flags=re.MULTILINE
        )
    }
    assert set(rows) == {"zero predictor", "MLP", "small TP", "gate points"}
    zero = rows["zero predictor"][0]
    assert rows["gate points"][0] < 0.5 * zero
    # float32: the equivariant models to round-off, the MLP not at all
    assert rows["small TP"][1] < 1e-4 and rows["gate points"][1] < 1e-4
    assert rows["MLP"][1] > 1e-3
