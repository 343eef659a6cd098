"""The ``--verify`` record: the loss the fits predict at the verification run's (N, D), the
miss, the band seed noise allows it, and the lines that say so.

Pure numbers and prose (no Ray, no torch, no training): ``flops_fit.engine.verify`` plans and
runs the trial and hands its results row here; ``Result`` reads the record back.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from statistics import NormalDist
from typing import TYPE_CHECKING, Any

from flops_fit.fitting.frontier import LAW

if TYPE_CHECKING:
    from flops_fit.planning.grid import TrialSpec

VERIFY_DIR = "verify"
RECORD = "verification.json"

RECORD_KEYS = ("budget", "factor", "trial_id", "n", "d", "flops", "predicted", "interval", "source", "n_source",
               "measured", "error_pct", "status", "error", "inside_interval", "seed_noise_pct", "noise_band_pct",
               "seed_noise_at")
#: A miss beyond this many standard deviations of (run − prediction) under seed noise alone is
#: no noise: about 5% of pure-noise misses exceed 2 (tests/test_verify.py measures it).
NOISE_SDS = 2.0


def predicted_loss(result: Any, n: float, d: float, flops: float) -> tuple[float | None, list[float] | None, str | None]:
    """(loss, interval, source) at a trial's real (N, D) and FLOPs; (None, None, None) when no fit knows it."""
    if result.law_known:
        par = result.parametric
        iv = par.interval(lambda f: float(f.loss(n, d)))
        return float(par.loss(n, d)), _interval(iv), LAW
    front = result.loss_frontier(flops)
    return front if front is not None else (None, None, None)


def make_record(result: Any, spec: TrialSpec, row: dict[str, Any], n_source: str, factor: float) -> dict[str, Any]:
    status = str(row["status"])
    measured = _number(row.get("loss"))
    predicted, interval, source = predicted_loss(result, spec.n, spec.tokens, spec.flops)
    error = (100.0 * (measured - predicted) / predicted
             if status == "ok" and measured is not None and predicted is not None else None)
    inside = interval[0] <= measured <= interval[1] if error is not None and interval else None
    noise = getattr(result, "noise", None)  # σ in ln L: a fraction of the loss
    noise_pct = 100.0 * float(noise.sigma) if noise is not None and noise.measured else None
    band = miss_sd(result, spec.flops, predicted, interval, source) if predicted is not None else None
    return dict(zip(RECORD_KEYS, (spec.budget, factor, spec.trial_id, spec.n, spec.tokens, spec.flops, predicted,
                                  interval, source, n_source, measured, error, status,
                                  None if status == "ok" else _text(row.get("error")), inside, noise_pct,
                                  None if band is None else 100.0 * NOISE_SDS * band,
                                  noise.where if noise_pct is not None else None)))


def miss_sd(result: Any, flops: float, predicted: float, interval: list[float] | None, source: str) -> float | None:
    """One standard deviation (a fraction of the loss) of the verification run's miss when the
    fits are right and only seed noise moves the numbers: the run's own σ and the prediction's.
    The frontier's part is σ carried through its line (``Result.frontier_noise``); the law's is
    its bootstrap interval (the same design refitted with new noise) read as a normal one. A
    run's σ alone made a miss of 1.1% on real prose "not pinned down" (σ 0.52%), though the
    prediction, extrapolated 3x past its budgets, carries about 1.8 σ of its own."""
    noise = getattr(result, "noise", None)
    if noise is None or not noise.measured:
        return None
    if source != LAW:
        return result.frontier_noise(flops)
    if not interval:
        return None
    z = NormalDist().inv_cdf((1 + result.level) / 2)
    return math.hypot((interval[1] - interval[0]) / (2 * z * predicted), noise.sigma)


def load_record(sweep_dir: Path) -> dict[str, Any] | None:
    """The sweep's last verification record, or None (never verified, or unreadable)."""
    path = Path(sweep_dir) / VERIFY_DIR / RECORD
    try:
        return json.loads(path.read_text()) if path.is_file() else None
    except (OSError, ValueError):
        return None


