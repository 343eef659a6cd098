"""The code's shape, checked: configs declare each field once, imports flow one way, no
private names cross modules, no drill code on the production path, no outside references."""

from __future__ import annotations

import ast
import dataclasses
import re
from pathlib import Path

from flops_fit.config import FLAT_FIELDS, DataOptions, SweepConfig, TrainOptions
from flops_fit.planning.config import PlanConfig

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "flops_fit"


def _modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(ROOT).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def test_sweep_config_declares_each_planning_data_and_training_field_once():
    groups = [PlanConfig, DataOptions, TrainOptions]
    names = [f.name for cls in groups for f in dataclasses.fields(cls)]
    names += [f.name for f in dataclasses.fields(SweepConfig) if f.name not in ("plan", "data", "train")]
    assert len(names) == len(set(names)), sorted({n for n in names if names.count(n) > 1})
    top = {f.name for f in dataclasses.fields(SweepConfig)}
    assert not top & {f.name for cls in groups for f in dataclasses.fields(cls)}
    assert set(FLAT_FIELDS) == set(names)


def test_flat_names_reach_the_nested_fields_from_python_and_the_command_line():
    from flops_fit.cli import build_parser, config_from_args

    cfg = SweepConfig.of(seq_len=64, source="sample", compile=True, cpus_per_trial=2.0)
    assert (cfg.plan.seq_len, cfg.data.source, cfg.train.compile, cfg.cpus_per_trial) == (64, "sample", True, 2.0)
    assert cfg.seq_len == 64 and cfg.compile is True  # flat reads
    args = build_parser().parse_args(["plan", "--preset", "smoke", "--seq-len", "48", "--max-epochs", "3",
                                      "--compile", "--points-per-budget", "4"])
    got = config_from_args(args)
    assert (got.plan.seq_len, got.data.max_epochs, got.train.compile, got.plan.points_per_budget) == (48, 3.0, True, 4)


#: The layers, lowest first. A module may import modules of its own layer or of layers below
#: it, never above: type-only (``if TYPE_CHECKING:``) and lazy (in-function) imports included,
#: so a type that lives in the wrong layer shows up too. docs/architecture.md describes them.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("leaves", ("flops_fit.errors", "flops_fit.atomic")),
    ("model specs", ("flops_fit.models.gpt_spec", "flops_fit.models")),
    ("fitting", ("flops_fit.fitting",)),
    ("planning", ("flops_fit.planning",)),
    ("config", ("flops_fit.config",)),
    ("results", ("flops_fit.results",)),
    ("data", ("flops_fit.data",)),
    ("models", ("flops_fit.models.gpt",)),
    ("trainer", ("flops_fit.trainer",)),
    ("workloads", ("flops_fit.workloads",)),
    ("engine", ("flops_fit.engine",)),
    ("ray", ("flops_fit.ray",)),
    ("entry points", ("flops_fit.api", "flops_fit.cli", "flops_fit.model", "flops_fit.fit", "flops_fit.examples",
                      "flops_fit")),
]
#: Third-party packages a layer never imports, lazily or not: planning, fitting and results run on
#: a laptop that refits a cluster's sweep (no torch, no Ray); only the Ray adapter imports Ray.
FORBIDDEN = {
    "model specs": ("torch", "ray"), "fitting": ("torch", "ray"), "planning": ("torch", "ray"),
    "config": ("torch", "ray"), "results": ("torch", "ray"), "data": ("ray",), "models": ("ray",),
    "trainer": ("ray",), "workloads": ("ray",), "engine": ("torch", "ray"),
}


