"""Shared test configuration: float64 on, and the path to the shared metatensor files."""

import os
from pathlib import Path

import jax
import pytest

jax.config.update("jax_enable_x64", True)

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
