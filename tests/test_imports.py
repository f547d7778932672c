"""The package imports light and in layer order: no cycles, no reaching back, no private imports.

Layers, lowest first: the data model (``_backend``, ``_compile``, ``labels``, ``block``,
``tensormap``), ``io``, the operations (``_moving``, ``operations``), ``o3``, ``nn``,
``atomistic``. A module may import from its own layer or below, never above (also not inside a
function), and never another package's private (``_``-prefixed) module.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

# about the source and fresh interpreters, not numbers: once per suite run is enough
pytestmark = pytest.mark.x64_only

PACKAGE = Path(__file__).resolve().parents[1] / "eqx_tensor"

# module (dotted, without the "eqx_tensor." prefix) prefix -> layer
LAYERS: dict[str, int] = {
    "_backend": 0,
    "_compile": 0,
    "labels": 1,
    "block": 2,
    "tensormap": 3,
    "io": 4,
    "_moving": 5,
    "operations": 5,
    "o3": 6,
    "nn": 7,
    "atomistic": 8,
}

HEAVY = ("flax", "optax", "e3nn_jax", "torch", "metatensor", "scipy", "matplotlib", "tqdm", "ase")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _layer(module: str) -> int | None:
    head = module.split(".")[0]
    return LAYERS.get(head)


def _imports(path: Path) -> list[tuple[str, int]]:
    """Every eqx_tensor module imported by ``path`` (also inside functions), with its line."""
    module = _module_name(path)
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                target = ".".join([*base, node.module] if node.module else base)
            elif node.module and node.module.startswith("eqx_tensor"):
                target = node.module.removeprefix("eqx_tensor").lstrip(".")
            else:
                continue
            # `from . import o3` imports the submodule o3
            names = [alias.name for alias in node.names]
            for name in names:
                candidate = f"{target}.{name}" if target else name
                is_module = (PACKAGE / Path(*candidate.split("."))).with_suffix(".py").exists() or (
                    PACKAGE / Path(*candidate.split("."))
                ).is_dir()
                found.append((candidate if is_module else target, node.lineno))
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("eqx_tensor."):
                    found.append((alias.name.removeprefix("eqx_tensor."), node.lineno))
    return [(target, line) for target, line in found if target]


def _modules() -> list[Path]:
    return sorted(
        p for p in PACKAGE.rglob("*.py") if p.name != "__init__.py" or p.parent != PACKAGE
    )


def test_layers_only_import_downwards():
    violations = []
    for path in _modules():
        module = _module_name(path)
        layer = _layer(module)
        assert layer is not None, f"{module} is in no layer: add it to LAYERS in this test"
        for target, line in _imports(path):
            target_layer = _layer(target)
            assert target_layer is not None, f"{module}:{line} imports unknown module {target}"
            if target_layer > layer:
                violations.append(
                    f"{module}:{line} imports {target} (layer {target_layer} > {layer})"
                )
    assert not violations, "imports that reach up a layer:\n" + "\n".join(violations)


def test_no_private_imports_across_packages():
    violations = []
    for path in _modules():
        module = _module_name(path)
        home = module.split(".")[0]
        for target, line in _imports(path):
            parts = target.split(".")
            if parts[0] == home:
                continue
            # a subpackage's private module, or a private top-level module of another layer
            # (the data model's own `_backend` helpers are shared by design)
            private = [p for p in parts[1:] if p.startswith("_")]
            if private:
                violations.append(f"{module}:{line} imports private {target}")
    assert not violations, "\n".join(violations)


def test_no_import_cycles():
    graph: dict[str, set[str]] = {}
    for path in _modules():
        module = _module_name(path)
        graph[module] = {t for t, _ in _imports(path) if t != module}
    state: dict[str, int] = {}

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for target in sorted(graph.get(node, ())):
            if target not in graph:
                continue
            if state.get(target) == 1:
                cycle = [*stack[stack.index(target) :], target] if target in stack else [target]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if state.get(target) is None:
                visit(target, [*stack, target])
        state[node] = 2

    for node in sorted(graph):
        if state.get(node) is None:
            visit(node, [node])


def _fresh(code: str) -> str:
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False, timeout=300
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_import_eqx_tensor_loads_no_heavy_dependency():
    """`import eqx_tensor` costs jax's import and little more: flax, e3nn-jax, optax wait."""
    code = (
        "import sys, eqx_tensor\n"
        f"print(','.join(m for m in {HEAVY!r} if m in sys.modules))\n"
        "eqx_tensor.TensorMap, eqx_tensor.load, eqx_tensor.sum_over_samples\n"
    )
    loaded = _fresh(code).strip()
    assert loaded == "", f"import eqx_tensor imported {loaded}"


@pytest.mark.parametrize(
    ("module", "allowed"),
    [
        # e3nn-jax (seconds to import, with sympy) waits for an e3nn-jax conversion
        ("eqx_tensor.o3", set()),
        ("eqx_tensor.nn", {"flax"}),
        ("eqx_tensor.atomistic", set()),
    ],
)
def test_subpackages_import_only_what_they_need(module, allowed):
    code = f"import sys, {module}\nprint(','.join(m for m in {HEAVY!r} if m in sys.modules))\n"
    loaded = set(filter(None, _fresh(code).strip().split(",")))
    assert loaded <= allowed, f"import {module} imported {sorted(loaded - allowed)}"


def test_modules_import_alone_in_layer_order():
    """Each module imports first in a fresh interpreter (no hidden order dependence)."""
    modules = sorted((_module_name(p) for p in _modules()), key=lambda m: (_layer(m), m))
    code = (
        "import importlib, sys\n"
        f"for name in {modules!r}:\n"
        "    for m in [m for m in sys.modules if m.startswith('eqx_tensor')]:\n"
        "        del sys.modules[m]\n"
        "    importlib.import_module('eqx_tensor.' + name)\n"
        "print('ok')\n"
    )
    assert _fresh(code).strip() == "ok"


def test_point_cloud_network_runs_without_e3nn_jax():
    """Harmonics, coupling coefficients and the gate-points network need no e3nn-jax (whose
    import, with sympy, costs seconds at a model's first call), nor optax or torch."""
    code = (
        "import sys, jax, numpy as np\n"
        "from eqx_tensor import atomistic, nn, o3\n"
        "systems = atomistic.Systems.from_arrays(np.random.default_rng(0).normal(size=(5, 3)))\n"
        "pairs = atomistic.neighbor_list(systems, 3.0)\n"
        "model = nn.GatePointsNetwork(irreps_hidden='4x0e+4x0o+2x1e+2x1o', layers=1, lmax=2)\n"
        "params = model.init(jax.random.key(0), systems, pairs)\n"
        "jax.block_until_ready(model.apply(params, systems, pairs).block(0).values)\n"
        "o3.clebsch_gordan(3, 2, 4), o3.spherical_harmonics_array(4, np.ones((2, 3)))\n"
        f"print(','.join(m for m in {HEAVY!r} + ('sympy',) if m in sys.modules))\n"
    )
    loaded = set(filter(None, _fresh(code).strip().split(",")))
    assert loaded <= {"flax", "scipy"}, f"the network imported {sorted(loaded - {'flax', 'scipy'})}"
