"""``report.html``: one self-contained page of a sweep, readable offline and attachable to an
email or a pull request.

It only assembles what the Result already produces: the text report (embedded whole, so a
section added to ``Result.format_table`` appears here with no change), the plot PNGs (as
data URIs), the compute-optimal table, the fits with their intervals (``Result.to_dict``),
the notes and the per-trial table with each trial's training curve as an inline SVG.
No scripts, no external links: nothing to fetch, nothing to block.
"""

from __future__ import annotations

import base64
import html
import json
import math
from pathlib import Path
from typing import Any, Iterable

from flops_fit.atomic import atomic_write_text

REPORT_FILENAME = "report.html"

#: Per-trial columns shown (those present); the curve is drawn after them.
TRIAL_COLUMNS = ("trial_id", "status", "budget", "n", "tokens", "flops", "loss", "train_loss", "steps", "lr",
                 "tokens_per_s", "wall_s", "error")

_STYLE = """body{font:14px/1.45 system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
h1{font-size:1.5em}h2{font-size:1.15em;margin-top:1.6em;border-bottom:1px solid #ddd}
pre{background:#f6f6f6;padding:.8em;white-space:pre-wrap;overflow-wrap:anywhere;font-size:12.5px}
table{border-collapse:collapse;font-size:12.5px}td,th{border:1px solid #ddd;padding:2px 6px;text-align:right}
th{background:#f0f0f0}img{max-width:100%;border:1px solid #eee;margin:.4em 0}
.notes li{color:#8a4b00}"""


def _fmt(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _table(rows: list[dict[str, Any]], columns: Iterable[str], extra: list[str] | None = None) -> str:
    columns = list(columns)
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns + (["curve"] if extra is not None else []))
    body = []
    for i, row in enumerate(rows):
        cells = "".join(f"<td>{html.escape(_fmt(row.get(c)))}</td>" for c in columns)
        if extra is not None:
            cells += f"<td>{extra[i]}</td>"
        body.append(f"<tr>{cells}</tr>")
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


def curve_svg(curve_json: Any, width: int = 160, height: int = 36) -> str:
    """A sparkline of a trial's train loss against tokens (the results table's ``curve``)."""
    try:
        points = [(float(p["tokens"]), float(p["train_loss"])) for p in json.loads(curve_json or "[]")]
    except (TypeError, ValueError, KeyError):
        return ""
    points = [(x, y) for x, y in points if math.isfinite(x) and math.isfinite(y)]
    if len(points) < 2:
        return ""
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    x0, x1, y0, y1 = min(xs), max(xs), min(ys), max(ys)
    sx = (width - 2) / ((x1 - x0) or 1.0)
    sy = (height - 2) / ((y1 - y0) or 1.0)
    path = " ".join(f"{1 + (x - x0) * sx:.1f},{height - 1 - (y - y0) * sy:.1f}" for x, y in points)
    return (f'<svg class="curve" width="{width}" height="{height}" viewBox="0 0 {width} {height}">'
            f'<polyline fill="none" stroke="#1f77b4" stroke-width="1.2" points="{path}"/>'
            f"<title>train loss {ys[0]:.3g} → {ys[-1]:.3g}</title></svg>")


#: The fits shown in full (``Result.to_dict``'s keys).
FIT_KEYS = ("isoflop", "parametric", "envelope", "comparison")
APPROACH_COLUMNS = ("approach", "a (N_opt ∝ C^a)", "interval", "b (D_opt ∝ C^b)", "stands on")


def approaches(result: Any) -> list[dict[str, Any]]:
    """One row per Chinchilla approach: its exponents and interval, or why it has none."""

    def row(name: str, fit: Any, stands_on: str, missing: str) -> dict[str, Any]:
        if fit is None or not math.isfinite(getattr(fit, "a", math.nan)):
            return {"approach": name, "a (N_opt ∝ C^a)": missing, "stands on": stands_on}
        iv = fit.interval(lambda f: f.a)
        return {"approach": name, "a (N_opt ∝ C^a)": f"{fit.a:.3f}", "b (D_opt ∝ C^b)": f"{fit.b:.3f}",
                "interval": "" if iv is None else f"[{iv[0]:.3f}, {iv[1]:.3f}]", "stands on": stands_on}

    par = result.parametric
    law = par if par is not None and par.converged and par.determined is not False else None
    return [row("1: envelope", result.envelope, "the lowest loss at each C across sizes' loss curves",
                "not available (one token count per size)" if result.envelope is None else "unusable"),
            row("2: IsoFLOP", result.isoflop, "each budget's parabola minimum", "unusable"),
            row("3: parametric", law, "L = E + A/N^α + B/D^β", "undetermined" if par is not None else "not fitted")]


def _image(path: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<figure><img alt="{html.escape(path.stem)}" src="data:image/png;base64,{data}"></figure>'


def render_html(result: Any, plots: Iterable[Path] = (), title: str | None = None) -> str:
    """The page as a string: ``result`` is a :class:`flops_fit.results.result.Result`."""
    name = title or (result.path.parent.name if result.path is not None else "sweep")
    parts = [f"<h1>flops_fit report: {html.escape(name)}</h1>",
             "<h2>Report</h2>", f"<pre>{html.escape(result.format_table())}</pre>"]
    if result.primary is not None:
        t = result.table()
        parts += ["<h2>Compute-optimal table</h2>", _table(t.to_dict(orient="records"), t.columns)]
    parts += ["<h2>Three approaches, side by side</h2>", _table(approaches(result), APPROACH_COLUMNS)]
    images = [_image(Path(p)) for p in plots if Path(p).suffix == ".png" and Path(p).is_file()]
    if images:
        parts += ["<h2>Plots</h2>", *images]
    fits = result.to_dict()
    parts += ["<h2>Fits (with intervals)</h2>",
              f"<pre>{html.escape(json.dumps({k: fits[k] for k in FIT_KEYS}, indent=1))}</pre>"]
    if result.notes:
        parts += ["<h2>Notes</h2>", '<ul class="notes">' + "".join(f"<li>{html.escape(n)}</li>" for n in result.notes)
                  + "</ul>"]
    df = result.results
    rows = df.to_dict(orient="records")
    curves = [curve_svg(r.get("curve")) for r in rows]
    parts += [f"<h2>Trials ({len(rows)})</h2>", _table(rows, [c for c in TRIAL_COLUMNS if c in df.columns], curves)]
    return ("<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>flops_fit report: {html.escape(name)}</title><style>{_STYLE}</style></head><body>"
            + "\n".join(parts) + "</body></html>\n")


def write_html(result: Any, out_dir: str | Path, plots: Iterable[Path] = ()) -> Path:
    """Write ``report.html`` into ``out_dir`` (atomically) and return its path."""
    return atomic_write_text(Path(out_dir) / REPORT_FILENAME, render_html(result, plots))
