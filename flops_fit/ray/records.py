"""A trial's final record in the sweep directory, and what it reports to Tune.

A finished trial writes its final record to ``<record_dir>/<trial_id>.json`` (atomically,
before reporting it) and reports only a summary of it (``REPORTED``): the driver reads the row
from the record (``flops_fit.ray.backend.finished_row``). A trial restarted after its driver
died finds its record and reports it instead of training again.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from flops_fit.atomic import atomic_write_text
from flops_fit.engine.sweep import SPEC_ID
from flops_fit.results.table import FINISHED_STATUSES


def clean(metrics: dict[str, Any]) -> dict[str, Any]:
    """Tune wants plain, non-null values; map ``trial_id`` to ``spec_id`` (Tune owns trial_id)."""
    out = {k: v for k, v in metrics.items() if v is not None}
    if "trial_id" in out:
        out[SPEC_ID] = out.pop("trial_id")
    return out


#: What a finished trial reports to Tune: what the progress lines, the trackers and the searcher
#: read. The full row (some 45 columns and the curve) is the trial's record in the sweep
#: directory, which the driver reads; Tune keeps statistics of every numeric key it is sent in
#: its experiment state, rewritten at each snapshot (15 KB a trial for the full row).
REPORTED = (SPEC_ID, "status", "loss", "train_loss", "wall_s", "tokens_per_s", "n", "tokens", "flops", "budget",
            "resumed", "replayed", "error", "node_id")


def summary(record: dict[str, Any]) -> dict[str, Any]:
    return {k: record[k] for k in REPORTED if k in record}


def read_record(record: Path, trial_id: str) -> dict[str, Any] | None:
    """A finished trial's record, or None when it is missing or damaged.

    A record that does not parse, or names another trial or no final status, is moved aside
    to ``<trial>.json.bad`` (kept for inspection) and the trial retrains, like a damaged shard.
    """
    if not record.is_file():
        return None
    try:
        data = json.loads(record.read_text())
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
        if data.get(SPEC_ID, trial_id) != trial_id or data.get("status") not in FINISHED_STATUSES:
            raise ValueError(f"does not match trial {trial_id}")
        return data
    except (ValueError, UnicodeDecodeError) as exc:  # JSONDecodeError is a ValueError
        print(f"damaged finished-trial record {record} ({exc}); moved to {record.name}.bad, retraining",
              flush=True)
        record.replace(record.with_name(record.name + ".bad"))
        return None


def finish_record(record: Path, metrics: dict[str, Any], resumed: bool, gpus: float) -> dict[str, Any]:
    """The trial's final record, written atomically to ``record`` (before it is reported)."""
    import ray

    metrics["node_id"] = ray.get_runtime_context().get_node_id()
    metrics["gpus"] = gpus
    metrics["resumed"] = resumed
    if metrics.get("loss") is not None and not math.isfinite(metrics["loss"]):
        metrics["loss"] = None
    final = clean(metrics)
    atomic_write_text(record, json.dumps(final))
    return final
