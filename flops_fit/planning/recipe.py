"""A measured learning-rate recipe: the scan ``flops-fit tune`` ran, its fit, and the rule.

The rule is ``rule_lr`` (what ``flops_fit.planning.rules.TrainingRules.lr`` applies): lr =
base_lr·(n/lr_n_ref)^-lr_exponent·(batch_tokens/lr_batch_ref)^lr_batch_exponent. A recipe
holds the constants together with the data they were fitted on (every scanned run),
each size's located optimum, and the check that the rule reaches the scan's best loss
within seed noise; a sweep run with it saves the whole file beside its results and prints
its summary with the plan. Built-in recipes (``recipe="tiny"``) live in
``flops_fit/recipes/<name>.json``, measured by the command they record.

Pure Python (json, math): no numpy, torch or Ray, so configs resolve anywhere.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

from flops_fit.errors import PlanError

BUILTIN_DIR = Path(__file__).parents[1] / "recipes"
#: The file a sweep or a tune run keeps its recipe in.
RECIPE_FILENAME = "recipe.json"
#: The PlanConfig fields a recipe sets.
RULE_FIELDS = ("base_lr", "lr_exponent", "lr_n_ref", "lr_batch_ref", "lr_batch_exponent")
#: The sweep options a learning-rate optimum depends on besides N and the batch: the text,
#: its tokenizer, the context, and the optimizer's other settings. A recipe records them
#: (``measured_on``) and a sweep whose options differ is told its rates are not measured.
SETUP_FIELDS = ("source", "tokenizer_name", "vocab_size", "seq_len", "beta2", "weight_decay", "schedule")
#: Adam's square-root batch rule (Malladi et al. 2022), the exponent every recipe states
#: its rate in; measured on the tiny grid in docs/fitting.md.
SQRT_BATCH_RULE = 0.5


def rule_lr(n: float, batch_tokens: float | None, base_lr: float, lr_exponent: float, lr_n_ref: float,
            lr_batch_ref: float | None = None, lr_batch_exponent: float = SQRT_BATCH_RULE) -> float:
    """The learning-rate rule: a power law in the parameter count n, times the batch term
    when the rule has a reference batch (``lr_batch_ref`` tokens a step) and the batch is known."""
    lr = base_lr * (n / lr_n_ref) ** -lr_exponent
    if lr_batch_ref is not None and batch_tokens is not None:
        lr *= (batch_tokens / lr_batch_ref) ** lr_batch_exponent
    return lr


@dataclass(frozen=True)
class SizeOptimum:
    """One scanned size: its best learning rate (a parabola in ln lr through the best scanned
    point and its neighbours), its best scanned loss, ``edge`` when the best was a scan end."""

    n: int
    label: str
    budget: float
    lr_best: float
    loss_best: float
    edge: bool
    batch_tokens: float | None = None
    """Tokens per step of the scan (None in recipes written before the batch term)."""


@dataclass(frozen=True)
class Recipe:
    base_lr: float
    lr_exponent: float
    lr_n_ref: float
    lr_batch_ref: float | None = None
    """Tokens per step ``base_lr`` is stated at; None (older recipes): the rate ignores the batch."""
    lr_batch_exponent: float = SQRT_BATCH_RULE
    scan: list[dict[str, Any]] = field(default_factory=list)
    """Every scanned run: n, label, budget, lr, loss, status."""
    optima: list[SizeOptimum] = field(default_factory=list)
    check: list[dict[str, Any]] = field(default_factory=list)
    """Per size: the rule's lr and the best scanned one, each one's losses over the check's
    seeds and their means, the gap between the means, the seed noise measured at that size,
    and whether the gap is within it (``flops_fit.engine.lr_scan``)."""
    command: str = ""
    """The command that measured it."""
    measured_on: dict[str, Any] = field(default_factory=dict)
    """The ``SETUP_FIELDS`` of the config it was measured with (empty in older recipes)."""
    source: str = ""
    """Where this recipe was read from (a built-in name or a path)."""

    def rule(self) -> dict[str, float]:
        return {k: getattr(self, k) for k in RULE_FIELDS}

    def lr(self, n: float, batch_tokens: float | None = None) -> float:
        return rule_lr(n, batch_tokens, **self.rule())

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("source")
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any], source: str = "") -> "Recipe":
        try:
            optima = [SizeOptimum(**o) for o in d.get("optima", [])]
            measured_on = dict(d.get("measured_on", {}))
            if measured_on.get("source") == "sample":  # written before the version was recorded: the only one then
                measured_on["source"] = "sample:synthetic-v1"
            if measured_on:  # written before WSD: its runs were cosine ones
                measured_on.setdefault("schedule", "cosine")
            return cls(**{**{k: v for k, v in d.items() if k not in ("optima", "measured_on")}, "optima": optima,
                          "measured_on": measured_on, "source": source})
        except TypeError as exc:
            raise PlanError(f"recipe {source or '?'}: not a flops-fit tune recipe ({exc})") from None

    def summary(self) -> str:
        """Two lines for the plan printout: the rule, and what it was measured on."""
        head = f"learning rate: {rule_text(**self.rule())} (recipe {self.source or 'given'}"
        if not self.optima:
            return head + ")"
        sizes = ", ".join(f"{o.label} best {o.lr_best:.2g}{' (scan edge)' if o.edge else ''}" for o in self.optima)
        ok = [c for c in self.check if c.get("within_noise") is not None]
        checked = (f"; rule within seed noise of the scan's best at {sum(c['within_noise'] for c in ok)}/{len(ok)} sizes"
                   if ok else "")
        return f"{head}: {len(self.scan)}-run scan, {sizes}{checked})"


def rule_text(base_lr: float, lr_exponent: float, lr_n_ref: float, lr_batch_ref: float | None = None,
              lr_batch_exponent: float = SQRT_BATCH_RULE) -> str:
    text = f"{base_lr:.3g}·(N/{lr_n_ref:.3g})^-{lr_exponent:.3f}"
    return text + (f"·(B/{lr_batch_ref:.3g} tokens)^{lr_batch_exponent:g}" if lr_batch_ref is not None else "")


def setup_mismatch(recipe: Recipe, ours: dict[str, Any]) -> str | None:
    """A note when a sweep's setup (``ours``, its ``SETUP_FIELDS``: ``flops_fit.data.stories.setup_of``)
    is not the one the recipe was measured on, else None."""
    differ = [k for k, v in recipe.measured_on.items() if k in ours and ours[k] != v]
    if not differ:
        return None
    then = ", ".join(f"{k}={recipe.measured_on[k]!r}" for k in differ)
    now = ", ".join(f"{k}={ours[k]!r}" for k in differ)
    return (f"note: recipe {recipe.source or 'given'} was measured with {then}; this sweep has {now}: its learning "
            f"rates are not measured for this setup (--tune measures them on this grid first)")


def for_schedule(name: str | None, schedule: str) -> str | None:
    """The built-in recipe measured for ``schedule``: a built-in ``<name>`` has its WSD stems'
    rule in ``<name>-wsd`` (measured by ``flops-fit tune --schedule wsd``; a stem's constant
    rate is not cosine's peak). Any other recipe is returned as given."""
    if name is None or "/" in name or name.endswith(".json"):
        return name
    base = name.removesuffix("-wsd")
    wanted = f"{base}-wsd" if schedule == "wsd" else base
    return wanted if (BUILTIN_DIR / f"{wanted}.json").exists() and (BUILTIN_DIR / f"{name}.json").exists() else name


def load(name_or_path: str) -> Recipe:
    """A built-in recipe by name, or a recipe.json (or a directory holding one) by path."""
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        path = path / RECIPE_FILENAME
    if not path.exists() and "/" not in name_or_path and not name_or_path.endswith(".json"):
        path = BUILTIN_DIR / f"{name_or_path}.json"
    if not path.exists():
        builtin = sorted(p.stem for p in BUILTIN_DIR.glob("*.json"))
        raise PlanError(f"recipe {name_or_path!r} not found: give a recipe.json written by `flops-fit tune`, or "
                        f"a built-in one ({', '.join(builtin)})")
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise PlanError(f"recipe {path}: unreadable ({exc})") from None
    return Recipe.from_dict(data, source=name_or_path)


def locate_optimum(lrs: Sequence[float], losses: Sequence[float]) -> tuple[float, float, bool]:
    """(lr, loss, edge) of a scan's minimum: the vertex of the parabola in ln lr through the
    best point and its two neighbours, kept inside them (the best point itself at a scan end
    or where the three are not convex), and the best measured loss: the parabola only places
    the rate, its value at the vertex would be an extrapolation. Non-finite losses (diverged
    runs) count as worst."""
    pts = sorted((math.log(lr), loss if loss is not None and math.isfinite(loss) else math.inf)
                 for lr, loss in zip(lrs, losses))
    i = min(range(len(pts)), key=lambda k: pts[k][1])
    if not math.isfinite(pts[i][1]):
        raise ValueError("every scanned run failed: no optimum")
    if i in (0, len(pts) - 1):
        return math.exp(pts[i][0]), pts[i][1], True
    (x0, y0), (x1, y1), (x2, y2) = pts[i - 1], pts[i], pts[i + 1]
    if not (math.isfinite(y0) and math.isfinite(y2)):
        return math.exp(x1), y1, False
    # Lagrange form of the parabola through three points; its vertex and value there.
    d0, d1, d2 = (x0 - x1) * (x0 - x2), (x1 - x0) * (x1 - x2), (x2 - x0) * (x2 - x1)
    a = y0 / d0 + y1 / d1 + y2 / d2
    b = -(y0 * (x1 + x2) / d0 + y1 * (x0 + x2) / d1 + y2 * (x0 + x1) / d2)
    if a <= 0:
        return math.exp(x1), y1, False
    return math.exp(min(max(-b / (2 * a), x0), x2)), y1, False


def fit_rule(optima: Sequence[SizeOptimum], lr_batch_exponent: float = SQRT_BATCH_RULE) -> dict[str, Any]:
    """Least squares of ln lr_best on ln n: the power law through the sizes' optima, stated
    at the geometric mean of the scanned sizes (where it is best determined). Scans at
    different batches (the batch grows with the budget) are first brought to one reference
    batch, the geometric mean of theirs, by the square-root rule; without batches, no batch term."""
    if len({o.n for o in optima}) < 2:
        raise ValueError("a learning-rate rule needs optima at two or more sizes")
    batched = all(o.batch_tokens for o in optima)
    ref = math.exp(sum(math.log(o.batch_tokens) for o in optima) / len(optima)) if batched else None
    xs = [math.log(o.n) for o in optima]
    ys = [math.log(o.lr_best) - (lr_batch_exponent * math.log(o.batch_tokens / ref) if batched else 0.0)
          for o in optima]
    xm, ym = sum(xs) / len(xs), sum(ys) / len(ys)
    slope = sum((x - xm) * (y - ym) for x, y in zip(xs, ys)) / sum((x - xm) ** 2 for x in xs)
    return {"base_lr": math.exp(ym), "lr_exponent": -slope, "lr_n_ref": float(round(math.exp(xm))),
            "lr_batch_ref": None if ref is None else float(round(ref)), "lr_batch_exponent": lr_batch_exponent}


def save(recipe: Recipe, run_dir: Path) -> Path:
    from flops_fit.atomic import atomic_write

    path = Path(run_dir) / RECIPE_FILENAME
    atomic_write(path, json.dumps(recipe.to_dict(), indent=1).encode())
    return path