def layer_of(module: str) -> int:
    """The index in LAYERS of the longest prefix that names ``module``'s package or module."""
    best, index = "", -1
    for i, (_name, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > len(best):
                best, index = prefix, i
    return index


def import_graph(package: Path) -> dict[str, dict[str, int]]:
    """module -> {imported flops_fit module or third-party top-level name: first line}, every
    import statement counted (module level, in functions, under ``TYPE_CHECKING``)."""
    root = package.parent
    paths = {}
    for path in package.rglob("*.py"):
        parts = path.relative_to(root).with_suffix("").parts
        paths[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    graph: dict[str, dict[str, int]] = {}
    for name, path in paths.items():
        deps: dict[str, int] = {}
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            else:
                continue
            for t in targets:
                if t in paths and t != name and not name.startswith(t + "."):
                    deps.setdefault(t, node.lineno)
                elif not t.startswith("flops_fit"):
                    deps.setdefault(t.split(".")[0], node.lineno)
        graph[name] = {d: line for d, line in deps.items() if d != "flops_fit"}
    return graph


def layer_violations(package: Path) -> list[str]:
    """Every import that goes up a layer, names a forbidden third-party package, or imports the CLI."""
    graph, out = import_graph(package), []
    for name, deps in sorted(graph.items()):
        layer = layer_of(name)
        assert layer >= 0, f"{name} is in no layer of LAYERS"
        for dep, line in sorted(deps.items()):
            if dep.startswith("flops_fit"):
                if dep == "flops_fit.cli":
                    out.append(f"{name}:{line} imports flops_fit.cli (nothing imports the command line)")
                elif layer_of(dep) > layer:
                    out.append(f"{name}:{line} ({LAYERS[layer][0]}) imports {dep} ({LAYERS[layer_of(dep)][0]}), "
                               "a layer above it")
            elif dep in FORBIDDEN.get(LAYERS[layer][0], ()):
                out.append(f"{name}:{line} ({LAYERS[layer][0]}) imports {dep}")
    return out


def import_cycles(package: Path) -> list[str]:
    graph = {m: {d for d in deps if d.startswith("flops_fit")} for m, deps in import_graph(package).items()}
    state: dict[str, int] = {}
    cycles: list[str] = []

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for dep in sorted(graph.get(node, ())):
            if state.get(dep) == 1:
                cycles.append(" -> ".join(stack[stack.index(dep):] + [dep]))
            elif dep not in state:
                visit(dep, stack + [dep])
        state[node] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
    return cycles


def test_imports_flow_down_the_layers():
    assert not layer_violations(PACKAGE), "\n".join(layer_violations(PACKAGE))


def test_no_import_cycles_between_flops_fit_modules_type_only_and_lazy_imports_included():
    assert not import_cycles(PACKAGE), import_cycles(PACKAGE)


def test_a_planted_upward_import_a_cycle_and_a_torch_import_in_planning_are_each_caught(tmp_path):
    import shutil

    copy = tmp_path / "flops_fit"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    grid = copy / "planning" / "grid.py"
    grid.write_text(grid.read_text() + "\n\ndef _planted():\n    import torch  # noqa\n"
                    "    from flops_fit.engine.sweep import run_sweep  # noqa\n")
    found = layer_violations(copy)
    assert any("flops_fit.planning.grid:" in v and "imports flops_fit.engine.sweep (engine)" in v for v in found), found
    assert any("flops_fit.planning.grid:" in v and v.endswith("imports torch") for v in found), found
    spec = copy / "models" / "gpt_spec.py"
    spec.write_text(spec.read_text() + "\nif False:\n    from flops_fit.models.gpt import GPT  # noqa\n")
    assert any("flops_fit.models.gpt_spec:" in v for v in layer_violations(copy))
    budget = copy / "fitting" / "budget.py"  # fitting.isoflop imports budget; a type-only import back is a cycle
    budget.write_text(budget.read_text().replace("from __future__ import annotations\n", "from __future__ import "
                      "annotations\nfrom typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                      "    from flops_fit.fitting.isoflop import IsoFLOPFit  # noqa\n", 1))
    assert any("flops_fit.fitting.budget" in c and "flops_fit.fitting.isoflop" in c for c in import_cycles(copy))


def test_at_most_ten_modules_at_the_top_and_none_much_past_four_hundred_lines():
    top = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert len(top) <= 10, top
    long = {str(p.relative_to(ROOT)): n for p in PACKAGE.rglob("*.py")
            if (n := len(p.read_text().splitlines())) > 400}
    assert not long, long


def test_no_module_imports_another_modules_private_names():
    offenders = []
    for name, path in _modules().items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("flops_fit"):
                offenders += [f"{name}: from {node.module} import {a.name}" for a in node.names
                              if a.name.startswith("_") and node.module != name]
    assert not offenders, offenders


def test_no_fault_drill_code_on_the_production_path():
    pattern = re.compile(r"SIGKILL|os\.kill|poison")
    hits = [f"{p.relative_to(ROOT)}:{i}" for p in PACKAGE.rglob("*.py")
            for i, line in enumerate(p.read_text().splitlines(), 1) if pattern.search(line)]
    assert not hits, hits


def test_nothing_points_outside_the_repository():
    pattern = re.compile(r"DESIGN\.md|NOTES-ray-hf|\.\./shared")
    files = [*PACKAGE.rglob("*.py"), *(ROOT / "tests").rglob("*.py"), *(ROOT / "benchmarks").rglob("*"),
             *(ROOT / "docs").rglob("*.md"), *(ROOT / "examples").rglob("*.py"), ROOT / "README.md",
             *(ROOT / "cluster").rglob("*")]
    me = Path(__file__).resolve()
    hits = [f"{p.relative_to(ROOT)}:{i}" for p in files if p.is_file() and p.resolve() != me
            for i, line in enumerate(p.read_text(errors="replace").splitlines(), 1) if pattern.search(line)]
    assert not hits, hits


def test_planning_fitting_results_and_the_engine_load_neither_torch_nor_ray():
    """Importing them (everything a laptop needs to plan, refit and report) loads neither."""
    import subprocess
    import sys

    light = sorted(m for m in _modules() if m.split(".")[1:2] and m.split(".")[1] in
                   ("planning", "fitting", "results", "engine")) + [
        "flops_fit.config", "flops_fit.models.gpt_spec", "flops_fit.workloads.simulated", "flops_fit.workloads.gpt",
        "flops_fit.fit"]
    code = (f"import sys, importlib; [importlib.import_module(m) for m in {light!r}]; "
            "bad = [m for m in ('torch', 'ray') if m in sys.modules]; assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)
