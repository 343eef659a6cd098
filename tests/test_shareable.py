"""Results a team can share: files honour the umask and stay atomic and durable; the IsoFLOP
legend covers no data; report.html is one self-contained page that a real browser renders."""

from __future__ import annotations

import os
import shutil
import stat

import numpy as np
import pytest

from flops_fit import atomic
from flops_fit.results import plots
from flops_fit.results import table as results_io
from flops_fit.results.html import REPORT_FILENAME, curve_svg, render_html
from flops_fit.results.result import Result


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.mark.parametrize("mask, want", [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_atomic_write_honours_the_umask(tmp_path, mask, want):
    old = os.umask(mask)
    try:
        atomic.atomic_write(tmp_path / "a.bin", b"x")
        atomic.atomic_write(tmp_path / "b.bin", lambda fh: fh.write(b"y"))
    finally:
        os.umask(old)
    assert _mode(tmp_path / "a.bin") == want and _mode(tmp_path / "b.bin") == want
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp left


def test_atomic_write_replaces_atomically_and_fsyncs_the_directory(tmp_path, monkeypatch):
    target = tmp_path / "t.txt"
    atomic.atomic_write(target, b"old")
    synced: list[tuple[str, bool]] = []
    real_fsync = os.fsync

    def spy(fd):
        synced.append((os.readlink(f"/proc/self/fd/{fd}"), target.read_bytes() == b"new"))
        return real_fsync(fd)

    monkeypatch.setattr(os, "fsync", spy)
    atomic.atomic_write(target, b"new")
    # the file's data first (before the rename), then its directory after the rename
    assert synced[-1] == (str(tmp_path), True)
    assert synced[0][1] is False and synced[0][0] != str(tmp_path)

    def boom(fh):
        fh.write(b"half")
        raise RuntimeError("crash mid-write")

    with pytest.raises(RuntimeError):
        atomic.atomic_write(target, boom)
    assert target.read_bytes() == b"new"  # the old file survives a failed write
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.txt"]


@pytest.fixture(scope="module")
def sweep_dir(tmp_path_factory):
    from test_report import rows_for_parquet, synthetic_rows

    out = tmp_path_factory.mktemp("share")
    df = synthetic_rows()
    df["curve"] = [None if i % 5 == 0 else
                   f'[{{"step": 1, "tokens": 100, "train_loss": {4 + i / 50}}}, {{"step": 2, "tokens": 200, "train_loss": 3.1}}]'
                   for i in range(len(df))]
    results_io.write_results(rows_for_parquet(df), out / "results.parquet")
    Result.from_path(out, n_boot=10, seed=0).save()
    return out


def test_isoflop_legend_covers_no_data(sweep_dir, monkeypatch):
    figs = []
    real = plots._save
    monkeypatch.setattr(plots, "_save", lambda fig, path: (figs.append(fig), fig.canvas.draw(), real(fig, path))[2])
    plots.plot_isoflop(Result.from_path(sweep_dir, n_boot=0), sweep_dir / "iso_check.png")
    ax = figs[0].axes[0]
    box = ax.get_legend().get_window_extent()
    pts = np.concatenate([c.get_offset_transform().transform(c.get_offsets()) for c in ax.collections])
    lines = np.concatenate([ln.get_transform().transform(ln.get_xydata()) for ln in ax.get_lines()])
    inside = lambda p: (p[:, 0] >= box.x0) & (p[:, 0] <= box.x1) & (p[:, 1] >= box.y0) & (p[:, 1] <= box.y1)  # noqa: E731
    assert len(pts) > 50 and not inside(pts).any() and not inside(lines).any()
    # outside the axes, so no sweep's points can ever sit under it (inside, it covered the
    # smallest budget's large-N runs)
    assert not box.overlaps(ax.get_window_extent())


def test_report_html_is_self_contained(sweep_dir):
    page = (sweep_dir / REPORT_FILENAME).read_text()
    res = Result.from_path(sweep_dir, n_boot=10, seed=0)
    for line in res.format_table().splitlines():  # every section of the text report, verbatim
        assert line.split()[0] in page
    assert page.count("data:image/png;base64,") == 3  # isoflop, frontier, loss frontier
    assert "Compute-optimal table" in page and "Fits (with intervals)" in page and "boom_diverged" in page
    assert page.count('<svg class="curve"') == sum(1 for i in range(len(res.results)) if i % 5)
    assert "http://" not in page and "https://" not in page and "<script" not in page
    assert curve_svg(None) == "" and curve_svg("not json") == ""
    assert render_html(res).count("<img") == 0  # plots only when given


def _browser():
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return shutil.which(name)
    return None


@pytest.mark.skipif(_browser() is None, reason="no Chromium on PATH (Debian: apt-get install chromium)")
def test_report_html_renders_in_headless_chromium(sweep_dir):
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright not installed (pip install playwright)")
    errors: list[str] = []
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=_browser(), args=["--no-sandbox"])
        page = browser.new_page()
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("requestfailed", lambda r: errors.append(f"request failed: {r.url}"))
        page.goto((sweep_dir / REPORT_FILENAME).as_uri(), wait_until="load")
        images = page.evaluate("[...document.images].map(i => [i.alt, i.complete, i.naturalWidth, i.naturalHeight])")
        curves = page.evaluate("document.querySelectorAll('svg.curve polyline').length")
        browser.close()
    assert errors == []
    assert sorted(i[0] for i in images) == ["frontier", "isoflop", "loss_frontier"]
    assert all(ok and w > 600 and h > 400 for _, ok, w, h in images), images
    assert curves > 0


def test_progress_eta_follows_the_trials_the_sweep_expects_and_is_measured_on_trained_ones(capsys):
    from types import SimpleNamespace

    from flops_fit.ray.progress import SweepProgress

    def trial(tid, replayed=False, status="ok"):
        return SimpleNamespace(config={"spec": {"trial_id": tid}}, trial_id=tid, status="RUNNING",
                               last_result={"status": status, "loss": 3.0, **({"replayed": True} if replayed else {})})

    clock = [0.0]
    expected = {"a": 1.0, "b": 1.0, "c": 2.0}
    prog = SweepProgress(lambda: expected, clock=lambda: clock[0])
    prog.on_trial_start(0, [], trial("a"))
    assert prog.eta_s() is None  # nothing measured yet
    clock[0] = 10.0
    prog.on_trial_complete(0, [], trial("a"))
    assert prog.eta_s() == pytest.approx(30.0)  # 3 cost units left at 1 unit per 10 s, one slot
    # an adaptive sweep re-centres a budget: b and c are replaced by d before they run
    del expected["b"], expected["c"]
    expected["d"] = 1.0
    assert prog.eta_s() == pytest.approx(10.0)  # costed on d, not on the replaced trials
    prog.on_trial_start(0, [], trial("d"))
    clock[0] = 14.0
    assert prog.eta_s() == pytest.approx(6.0)  # d holds its slot for what is left of its 10 s
    clock[0] = 15.0
    prog.on_trial_complete(0, [], trial("d"))
    assert prog.eta_s() == 0.0  # nothing left: the last line of a sweep says ETA 0s
    assert "ETA" in capsys.readouterr().out

    # after a resume: a replayed trial took no time, and a diverged one stopped early: neither is in the speed
    resumed = SweepProgress(lambda: {"a": 1.0, "b": 1.0, "c": 1.0, "e": 1.0}, clock=lambda: clock[0])
    for tid in "abe":
        resumed.on_trial_start(0, [], trial(tid))
    clock[0] = 16.0
    resumed.on_trial_complete(0, [], trial("a", replayed=True))
    resumed.on_trial_complete(0, [], trial("e", status="diverged"))
    assert resumed.eta_s() is None
    clock[0] = 25.0
    resumed.on_trial_complete(0, [], trial("b"))
    assert resumed.eta_s() == pytest.approx(10.0)  # 1 unit trained in 10 s, 1 left


def test_progress_eta_schedules_the_work_left_on_the_slots(capsys):
    # The sweep's last, largest trial runs alone in one of two slots: the work left over the
    # two slots' rate said half the time it takes.
    from types import SimpleNamespace

    from flops_fit.ray.progress import SweepProgress

    trials = {t: SimpleNamespace(config={"spec": {"trial_id": t}}, trial_id=t, status="PENDING",
                                 last_result={"status": "ok", "loss": 3.0}) for t in ("a", "b", "big")}
    clock = [0.0]
    prog = SweepProgress(lambda: {"a": 1.0, "b": 1.0, "big": 4.0}, clock=lambda: clock[0])
    for t in ("a", "b"):
        trials[t].status = "RUNNING"
        prog.on_trial_start(0, list(trials.values()), trials[t])
    clock[0] = 10.0
    for t in ("a", "b"):
        trials[t].status = "TERMINATED"
        prog.on_trial_complete(0, list(trials.values()), trials[t])
    assert prog.slots == 2
    assert prog.eta_s() == pytest.approx(40.0)  # 4 units in one slot at 0.1/s, not 4 / (0.2/s)
    trials["big"].status = "RUNNING"
    prog.on_trial_start(0, list(trials.values()), trials["big"])
    assert "| ETA 40s] big: started" in capsys.readouterr().out.splitlines()[-1]
    clock[0] = 25.0
    assert prog.eta_s() == pytest.approx(25.0)
    # with four equal trials left the two slots share them: the aggregate rate's answer
    even = SweepProgress(lambda: {"a": 1.0, "b": 1.0, **{f"c{i}": 1.0 for i in range(4)}}, clock=lambda: clock[0])
    even.slots, even.started, even.finished, even.trained = 2, {"a": 0.0, "b": 0.0}, {"a", "b"}, {"a": 10.0, "b": 10.0}
    assert even.eta_s() == pytest.approx(20.0)


def test_shard_preparation_shows_a_progress_bar_only_on_a_terminal(tmp_path, sample_tokenizer_json, monkeypatch,
                                                                    capsys):
    import io

    from flops_fit.data import tokenizer
    from flops_fit.data.tinystories import TinyStoriesDataset

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    term = Terminal()
    monkeypatch.setattr("sys.stderr", term)
    monkeypatch.delenv("FLOPS_FIT_QUIET", raising=False)
    assert tokenizer.progress_enabled()
    kw = {"tokenizer": sample_tokenizer_json, "stories_per_shard": 32}
    TinyStoriesDataset("train", 64, source="sample", num_tokens=20_000, cache_dir=tmp_path / "a", **kw).prepare_data()
    shown = term.getvalue()
    assert "token shards (train)" in shown and "shards=" in shown and "tok/s" in shown
    monkeypatch.setenv("FLOPS_FIT_QUIET", "1")  # asked to be quiet
    assert not tokenizer.progress_enabled()
    monkeypatch.setattr("sys.stderr", io.StringIO())  # not a terminal
    monkeypatch.delenv("FLOPS_FIT_QUIET")
    assert not tokenizer.progress_enabled()


def test_progress_counts_trials_restored_as_finished_after_a_resume(capsys):
    # A resumed sweep's trials that ended before the restart are restored TERMINATED and never
    # complete again; the count used to end at "7/9 done" with 9 ok.
    from types import SimpleNamespace

    from flops_fit.ray.progress import SweepProgress

    def trial(tid, status):
        return SimpleNamespace(config={"spec": {"trial_id": tid}}, trial_id=tid, status=status,
                               last_result={"status": "ok", "loss": 3.0})

    restored = [trial(f"t{i}", "TERMINATED") for i in range(7)]
    live = [trial("t7", "RUNNING"), trial("t8", "RUNNING")]
    prog = SweepProgress(lambda: {f"t{i}": 1.0 for i in range(9)})
    prog.on_trial_start(0, restored + live, live[0])
    assert "7/9 done" in capsys.readouterr().out
    prog.on_trial_complete(0, restored + live, live[0])
    live[0].status = "TERMINATED"
    prog.on_trial_complete(0, restored + live, live[1])
    assert capsys.readouterr().out.strip().splitlines()[-1].split("|")[1].strip() == "9/9 done"
