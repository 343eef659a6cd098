"""What survives what: degenerate tables, refused options, damaged finished-trial records,
plain-text errors, the driver lock."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from flops_fit.cli import main
from flops_fit.config import preset
from flops_fit.errors import PlanError
from flops_fit.fitting.synthetic import simulate_isoflop
from flops_fit.results import table as results_io
from flops_fit.results.check import check_table
from flops_fit.results.result import Result


@pytest.fixture(scope="module")
def table() -> pd.DataFrame:
    return simulate_isoflop([1e15, 1e16, 1e17], 5, noise=0.0, seed=0)


def _write(df: pd.DataFrame, tmp_path) -> str:
    path = tmp_path / results_io.RESULTS_FILENAME
    df.to_parquet(path)
    return str(path)


# --- item 8: degenerate results tables never reach the fits -------------------------------
@pytest.mark.parametrize("damage, note", [
    ("nan_budget", "dropped 1 of"),
    ("zero_budget", "dropped 2 of"),
    ("string_budget", "coerced"),
    ("equal_losses", "undetermined: every usable run has the same loss"),
    ("single_n", "undetermined: every usable run has the same n"),
])
def test_fit_and_predict_survive_degenerate_tables(table, tmp_path, capsys, damage, note):
    df = table.copy()
    if damage == "nan_budget":
        df.loc[0, "budget"] = np.nan  # was IndexError in the frontier
    elif damage == "zero_budget":
        df.loc[0, "budget"], df.loc[1, "budget"] = 0.0, -1e15  # was matplotlib's "Invalid vmin or vmax"
    elif damage == "string_budget":
        df["budget"] = df["budget"].map(lambda b: f"{b:g}")  # was UFuncNoLoopError
    elif damage == "equal_losses":
        df["loss"] = 3.0  # was ZeroDivisionError
    elif damage == "single_n":
        df["n"] = int(df["n"].iloc[0])  # was a confident N_opt from Approach 3
    path = _write(df, tmp_path)
    assert main(["fit", path, "--out", str(tmp_path / "out"), "--n-boot", "0"]) == 0
    undetermined = damage in ("equal_losses", "single_n")
    rc = main(["predict", path, "--flops", "1e18", "--n-boot", "0"])
    out = capsys.readouterr()
    assert "Traceback" not in out.err + out.out
    assert note in out.out
    if undetermined:  # refused in one line naming why, not a made-up N_opt
        assert rc != 0 and "no usable fit" in out.err and note in out.err
        assert Result(df, n_boot=0).primary is None
    else:
        assert rc == 0 and "C=1e+18" in out.out


def test_check_table_keeps_good_rows_and_coerces_numeric_text(table):
    df = table.copy()
    df["budget"] = df["budget"].astype(str)
    cleaned, notes, fittable = check_table(df)
    assert fittable and len(cleaned) == len(table) and cleaned["budget"].dtype == float
    assert any("coerced" in n for n in notes)


# --- item 7: options that were silently accepted -------------------------------------------
@pytest.mark.parametrize("change, message", [
    ({"n_boot": -1}, "n_boot must be >= 0"),
    ({"max_concurrent_trials": 0}, "max_concurrent_trials must be >= 1"),
])
def test_bad_options_are_refused(change, message):
    with pytest.raises(PlanError, match=message):
        preset("smoke").replace(**change)


def test_fit_refuses_negative_n_boot(table, tmp_path, capsys):
    assert main(["fit", _write(table, tmp_path), "--n-boot", "-1"]) != 0
    assert "n_boot must be >= 0" in capsys.readouterr().err


# --- item 2: a damaged finished-trial record is treated as missing --------------------------
@pytest.mark.parametrize("text", ['{"status": "ok", "loss": 3.', "[]", '{"status": "ok", "spec_id": "other"}'])
def test_damaged_record_is_moved_aside(tmp_path, text, capsys):
    from flops_fit.ray.records import read_record

    record = tmp_path / "t0.json"
    record.write_text(text)
    assert read_record(record, "t0") is None  # was JSONDecodeError on every rerun
    assert not record.exists() and (tmp_path / "t0.json.bad").read_text() == text
    assert "damaged finished-trial record" in capsys.readouterr().out


def test_good_record_is_replayed(tmp_path):
    from flops_fit.ray.records import read_record

    record = tmp_path / "t0.json"
    record.write_text(json.dumps({"status": "ok", "loss": 3.1, "spec_id": "t0"}))
    assert read_record(record, "t0")["loss"] == 3.1


# --- housekeeping: errors stored as plain text ----------------------------------------------
def test_failed_row_error_has_no_ansi_codes():
    from flops_fit.engine.sweep import _failed
    from flops_fit.planning.grid import plan

    spec = plan(preset("smoke").plan)[0]
    row = _failed(spec, "\x1b[36mray::trial\x1b[0m \x1b[1;31mRuntimeError\x1b[0m: boom")
    assert row["error"] == "ray::trial RuntimeError: boom"


# --- fault 3: the driver lock is refused while held, taken over when stale ---------------------
def test_driver_lock_refuses_a_live_holder_and_takes_over_a_dead_one(tmp_path):
    import socket
    import subprocess
    import sys
    import time

    from flops_fit.engine.storage import LOCK_NAME, driver_lock

    lock = tmp_path / LOCK_NAME
    host, now = socket.gethostname(), time.time()
    lock.write_text(json.dumps({"pid": 1, "host": host, "started": now, "lease_until": now + 100}))
    with pytest.raises(PlanError, match="is in use by another driver"):  # pid 1 is alive
        with driver_lock(tmp_path):
            pass
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    lock.write_text(json.dumps({"pid": int(dead.stdout), "host": host, "started": now, "lease_until": now + 100}))
    with driver_lock(tmp_path):  # dead pid on this host: stale
        assert json.loads(lock.read_text())["pid"] != int(dead.stdout)
    assert not lock.exists()
    lock.write_text(json.dumps({"pid": 1, "host": "elsewhere", "started": now - 500, "lease_until": now - 1}))
    with driver_lock(tmp_path):  # another host's expired lease: stale
        pass


def test_a_damaged_record_retrains_in_a_real_sweep(ray_session, tmp_path):
    # Item 2 through real Tune workers: a truncated finished-trial record failed its trial on
    # every attempt (JSONDecodeError, recorded `failed`); now it is moved aside and retrained.
    from flops_fit.config import SweepConfig
    from flops_fit.engine.storage import FINISHED_DIR
    from flops_fit.planning.grid import plan
    from flops_fit.ray import sweep

    law = {"E": 1.8, "A": 480.0, "B": 2100.0, "alpha": 0.35, "beta": 0.37, "noise": 0.003}
    cfg = SweepConfig.of(budgets=(1e18, 1e19), points_per_budget=3, span=12.0, vocab_size=32000, seq_len=1024,
                         simulate=law, storage_path=str(tmp_path), name="dmg", n_boot=0)
    victim = plan(cfg.plan)[0].trial_id
    finished = tmp_path / "dmg" / FINISHED_DIR
    finished.mkdir(parents=True)
    (finished / f"{victim}.json").write_text('{"status": "ok", "loss": 3.')
    result = sweep(cfg, progress=False)
    assert set(result.results["status"]) == {"ok"}
    assert (finished / f"{victim}.json.bad").read_text() == '{"status": "ok", "loss": 3.'
    assert (finished / f"{victim}.json").is_file()  # its new, good record