def format_verification(rec: dict[str, Any]) -> str:
    """``verification: C=<budget> N=<n> D=<tokens> predicted loss <x> [lo, hi] measured loss <y> (<error>%)``."""
    if rec["status"] == "not run":
        return f"verification: C={rec['budget']:.3g} not run ({' '.join(str(rec['error']).split())})"
    line = f"verification: C={rec['budget']:.3g} N={rec['n']} D={rec['d']} "
    if rec["predicted"] is None:
        line += "predicted loss undetermined"
    else:
        line += "predicted loss " + (f"({rec['source']}) " if rec["source"] != LAW else "") + f"{rec['predicted']:.4f}"
        if rec["interval"]:
            line += f" [{rec['interval'][0]:.4f}, {rec['interval'][1]:.4f}]"
    status, why = rec["status"], " ".join(str(rec.get("error") or "").split())[:120]
    if rec["measured"] is None:
        line += f" measured loss none ({status}{': ' + why if why else ''})"
    elif status != "ok":  # a run that never left the plateau measures its step count, not the law
        line += f" measured loss {rec['measured']:.4f} ({status}: not a valid measurement, no error %)"
    else:
        line += f" measured loss {rec['measured']:.4f}"
        if rec["error_pct"] is not None:
            line += f" ({rec['error_pct']:+.2f}%)"
    if not rec["n_source"].startswith("Approach"):
        line += f"; N from {rec['n_source']}"
    return line


def verification_lines(rec: dict[str, Any]) -> list[str]:
    """The verification line and, when the measured loss can be set against an interval, its verdict."""
    verdict = verification_verdict(rec)
    return [format_verification(rec)] + ([verdict] if verdict else [])


def verification_verdict(rec: dict[str, Any]) -> str | None:
    """The line under the verification line that says whether the fits can be trusted at C_v.
    A miss within ``NOISE_SDS`` standard deviations of what seed noise alone gives
    (``noise_band_pct``, from ``miss_sd``) passes. Beyond it, a measured loss outside the
    prediction interval means the fitted frontier does not hold there (it bends, or the swept
    budgets sit in a transient); inside it is no pass either: the interval was merely wide
    (three budgets leave the frontier line one residual degree of freedom), and one run that
    far off says the loss at C_v is not pinned down. Without a measured seed noise the
    interval alone decides."""
    inside = rec.get("inside_interval")
    if inside is None:
        return None
    lo, hi = rec["interval"]
    where = f"the measured loss {rec['measured']:.4f} lies {{}} the predicted interval [{lo:.4f}, {hi:.4f}]"
    noise, band, error = rec.get("seed_noise_pct"), rec.get("noise_band_pct"), rec["error_pct"]
    at = f" {rec['seed_noise_at']}" if rec.get("seed_noise_at") else ""  # records before it was kept: unsaid
    # the band and the miss to the error's own two decimals: a verdict near the edge must read as decided
    explained = (f"the ±{band:.2f}% that seed noise ({noise:.1f}% a run{at}) explains in the run and the fits"
                 if band else "")
    # inside the interval or not: the law's interval is its mean's, narrower than a run's noise
    if band and round(abs(error), 2) <= round(band, 2):
        return "verification: " + where.format("inside" if inside else "outside") + f", within {explained}"
    if not inside:
        return ("note: verification: " + where.format("OUTSIDE") + f": the fits do not extrapolate to "
                f"C={rec['budget']:.3g}; sweep budgets closer to it before trusting their predictions there")
    if band:
        return ("note: verification: " + where.format("inside") + f", but {abs(error):.2f}% from the prediction, "
                f"beyond {explained}: the interval is wide, not the fits right; the loss at C={rec['budget']:.3g} "
                "is not pinned down, sweep a budget nearer it first")
    return "verification: " + where.format("inside")


def _number(value: Any) -> float | None:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def _interval(iv: Any) -> list[float] | None:
    if iv is None or not all(_number(v) is not None for v in iv):
        return None
    return [float(iv[0]), float(iv[1])]


def _text(value: Any) -> str | None:
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else str(value)
