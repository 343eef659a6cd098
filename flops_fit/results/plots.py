"""Figures for a fitted sweep (matplotlib, Agg backend: no display needed).

1. ``isoflop.png``: loss vs N per budget, with the Approach 2 local parabolas and their minima
   (the figure of Hoffmann et al. 2022, Fig. 3 left).
2. ``frontier.png``: N_opt(C) and D_opt(C) with both approaches' fitted lines and bootstrap
   bands (Hoffmann et al. 2022, Fig. 3 centre/right; Fig. A5 compares approaches).
3. ``loss_frontier.png``: predicted compute-optimal loss vs C with the runs (Approach 3's law, or
   when it is undetermined the minima's loss frontier that ``--verify`` predicts with).
4. ``envelope.png`` (when sizes have several token counts): each size's loss against C and the
   envelope's minima (Approach 1; Hoffmann et al. 2022, Fig. 2 left).

Each function takes a ``flops_fit.results.result.Result`` and a path, and returns the path.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import matplotlib

matplotlib.use("Agg")  # before pyplot: render to files on headless workers and CI

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.colors import LogNorm  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.ticker import NullFormatter  # noqa: E402

#: Approach colours used across figures (colour-blind-safe pair from matplotlib's tab10).
C_ISO, C_PAR, C_ENV = "#1f77b4", "#d62728", "#2ca02c"
#: How far past the largest swept budget the frontier figures extend (decades).
EXTEND_DECADES = 2.0
DPI = 160


def _budget_colours(budgets: np.ndarray) -> tuple[Callable[[float], Any], Any]:
    # Stop viridis at 0.9: its last yellows vanish on a white background.
    cmap = matplotlib.colors.ListedColormap(plt.get_cmap("viridis")(np.linspace(0.0, 0.9, 256)))
    lo, hi = float(budgets.min()), float(budgets.max())
    norm = LogNorm(vmin=lo, vmax=hi if hi > lo else lo * 10)
    return (lambda c: cmap(norm(c))), matplotlib.cm.ScalarMappable(norm=norm, cmap=cmap)


def _band(draws: list, fn: Callable[[Any], np.ndarray], level: float) -> tuple[np.ndarray, np.ndarray] | None:
    if len(draws) < 2:
        return None
    values = np.array([fn(d) for d in draws], dtype=float)
    tail = 100 * (1 - level) / 2
    with np.errstate(invalid="ignore"):
        return tuple(np.nanpercentile(values, [tail, 100 - tail], axis=0))


def _num(x: float) -> str:
    """3 significant digits for mathtext: 3120, 633, 1.88, or 1.2 \\times 10^{6}."""
    if x == 0 or not np.isfinite(x):
        return f"{x:g}"
    exp = int(np.floor(np.log10(abs(x))))
    if -2 <= exp <= 4:
        return f"{x:.{max(0, 2 - exp)}f}" if exp < 3 else f"{round(x, 2 - exp):.0f}"
    return f"{x / 10**exp:.2f} \\times 10^{{{exp}}}"


def _save(fig: plt.Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI, bbox_inches="tight")
    plt.close(fig)
    return path


def _n_label(result: Any) -> str:
    return {"n": "parameters N (all)", "n_non_embedding": "parameters N (non-embedding)",
            "n_matmul": "parameters N (matmul weights)"}.get(result.param_count, result.param_count)


def plot_isoflop(result: Any, path: Path) -> Path:
    data, fit = result.fit_data, result.isoflop
    budgets = np.array(sorted(data["budget"].unique()))
    colour, mappable = _budget_colours(budgets)
    fig, ax = plt.subplots(figsize=(7.2, 4.8))
    optima = {o.budget: o for o in (fit.optima if fit is not None else [])}
    for c in budgets:
        sub = data[data["budget"] == c].sort_values(result.param_count)
        n, y = sub[result.param_count].to_numpy(float), sub["loss"].to_numpy(float)
        ax.scatter(n, y, s=16, color=colour(c), zorder=3, linewidths=0)
        opt = optima.get(c)
        if opt is None or not opt.coeffs:
            continue
        # Drawn only over the sizes it was fitted on (a local fit says nothing beyond them).
        x = np.linspace(np.log(opt.n_range[0]), np.log(opt.n_range[1]), 200)
        ax.plot(np.exp(x), np.exp(np.polyval(opt.coeffs, x)), color=colour(c), lw=1.2,
                ls="-" if opt.used else "--", alpha=0.9 if opt.used else 0.6, zorder=2)
        if opt.used:
            ax.scatter([opt.n_opt], [opt.loss_opt], marker="D", s=46, color=colour(c),
                       edgecolors="black", linewidths=0.9, zorder=4)
    if fit is not None and fit.usable:  # the optima's path: N_opt(C) and its parabola loss
        used = [o for o in fit.optima if o.used]
        ax.plot([o.n_opt for o in used], [o.loss_opt for o in used], color="black", lw=0.8,
                ls=":", zorder=1)
    ax.set_xscale("log")
    ax.xaxis.set_minor_formatter(NullFormatter())  # a sub-decade axis labels every minor tick: unreadable
    ax.set_xlabel(_n_label(result))
    ax.set_ylabel("validation loss (nats/token)")
    ax.set_title("IsoFLOP curves (Approach 2)")
    ax.grid(True, which="major", alpha=0.3)
    handles = [
        Line2D([], [], color="0.3", marker="o", ls="", ms=4, label="run"),
        Line2D([], [], color="0.3", lw=1.2, label="local parabola of ln L in ln N"),
        Line2D([], [], color="0.3", marker="D", ls="", ms=6, mec="black", label="minimum ($N_{opt}$)"),
    ]
    if any(not o.used for o in optima.values()):
        handles.append(Line2D([], [], color="0.3", lw=1.2, ls="--", label="budget excluded"))
    # Below the axes: every corner of an IsoFLOP plot holds some budget's points (inside, it sat
    # on the smallest budget's curve); _save's bbox_inches="tight" keeps it in the file.
    ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.13), ncol=len(handles),
              fontsize=8, frameon=False)
    fig.colorbar(mappable, ax=ax, label="FLOPs budget C", pad=0.02)
    return _save(fig, path)


def _c_grid(result: Any) -> np.ndarray:
    budgets = result.fit_data["budget"].to_numpy(float)
    return np.logspace(np.log10(budgets.min()) - 0.3, np.log10(budgets.max()) + EXTEND_DECADES, 200)


def _mark_data_range(ax: plt.Axes, result: Any) -> None:
    ax.axvline(result.fit_data["budget"].max(), color="0.5", lw=0.8, ls=":", zorder=0)


def plot_frontier(result: Any, path: Path) -> Path:
    cs = _c_grid(result)
    iso, par = result.isoflop, result.parametric
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.4), sharex=True)
    for ax, what, label in ((axes[0], "n", "N_opt"), (axes[1], "d", "D_opt")):
        shown: list[float] = []  # every y drawn: a log axis with no positive one cannot be laid out
        for fit, colour, name, ls in ((iso, C_ISO, "Approach 2", "-"), (par, C_PAR, "Approach 3", "--"),
                                      (result.envelope, C_ENV, "Approach 1", ":")):
            if fit is None or not np.isfinite(getattr(fit, "a", np.nan)) or getattr(fit, "determined", None) is False:
                continue
            fn = (lambda f: f.n_opt(cs)) if what == "n" else (lambda f: f.d_opt(cs))
            exp_name = "a" if what == "n" else "b"
            text = f"{name}: ${label[0]}_{{opt}} \\propto C^{{{getattr(fit, exp_name):.3f}}}$"
            if fit.bootstrap is not None:
                lo, hi = fit.interval(lambda f, k=exp_name: getattr(f, k))
                text += f"  [{lo:.3f}, {hi:.3f}]"
                band = _band(fit.bootstrap.draws, fn, fit.bootstrap.level)
                if band is not None:
                    ax.fill_between(cs, *band, color=colour, alpha=0.15, lw=0)
            ax.plot(cs, fn(fit), color=colour, ls=ls, lw=1.6, label=text)
            shown += list(np.ravel(fn(fit)))
        if iso is not None:
            used = [o for o in iso.optima if o.used and np.isfinite(o.n_opt)]
            out = [o for o in iso.optima if not o.used and np.isfinite(o.n_opt) and o.n_opt > 0]
            get = (lambda o: o.n_opt) if what == "n" else (lambda o: o.d_opt)
            ax.scatter([o.budget for o in used], [get(o) for o in used], s=28, color="black",
                       zorder=4, label="IsoFLOP minima")
            shown += [get(o) for o in used + out]
            if out:
                ax.scatter([o.budget for o in out], [get(o) for o in out], s=28, facecolors="none",
                           edgecolors="0.4", zorder=4, label="excluded minima")
        _mark_data_range(ax, result)
        drawn = any(np.isfinite(v) and v > 0 for v in np.asarray(shown, dtype=float))
        ax.set_xlim(cs.min(), cs.max())  # before the log scale: one budget alone gives no x range to autoscale
        ax.set_xscale("log")
        if drawn:
            ax.set_yscale("log")
        else:  # nothing determined: say so (a log axis with no data cannot even be laid out)
            ax.text(0.5, 0.5, "no frontier determined by these runs\n(see the notes)", transform=ax.transAxes,
                    ha="center", va="center", color="0.4")
        ax.set_xlabel("training FLOPs C")
        ax.set_ylabel(f"${label[0]}_{{opt}}$ ({'parameters' if what == 'n' else 'tokens'})")
        ax.grid(True, which="major", alpha=0.3)
        ax.legend(fontsize=7.5, loc="upper left", frameon=False)
    level = next((f.bootstrap.level for f in (iso, par) if f is not None and f.bootstrap), None)
    bands = f"; bands: {level:.0%} bootstrap" if level else ""
    fig.suptitle(f"Compute-optimal frontier (dotted line: largest swept budget{bands})", fontsize=11)
    fig.tight_layout()
    return _save(fig, path)


def plot_loss_frontier(result: Any, path: Path) -> Path:
    data, par, iso = result.fit_data, result.parametric, result.isoflop
    cs = _c_grid(result)
    fig, ax = plt.subplots(figsize=(7.2, 4.8))
    ax.scatter(data["budget"], data["loss"], s=12, color="0.65", zorder=2, linewidths=0, label="runs")
    if iso is not None:
        used = [o for o in iso.optima if o.used]
        ax.scatter([o.budget for o in used], [o.loss_opt for o in used], marker="D", s=36,
                   color=C_ISO, edgecolors="black", linewidths=0.7, zorder=4,
                   label="IsoFLOP parabola minima (Approach 2)")
    if par is not None and par.determined is not False:  # an undetermined law is not drawn as one
        if par.bootstrap is not None:
            band = _band(par.bootstrap.draws, lambda f: f.loss_opt(cs), par.bootstrap.level)
            if band is not None:
                ax.fill_between(cs, *band, color=C_PAR, alpha=0.15, lw=0)
        ax.plot(cs, par.loss_opt(cs), color=C_PAR, lw=1.6,
                label=(f"Approach 3: $L = {_num(par.E)} + {_num(par.A)}/N^{{{par.alpha:.3f}}}"
                       f" + {_num(par.B)}/D^{{{par.beta:.3f}}}$ at $N_{{opt}}, D_{{opt}}$"))
        ax.axhline(par.E, color=C_PAR, lw=0.8, ls="--", label=f"irreducible loss $E = {_num(par.E)}$")
    else:  # what --verify and the backtest predict with: the minima's frontier (above E when determined)
        curve = loss_frontier_curve(result, cs)
        if curve is not None:
            mean, band, label = curve
            if band is not None:
                ax.fill_between(cs, *band, color=C_ISO, alpha=0.12, lw=0)
            ax.plot(cs, mean, color=C_ISO, lw=1.4, ls="--", label=label)
    _mark_data_range(ax, result)
    ax.set_xlim(cs.min(), cs.max())
    ax.set_xscale("log")
    ax.set_xlabel("training FLOPs C")
    ax.set_ylabel("validation loss (nats/token)")
    ax.set_title("Compute-optimal loss (dotted line: largest swept budget)")
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(fontsize=8, loc="upper right", frameon=False)  # loss falls with C: that corner is empty
    return _save(fig, path)


def loss_frontier_curve(result: Any, cs: np.ndarray) -> tuple[np.ndarray, tuple | None, str] | None:
    """The loss frontier (``Result.loss_frontier``) over ``cs``, its lines fitted once: (mean,
    (lo, hi) or None, its label), or None when it is not determined."""
    front = result.loss_frontier(np.asarray(cs, dtype=float))
    if front is None:
        return None
    mean, band, source = front
    return mean, None if band is None else tuple(band), f"loss frontier: {source}"


def plot_envelope(result: Any, path: Path) -> Path:
    data, env = result.fit_data, result.envelope
    sizes = np.array(sorted(data[result.param_count].unique()), dtype=float)
    colour, mappable = _budget_colours(sizes)
    fig, ax = plt.subplots(figsize=(7.2, 4.8))
    c_of = data["flops"] if "flops" in data else 6.0 * data[result.param_count] * data["tokens"]
    for n in sizes:
        rows = data[result.param_count] == n
        c, y = c_of[rows].to_numpy(float), data.loc[rows, "loss"].to_numpy(float)
        order = np.argsort(c)
        ax.plot(c[order], y[order], color=colour(n), lw=1.0, marker="o", ms=3, alpha=0.85, zorder=2)
    if env is not None and env.points:
        ax.plot([p[0] for p in env.points], [p[2] for p in env.points], color="black", lw=1.6, zorder=3,
                label="envelope (lowest loss at each C)")
    ax.set_xscale("log")
    ax.set_xlabel("training FLOPs C")
    ax.set_ylabel("validation loss (nats/token)")
    ax.set_title("Loss against compute, one line a model size (Approach 1)")
    ax.grid(True, which="major", alpha=0.3)
    fig.colorbar(mappable, ax=ax, label=_n_label(result))
    if env is not None and env.points:
        ax.legend(fontsize=8, loc="upper right", frameon=False)
    return _save(fig, path)


def plot_all(result: Any, out_dir: Path) -> list[Path]:
    out_dir = Path(out_dir)
    paths = [
        plot_isoflop(result, out_dir / "isoflop.png"),
        plot_frontier(result, out_dir / "frontier.png"),
        plot_loss_frontier(result, out_dir / "loss_frontier.png"),
    ]
    if getattr(result, "envelope", None) is not None:
        paths.append(plot_envelope(result, out_dir / "envelope.png"))
    return paths
