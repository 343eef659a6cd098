"""The results table: one row per trial, its schema, and atomic parquet I/O.

A sweep's table lives at ``<storage_path>/<name>/results.parquet``. Refitting needs only
this file (no torch, no Ray), so a laptop can refit a cluster's sweep in a second.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterable, Mapping

import pyarrow as pa
import pyarrow.parquet as pq

from flops_fit.atomic import atomic_write

RESULTS_FILENAME = "results.parquet"

STATUSES = ("ok", "diverged", "undertrained", "failed")
#: A trial that ended with one of these is done: it is recorded, never retried.
FINISHED_STATUSES = ("ok", "diverged", "undertrained")
#: Trained its whole budget to a finite loss (an undertrained run too: it is only left out of the fits).
TRAINED_STATUSES = ("ok", "undertrained")

#: Column name -> arrow type. Rows may omit optional columns (they become null); the first
#: block is required of every row (the public minimum a results table must carry).
SCHEMA = pa.schema(
    [
        # required: identity, plan, outcome
        ("trial_id", pa.string()),
        ("budget", pa.float64()),  # planned FLOPs under `flops_convention`
        ("n", pa.int64()),  # model.n(): all trainable parameters
        ("n_non_embedding", pa.int64()),
        ("d_model", pa.int64()),
        ("num_layers", pa.int64()),
        ("tokens", pa.int64()),  # tokens actually trained on
        ("flops", pa.float64()),  # tokens x flops-per-token under `flops_convention`
        ("loss", pa.float64()),  # held-out validation loss (nats/token); null unless ok
        ("status", pa.string()),  # ok | diverged | undertrained | failed
        # parameter groups and FLOPs conventions (record all, let the fit choose)
        ("n_embedding", pa.int64()),
        ("n_head", pa.int64()),
        ("n_matmul", pa.int64()),
        ("flops_convention", pa.string()),
        ("flops_6n", pa.float64()),
        ("flops_6n_non_embedding", pa.float64()),
        ("flops_attention", pa.float64()),
        # shape and training setup
        ("num_heads", pa.int64()),
        ("d_ff", pa.int64()),
        ("vocab_size", pa.int64()),
        ("seq_len", pa.int64()),
        ("batch_size", pa.int64()),
        ("lr", pa.float64()),
        ("steps", pa.int64()),
        ("seed", pa.int64()),
        # the schedule (flops_fit.planning.schedule): a WSD branch is one (N, D) point of its stem
        ("schedule", pa.string()),  # cosine | wsd
        ("stem", pa.string()),  # the WSD stem a branch cooled down from (null for a cosine run)
        ("cooldown_tokens", pa.int64()),  # of `tokens`, those trained in the branch's cooldown
        ("flops_trained", pa.float64()),  # what this trial trained itself: a branch from its stem's kept state
        # measurements
        ("train_loss", pa.float64()),
        ("tokens_per_s", pa.float64()),
        ("wall_s", pa.float64()),
        ("node_id", pa.string()),
        ("gpus", pa.float64()),  # all of the trial's workers together
        ("workers", pa.int64()),  # data-parallel processes that trained it (flops_fit.trainer.distributed)
        ("epochs", pa.float64()),  # passes over the training data (above 1: repeated data)
        ("plateau_loss", pa.float64()),  # the loss a trained run gets below (flops_fit.data.baselines)
        ("origin", pa.string()),  # why the trial is in the sweep: grid, recentred, extend-low/-high, densify (flops_fit.planning.adaptive)
        ("error", pa.string()),
        ("curve", pa.string()),  # JSON list of {step, tokens, train_loss}
    ]
)

REQUIRED_COLUMNS = tuple(SCHEMA.names[:10])


def results_path(path: str | os.PathLike[str]) -> Path:
    """Accept a sweep directory or a ``results.parquet`` path; return the parquet path."""
    p = Path(path)
    if p.is_dir():
        p = p / RESULTS_FILENAME
    if not p.is_file():
        raise FileNotFoundError(f"no results table at {p} (expected a sweep directory or a .parquet file)")
    return p


def to_table(rows: Iterable[Mapping[str, Any]]) -> pa.Table:
    rows = [dict(r) for r in rows]
    for i, row in enumerate(rows):
        missing = [c for c in REQUIRED_COLUMNS if c not in row]
        if missing:
            raise ValueError(f"results row {i} lacks required columns {missing}")
        if row["status"] not in STATUSES:
            raise ValueError(f"results row {i} has status {row['status']!r}; expected one of {STATUSES}")
    columns = {name: [row.get(name) for row in rows] for name in SCHEMA.names}
    return pa.table(columns, schema=SCHEMA)


def write_results(rows: Iterable[Mapping[str, Any]], path: str | os.PathLike[str]) -> Path:
    """Validate the rows and write the table atomically (``flops_fit.atomic``)."""
    table = to_table(rows)
    return atomic_write(path, lambda fh: pq.write_table(table, fh))


def read_results(path: str | os.PathLike[str]):
    """Read a results table (sweep directory or parquet path) as a pandas DataFrame."""
    p = results_path(path)
    table = pq.read_table(p)
    missing = [c for c in REQUIRED_COLUMNS if c not in table.column_names]
    if missing:
        raise ValueError(f"{p} is not a flops_fit results table: missing columns {missing}")
    return table.to_pandas()

