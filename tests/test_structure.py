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


def _runtime_nodes(tree: ast.AST):
    """Every node except those under ``if TYPE_CHECKING:`` (type-only imports never run)."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            yield from (n for child in node.orelse for n in ast.walk(child))
            continue
        yield node
        yield from _runtime_nodes(node)


def test_no_import_cycles_between_flops_fit_modules():
    modules = _modules()
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        deps = set()
        for node in _runtime_nodes(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            else:
                continue
            deps |= {t for t in targets if t in modules and t != name and not name.startswith(t + ".")}
        graph[name] = deps - {"flops_fit"}
    state: dict[str, int] = {}

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for dep in graph[node]:
            assert state.get(dep) != 1, f"import cycle: {' -> '.join(stack[stack.index(dep):] + [dep])}"
            if dep not in state:
                visit(dep, stack + [dep])
        state[node] = 2

    for name in graph:
        if name not in state:
            visit(name, [name])


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


def test_planning_and_fitting_import_neither_torch_nor_ray():
    import subprocess
    import sys

    code = ("import sys; import flops_fit.planning.grid, flops_fit.planning.adaptive, flops_fit.planning.recipe, flops_fit.engine.lr_scan, flops_fit.engine.verify, "
            "flops_fit.config, flops_fit.engine.sweep, flops_fit.results.result, "
            "flops_fit.workloads.simulated, flops_fit.workloads.gpt; "
            "bad = [m for m in ('torch', 'ray') if m in sys.modules]; assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)
