"""Checks on a fitted sweep: Approach 3 in the budgets' own FLOPs units, a backtest, and
the exponent under each parameter count. numpy and pandas only; each takes the pieces of a
``flops_fit.results.result.Result`` it needs, so it stays importable without plotting."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Callable

import numpy as np
import pandas as pd

from flops_fit.fitting.budget import interp_extended, vertex
from flops_fit.fitting.frontier import LAW
from flops_fit.fitting.isoflop import fit_isoflop
from flops_fit.models.gpt_spec import PARAM_COUNTS

if TYPE_CHECKING:
    from flops_fit.fitting.parametric import ParametricFit


def parametric_a_in_budget_units(data: pd.DataFrame, param_count: str) -> Callable[[ParametricFit], float] | None:
    """Approach 3's frontier exponent under the budgets' own FLOPs convention, or None when
    that convention is C = 6·N·D with N = ``param_count`` (the closed form then applies).

    The law L(N, D) is minimised along each swept budget's IsoFLOP curve D = C / f(N), with
    f(N) the runs' own FLOPs per token (piecewise linear in log-log); a is the slope of
    ln N_opt against ln C over the swept budgets. This puts Approach 3 in Approach 2's units
    instead of setting a C = 6ND frontier beside budgets counted another way.
    """
    conventions = set(data.get("flops_convention", pd.Series(dtype=str)).dropna())
    if param_count == "n" and conventions <= {"6n"}:
        return None
    if not {"flops", "tokens", param_count} <= set(data):
        return None
    n = data[param_count].to_numpy(float)
    fpt = data["flops"].to_numpy(float) / data["tokens"].to_numpy(float)
    if np.unique(n).size < 2:
        return None
    budgets = np.unique(data["budget"].to_numpy(float))
    grid = np.linspace(np.log(n.min()) - math.log(10), np.log(n.max()) + math.log(10), 801)
    ln_fg = interp_extended(grid, np.log(n), np.log(fpt))

    def exponent(fit: ParametricFit) -> float:
        if len(budgets) < 2:
            return math.nan
        opt = []
        for c in budgets:
            loss = fit.law_loss(np.exp(grid), c / np.exp(ln_fg))
            if not np.any(np.isfinite(loss)):
                return math.nan
            i = int(np.nanargmin(loss))
            if i in (0, grid.size - 1):
                return math.nan  # the law's minimum left the range: no frontier here
            opt.append(_refined(grid[i - 1:i + 2], loss[i - 1:i + 2]))
        return float(np.polyfit(np.log(budgets), opt, 1)[0])

    return exponent


def _refined(x: np.ndarray, loss: np.ndarray) -> float:
    """The grid argmin ``x[1]`` moved to the vertex of the parabola through it and its two
    neighbours (Approach 2's ``vertex``): the argmin alone puts ±step/2 (±0.003 in a) on every
    budget's N_opt. The argmin itself where a neighbour is not finite or the three are not convex."""
    if not np.all(np.isfinite(loss)):
        return float(x[1])
    xv, _ = vertex(np.polyfit(x - x[1], loss, 2), x[1])
    return float(xv) if np.isfinite(xv) else float(x[1])


def exponents_by_count(data: pd.DataFrame, names: list[str] | None = None,
                       sigma: float | None = None) -> dict[str, float]:
    """Approach 2's a with N counted each way the table records (all, non-embedding, matmul
    weights); nanochat measured 0.37, 0.54 and 0.70 on one set of runs. ``sigma``, the measured
    seed noise, flags the same outliers the main fit leaves out, so ``n`` here is its a."""
    out = {}
    for count in PARAM_COUNTS:
        if count not in data:
            continue
        values = pd.to_numeric(data[count], errors="coerce").to_numpy(float)
        if not np.all(np.isfinite(values) & (values > 0)):
            continue
        out[count] = fit_isoflop(data["budget"], values, data["loss"], tokens=data["tokens"], names=names,
                                 sigma=sigma).a
    return out


def backtest(result: Any) -> dict[str, Any] | None:
    """Refit without the largest budget and compare its prediction there with what was
    measured (N_opt and D_opt from that budget's own local fit, and its best run's loss)."""
    data = result.fit_data
    budgets = np.unique(data["budget"].to_numpy(float))
    if budgets.size < 3:
        return None
    top = float(budgets[-1])
    measured = next((o for o in (result.isoflop.optima if result.isoflop else []) if o.budget == top), None)
    held = type(result)(data[data["budget"] < top], param_count=result.param_count,
                        n_boot=result.n_boot, seed=result.seed, level=result.level)  # the intervals the header states
    if held.primary is None:
        return {"budget": top, "predicted": None, "note": "the fit without it is unusable: "
                + "; ".join(held.notes[:2])}
    p = held._predict(top, warn=False)
    loss, loss_iv, loss_source = p.loss, p.loss_interval, LAW if p.loss is not None else None
    if loss is None:  # no determined law: the frontier of the other budgets' minima, as --verify predicts
        front = held.loss_frontier(top)
        if front is not None:
            loss, loss_iv, loss_source = front
    out = {"budget": top, "predicted": {"n": p.n, "d": p.d, "loss": loss, "n_interval": p.n_interval,
                                        "d_interval": p.d_interval, "loss_interval": loss_iv,
                                        "loss_source": loss_source},
           "measured": {"n": math.nan if measured is None or not measured.used else measured.n_opt,
                        "d": math.nan if measured is None or not measured.used else measured.d_opt,
                        "loss": float(data.loc[data["budget"] == top, "loss"].min())},
           "primary": held.primary}
    out["ratios"] = {k: out["measured"][k] / out["predicted"][k] if out["predicted"][k] else math.nan
                     for k in ("n", "d", "loss")}
    return out


def describe_backtest(bt: dict[str, Any] | None) -> str:
    if bt is None:
        return "backtest: needs at least 3 budgets (refits without the largest)"
    if bt["predicted"] is None:
        return f"backtest at C={bt['budget']:.3g}: {bt['note']}"
    p, m = bt["predicted"], bt["measured"]

    def one(key: str, label: str, fmt: str) -> str:
        iv = p.get(f"{key}_interval")
        ivs = f" [{format(iv[0], fmt)}, {format(iv[1], fmt)}]" if iv and all(map(math.isfinite, iv)) else ""
        meas = "n/a" if m[key] is None or not math.isfinite(m[key]) else format(m[key], fmt)
        return f"{label} predicted {format(p[key], fmt) if p[key] is not None else 'n/a'}{ivs}, measured {meas}"

    source = p.get("loss_source")
    label = f"best loss ({source})" if source and source != LAW else "best loss"
    return (f"backtest (refit without C={bt['budget']:.3g}, predicting it): " + "; ".join(
        [one("n", "N_opt", ".3g"), one("d", "D_opt", ".3g"), one("loss", label, ".4g")]))
