"""A Result's files beside its results table: table.txt, table.csv, fits.json, the plots and
report.html, each written atomically."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Protocol

import pandas as pd

from flops_fit.atomic import atomic_write_text


class Savable(Protocol):
    """What of a ``Result`` its files are written from (``Result`` itself imports this module)."""

    primary: str | None
    fit_data: pd.DataFrame

    def format_table(self) -> str: ...
    def table(self) -> pd.DataFrame: ...
    def to_dict(self) -> dict[str, Any]: ...
    def plot(self, out_dir: Path) -> list[Path]: ...


def save_result(result: Savable, out: Path) -> list[Path]:
    """Write every file of ``result`` into ``out``; return their paths."""
    written = [atomic_write_text(out / "table.txt", result.format_table() + "\n")]
    if result.primary is not None:
        written.append(atomic_write_text(out / "table.csv", result.table().to_csv(index=False)))
    written.append(atomic_write_text(out / "fits.json", json.dumps(result.to_dict(), indent=2) + "\n"))
    if not result.fit_data.empty:
        written += result.plot(out)
    from flops_fit.results.html import write_html

    written.append(write_html(result, out, written))
    return written
