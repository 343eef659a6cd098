"""The sweep's printed summary: the compute-optimal table, one line per fit (Approach 2,
Approach 3, Approach 1 where sizes have several token counts, their agreement, seed noise, parameter counts, backtest, verification) and the
notes. ``Result.format_table`` calls it; pure formatting over a fitted ``Result``."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Iterable

from flops_fit.fitting.checks import describe_backtest
from flops_fit.fitting.parametric import E_FLOOR_FRACTION
from flops_fit.results.verification import verification_lines

if TYPE_CHECKING:
    from flops_fit.fitting.envelope import EnvelopeFit
    from flops_fit.fitting.isoflop import IsoFLOPFit
    from flops_fit.fitting.parametric import ParametricFit

PRIMARY_LABELS = {"isoflop": "Approach 2 (IsoFLOP parabolas)", "parametric": "Approach 3 (parametric law)"}


def format_summary(result: Any, budgets: Iterable[float] | None = None) -> str:
    n_used, n_all = len(result.fit_data), len(result.results)
    boot = f"{result.level:.0%} bootstrap intervals ({result.n_boot} resamples)" if result.n_boot else "no intervals (n_boot=0)"
    lines = [f"flops_fit: {n_used} of {n_all} runs fitted, N = {result.param_count}; {boot}"]
    if result.primary is not None:
        source = ("loss from Approach 3" if result.law_known else
                  "loss: each swept budget's Approach 2 minimum (Approach 3's law is undetermined)")
        lines.append(f"Compute-optimal allocation: N, D from {PRIMARY_LABELS[result.primary]}; {source}")
        t = result.table(budgets)
        lines.append(f"{'budget':>10}  {'N_opt':>26}  {'D_opt':>26}  {'D/N':>7}  {'loss':>22}")
        for _, r in t.iterrows():
            lines.append(f"{r.budget:>10.3g}  {_iv(r.N_opt, r.N_lo, r.N_hi):>26}  "
                         f"{_iv(r.D_opt, r.D_lo, r.D_hi):>26}  {r.tokens_per_param:>7.1f}  "
                         f"{_iv(r.loss, r.loss_lo, r.loss_hi, '.4g'):>22}")
    if result.isoflop is not None and result.isoflop.usable:
        f, used = result.isoflop, sum(o.used for o in result.isoflop.optima)
        method = f", {f.bootstrap.method} bootstrap" if f.bootstrap is not None else ""
        lines.append(f"Approach 2: N_opt ∝ C^{_iv(f.a, *_ivs(f, 'a'), '.3f')}, D_opt ∝ "
                     f"C^{_iv(f.b, *_ivs(f, 'b'), '.3f')} ({used} of {len(f.optima)} budgets used, "
                     f"local parabolas within {f.window} of each best ln L"
                     f"{', curvature pooled across budgets' if f.curvature == 'pooled' else ''}{method}); "
                     f"Akima cross-check a = {_iv(f.a_interp, math.nan, math.nan, '.3f')}")
    if result.parametric is not None and not result.parametric.converged:
        lines.append("Approach 3: no fit of L = E + A/N^α + B/D^β (L-BFGS converged from none of its starts); "
                     "no law, frontier or irreducible loss from it")
    elif result.parametric is not None:
        p, missing = result.parametric, result.parametric.undetermined()

        def par(name: str, fmt: str) -> str:
            lo, hi = _ivs(p, name)
            if name == "E" and hi <= E_FLOOR_FRACTION * p.e_bound:  # every resample on the bound: no bracket
                return "E undetermined (at its bound 0)"
            if name in missing:
                bracket = f" [{format(lo, fmt)}, {format(hi, fmt)}]" if math.isfinite(lo) and math.isfinite(hi) else ""
                return f"{name} undetermined{bracket}"
            return f"{name}={_iv(getattr(p, name), lo, hi, fmt)}"

        law = ", ".join(par(k, f) for k, f in (("E", ".3g"), ("A", ".3g"), ("B", ".3g"),
                                                ("alpha", ".3f"), ("beta", ".3f")))
        if missing:
            lines.append(f"Approach 3: L = E + A/N^α + B/D^β is NOT determined by these runs: {law}; " + (
                "no frontier or irreducible loss from it" if "E" in missing else
                "no frontier from it; its E is the floor under the loss frontier"))
        else:
            lines.append(f"Approach 3: L = E + A/N^α + B/D^β with {law}; "
                         f"N_opt ∝ C^{_iv(p.a, *_ivs(p, 'a'), '.3f')}")
    if result.envelope is not None and result.envelope.usable:
        f = result.envelope
        method = f", {f.bootstrap.method} bootstrap" if f.bootstrap is not None else ""
        lines.append(f"Approach 1: N_opt ∝ C^{_iv(f.a, *_ivs(f, 'a'), '.3f')}, D_opt ∝ "
                     f"C^{_iv(f.b, *_ivs(f, 'b'), '.3f')} (envelope of {f.sizes} sizes' loss curves, read at "
                     f"{len(f.points)} compute values{method})")
    if result.comparison is not None:
        lines.append(result.comparison.note)
    if result.envelope_agreement is not None:
        lines.append(result.envelope_agreement["note"])
    lines.append(result.noise.describe())
    spent = result.compute()
    if spent["wsd_branches"]:
        lines.append(f"Compute: {spent['flops_spent']:.3e} FLOPs trained ({spent['stems']} WSD stems, "
                     f"{spent['wsd_branches']} branches); the same points as separate cosine runs: "
                     f"{spent['flops_as_cosine_runs']:.3e} ({spent['ratio']:.2f}x)")
    by_count = result.exponents_by_count()
    if len(by_count) > 1:
        lines.append("Approach 2's a by parameter count: " + ", ".join(f"{k} {_iv(v, math.nan, math.nan, '.3f')}" for k, v in by_count.items()))
    lines.append(describe_backtest(result.backtest()))
    if result.verification is not None:
        lines += verification_lines(result.verification)
    lines += [f"note: {n}" for n in result.notes]
    return "\n".join(lines)


def _ivs(fit: IsoFLOPFit | ParametricFit | EnvelopeFit, name: str) -> tuple[float, float]:
    iv = fit.interval(lambda f: getattr(f, name))
    return iv if iv is not None else (math.nan, math.nan)


def _iv(value: float, lo: float, hi: float, fmt: str = ".3g") -> str:
    if value is None or not math.isfinite(value):
        return "n/a"
    text = format(value, fmt)
    if math.isfinite(lo) and math.isfinite(hi):
        text += f" [{format(lo, fmt)}, {format(hi, fmt)}]"
    return text
