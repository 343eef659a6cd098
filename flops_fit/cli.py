"""The ``flops-fit`` command: ``plan``, ``sweep``, ``tune``, ``fit``, ``predict``.

Every SweepConfig field is a flag by its flat name (``--points-per-budget 5``), generated
from the nested config groups; a preset supplies the rest (``tiny`` by default). Errors exit
with status 2 and one line naming the problem.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import typing
from typing import TYPE_CHECKING, Any, Sequence

from flops_fit.config import DEFAULT_VERIFY_FACTOR, FLAT_FIELDS, PRESETS
from flops_fit.errors import PlanError

if TYPE_CHECKING:
    from flops_fit.results.result import Prediction

#: Fields set through dedicated flags, or not from the command line at all: the law has its
#: own flags, the driver fills in the tokenizer and threads, step hooks are Python callables.
_SPECIAL = {"simulate", "tokenizer_json", "threads", "step_hooks"}


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> typing.NoReturn:  # one line, not the usage block
        self.exit(2, f"flops-fit: error: {message} (see {self.prog} --help)\n")


def _flag_type(field: dataclasses.Field) -> tuple[Any, dict[str, Any]]:
    hint = str(field.type)
    if "tuple" in hint:
        return float, {"nargs": "+"}
    if hint.startswith("bool"):
        return None, {"action": argparse.BooleanOptionalAction}
    if hint.startswith("float | str"):  # a number or a word (--gpus-per-trial auto); the config checks it
        return _number_or_word, {}
    if hint.startswith("int | str"):  # a count or a word (--workers-per-trial auto); the config converts it
        return str, {}
    for name, kind in (("int", int), ("float", float)):
        if hint.startswith(name):
            return kind, {}
    return str, {}


def _number_or_word(text: str) -> float | str:
    try:
        return float(text)
    except ValueError:
        return text


def _flag_fields() -> list[tuple[str, dataclasses.Field, type]]:
    """(flat name, field, declaring class) of every config field that is a flag."""
    out = []
    for name, (_group, cls) in FLAT_FIELDS.items():
        if name not in _SPECIAL:
            out.append((name, next(f for f in dataclasses.fields(cls) if f.name == name), cls))
    return out


def add_config_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--preset", default="tiny", help=f"named preset: {', '.join(sorted(PRESETS))} (default tiny)")
    docs: dict[type, dict[str, str]] = {}
    for name, field, cls in _flag_fields():
        kind, extra = _flag_type(field)
        doc = docs.setdefault(cls, _field_docs(cls)).get(name)
        kwargs = dict(default=None, dest=name, help=doc, **extra)
        if kind is not None:
            kwargs["type"] = kind
        if name == "verify":  # --verify alone means the default factor, --verify 5 a factor
            kwargs.update(nargs="?", const=DEFAULT_VERIFY_FACTOR, metavar="FACTOR")
        parser.add_argument("--" + name.replace("_", "-"), **kwargs)
    parser.add_argument("--simulate", action="store_true",
                        help="trials return losses from a known law (Besiroglu et al. 2024 refit) plus noise")
    parser.add_argument("--simulate-noise", type=float, default=None, help="multiplicative noise of --simulate")


def _field_docs(cls: type) -> dict[str, str]:
    """The short description of each field of ``cls``, from its attribute docstrings."""
    import ast
    import inspect
    import textwrap

    docs: dict[str, str] = {}
    body = ast.parse(textwrap.dedent(inspect.getsource(cls))).body[0].body
    for node, after in zip(body, body[1:]):
        if isinstance(node, ast.AnnAssign) and isinstance(after, ast.Expr) and isinstance(after.value, ast.Constant):
            docs[node.target.id] = " ".join(str(after.value.value).split()).replace("%", "%%")
    return docs


def config_from_args(args: argparse.Namespace):
    from flops_fit.config import preset

    base = preset(args.preset)
    changes = {name: getattr(args, name) for name, _f, _c in _flag_fields() if getattr(args, name, None) is not None}
    if args.simulate:
        from flops_fit.fitting.synthetic import DEFAULT_SIMULATED_LAW

        law = dict(DEFAULT_SIMULATED_LAW)
        if args.simulate_noise is not None:
            law["noise"] = args.simulate_noise
        changes["simulate"] = law
    return base.replace(**changes)


def cmd_plan(args: argparse.Namespace) -> int:
    from flops_fit.data.stories import setup_of
    from flops_fit.engine.sweep import SIMULATED_RESOURCES, default_workload
    from flops_fit.planning.grid import format_plan
    from flops_fit.planning.rules import TrainingRules
    from flops_fit.trainer.throughput import local_gpu_bytes

    cfg = config_from_args(args)
    workload = default_workload(cfg)
    specs = workload.plan(cfg.plan)
    from flops_fit.trainer.throughput import local_gpus

    rule = cfg.resource_rule(local_gpu_bytes).for_sweep(specs, cfg.cluster_gpus or local_gpus())
    print(format_plan(specs, resources=rule.describe, resources_label="resources" if workload.trial_cpus is None
                      else "real sweep"))
    if workload.trial_cpus is not None:
        print(SIMULATED_RESOURCES.format(cpus=workload.trial_cpus))
    print(TrainingRules(cfg.plan).describe(setup_of(cfg)))
    if cfg.tune:
        from flops_fit.engine.lr_scan import CHECK_SEEDS, LR_MULTIPLIERS

        print(f"first: the learning-rate rule measured on this grid (flops-fit tune: {len(LR_MULTIPLIERS)} rates at "
              f"3 sizes, then the rule's and the best rate at {CHECK_SEEDS} seeds each, in <sweep>/tune/); the rates "
              "above are then replaced by the measured rule's")
    if cfg.plan.adapt:
        from flops_fit.engine.sweep import ADAPTIVE_NOTE

        print(ADAPTIVE_NOTE.replace("the first budget runs as above", "the first budget runs as above (later "
                                    "budgets shown on the prior)"))
    if cfg.verify is not None:
        print(f"then one verification run at C={cfg.verify * max(cfg.plan.budgets):.3g} ({cfg.verify:g}x the largest "
              "budget) at the fitted N_opt")
    if args.estimate:
        import os

        from flops_fit.engine.estimate import estimate_sweep_seconds, format_estimate
        from flops_fit.planning.resources import trial_slots
        mean_gpus = sum(rule.gpus_for(s) for s in specs) / max(1, len(specs))  # auto: shares differ by trial
        # slots of one-worker trials where the count varies by trial (auto): each trial's time is divided by its own
        fixed = cfg.workers_per_trial if isinstance(cfg.workers_per_trial, int) else 1
        workers = rule.workers_for
        slots = trial_slots(os.cpu_count() or 1, cfg.cpus_per_trial * fixed, local_gpus(), mean_gpus * fixed,
                            cfg.max_concurrent_trials)
        try:
            if cfg.tune:  # its scan, then its check (the rule's and the best rate, seeds each): same shapes
                from flops_fit.engine.lr_scan import scan_sizes

                picked = scan_sizes(specs)
                for stage, copies in (("tune scan", len(LR_MULTIPLIERS)), ("tune check", 2 * CHECK_SEEDS - 1)):
                    stage_specs = [s for s in picked for _ in range(copies)]
                    print(f"{stage}: " + format_estimate(estimate_sweep_seconds(
                        stage_specs, cfg.cpus_per_trial, slots, compile=cfg.train.compile, workers=workers)))
            print(format_estimate(estimate_sweep_seconds(specs, cfg.cpus_per_trial, slots, compile=cfg.train.compile,
                                                         workers=workers)))
        except (RuntimeError, MemoryError) as exc:  # torch.OutOfMemoryError is a RuntimeError
            print(f"estimate failed: {' '.join(str(exc).split())[:200]}; plan without --estimate, "
                  "or pass --max-batch-size to probe smaller batches", file=sys.stderr)
            return 2
    return 0


def cmd_sweep(args: argparse.Namespace) -> int:
    from flops_fit.ray import sweep

    sweep(config_from_args(args))
    return 0


def cmd_tune(args: argparse.Namespace) -> int:
    from flops_fit.ray import tune

    tune(config_from_args(args))
    return 0


def _load_result(args: argparse.Namespace):
    from flops_fit.results.result import Result

    return Result.from_path(args.path, param_count=args.param_count, n_boot=args.n_boot, seed=args.seed)


def cmd_fit(args: argparse.Namespace) -> int:
    from pathlib import Path

    from flops_fit.results.table import results_path

    result = _load_result(args)
    print(result.format_table())  # the notes are part of the table's text
    out_dir = Path(args.out) if args.out else results_path(args.path).parent
    written = result.save(out_dir)
    print(f"wrote {len(written)} files to {out_dir}")
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    result = _load_result(args)
    for flops in args.flops:
        p = result.predict(flops)
        print(_format_prediction(flops, p))
    return 0


def _format_prediction(flops: float, p: Prediction) -> str:
    get = p.get if isinstance(p, dict) else lambda k, d=None: getattr(p, k, d)
    parts = [f"C={flops:.3g}:"]
    for key, label in (("n", "N"), ("d", "D"), ("loss", "loss")):
        value, interval = get(key), get(f"{key}_interval")
        text = f"{label}={value:.4g}" if value is not None else f"{label}=?"
        if interval is not None and all(v is not None for v in interval):
            text += f" [{interval[0]:.4g}, {interval[1]:.4g}]"
        parts.append(text)
    for w in get("warnings", []) or []:
        parts.append(f"(warning: {w})")
    return " ".join(parts)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="flops-fit", description="Compute-optimal model size and tokens from IsoFLOP sweeps.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    p = sub.add_parser("plan", help="print the IsoFLOP grid a sweep would run")
    add_config_flags(p)
    p.add_argument("--estimate", action="store_true",
                   help="also time a short training probe here and estimate the sweep's wall time")
    p.set_defaults(func=cmd_plan)
    p = sub.add_parser("sweep", help="run the sweep on Ray, write results.parquet, fit and plot")
    add_config_flags(p)
    p.set_defaults(func=cmd_sweep)
    p = sub.add_parser("tune", help="measure the learning-rate rule on the grid's sizes (writes recipe.json for --recipe)")
    add_config_flags(p)
    p.set_defaults(func=cmd_tune)
    for name, func, text in (("fit", cmd_fit, "refit a results table and write table, fits.json, plots"),
                             ("predict", cmd_predict, "predict N, D and loss for FLOPs budgets")):
        p = sub.add_parser(name, help=text)
        p.add_argument("path", help="sweep directory or results.parquet")
        p.add_argument("--param-count", default="n", help="which parameter count is N: n, n_non_embedding, n_matmul")
        p.add_argument("--n-boot", type=int, default=200, help="bootstrap resamples for intervals")
        p.add_argument("--seed", type=int, default=0)
        if name == "fit":
            p.add_argument("--out", default=None, help="where to write outputs (default: beside the table)")
        else:
            p.add_argument("--flops", type=float, nargs="+", required=True, help="FLOPs budgets to predict")
        p.set_defaults(func=func)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (PlanError, ValueError, OSError) as exc:  # OSError: unreachable hub, unreadable files
        print(f"flops-fit: error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("flops-fit: interrupted; rerun the same command to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
