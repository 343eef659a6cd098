"""Bad input is caught before any trial starts, with one line naming the problem and the fix.

Each case goes through the public entry points (``flops_fit.ray.sweep`` and the
``flops-fit`` command) with Ray made unstartable: reaching ``_ensure_ray`` fails the test.
The README's "What survives what" table quotes these messages.
"""

from __future__ import annotations

import json
import math

import pytest

from flops_fit.config import preset
from flops_fit.errors import PlanError


@pytest.fixture
def no_ray(monkeypatch):
    import importlib

    sweep_mod = importlib.import_module("flops_fit.ray.backend")

    def refuse(cfg):
        raise AssertionError("a bad input reached Ray: trials would have started")

    monkeypatch.setattr(sweep_mod, "_ensure_ray", refuse)
    return sweep_mod


@pytest.fixture(scope="module")
def tiny_corpus(tmp_path_factory):
    """60 sample stories as a local jsonl: ~38k training tokens at the smoke vocabulary."""
    from flops_fit.data import sample

    path = tmp_path_factory.mktemp("corpus") / "stories.jsonl"
    path.write_text("".join(json.dumps({"text": s}) + "\n" for s in sample.generate_stories("train", 0, 60)))
    return path


def _cfg(tmp_path, cache, **changes):
    base = dict(storage_path=str(tmp_path / "runs"), cache_dir=str(cache), name="bad")
    return preset("smoke").replace(**{**base, **changes})


def _tokenizer_json(cfg) -> str:
    """The sweep's tokenizer, as the driver prepares it (serialised)."""
    from flops_fit.workloads.gpt import ReferenceGPT

    workload = ReferenceGPT.on(cfg.data)
    workload.prepare(cfg.plan)
    return workload.data.options.tokenizer_json


def _refused(call, match: str, kind=PlanError) -> str:
    with pytest.raises(kind) as err:
        call()
    message = str(err.value)
    assert "\n" not in message, f"not one line: {message!r}"
    assert __import__("re").search(match, message), message
    return message


@pytest.mark.parametrize(
    "changes, match",
    [
        (dict(budgets=(0.0, 1e10)), r"budget 0\.0 is not a positive finite number of FLOPs"),
        (dict(budgets=(-1e10,)), r"budget -10000000000\.0 is not a positive finite number"),
        (dict(budgets=(math.nan,)), r"budget nan is not a positive finite"),
        (dict(budgets=(math.inf,)), r"budget inf is not a positive finite"),
        (dict(budgets=(2e10, 1e10, 2e10)), r"duplicate budgets \[20000000000\.0\]; list each FLOPs budget once"),
        (dict(budgets=(1e5,)), r"smallest feasible budget is"),
        (dict(points_per_budget=2), r"need at least 3 sizes per budget"),
    ],
)
def test_bad_budgets_and_grids_are_refused_before_any_trial(tmp_path, smoke_cache, no_ray, changes, match):
    from flops_fit.ray import sweep

    _refused(lambda: sweep(_cfg(tmp_path, smoke_cache, **changes)), match)


def test_unknown_preset_and_option_are_refused(no_ray):
    from flops_fit.ray import sweep

    _refused(lambda: sweep(preset="huge"), r"unknown preset 'huge'; choose one of \[")
    _refused(lambda: sweep(preset="smoke", bogus=1), r"unknown option\(s\) \['bogus'\]")


def test_cli_reports_bad_input_in_one_line(capsys):
    from flops_fit.cli import main

    for argv, match in ((["sweep", "--preset", "huge"], "unknown preset 'huge'"),
                        (["sweep", "--bogus", "1"], "unrecognized arguments: --bogus 1"),
                        (["plan", "--budgets", "1e10", "1e10"], "duplicate budgets")):
        with pytest.raises(SystemExit) if "--bogus" in argv else _nullcontext() as exit_info:
            rc = main(argv)
        rc = exit_info.value.code if "--bogus" in argv else rc
        err = capsys.readouterr().err.strip()
        assert rc == 2 and len(err.splitlines()) == 1 and match in err, err


class _nullcontext:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False


def test_dataset_too_small_is_refused_with_epochs_and_the_flag(tmp_path, smoke_cache, tiny_corpus, no_ray):
    from flops_fit.ray import sweep

    msg = _refused(lambda: sweep(_cfg(tmp_path, smoke_cache, source=str(tiny_corpus))),
                   r"dataset too small: trial \S+ needs 531,456 tokens but the train split of .* holds [\d,]+ "
                   r"\(59 stories\), [\d.]+ epochs > max_epochs=4; use a larger source= or raise --max-epochs to [\d.]+")
    epochs = float(msg.split(" epochs > ")[0].rsplit(" ", 1)[1])
    assert 10 < epochs < 30


def test_raising_max_epochs_lets_it_through(tmp_path, smoke_cache, tiny_corpus, capsys):
    from flops_fit.workloads.gpt import ReferenceGPT

    cfg = _cfg(tmp_path, smoke_cache, source=str(tiny_corpus), max_epochs=30.0)
    workload = ReferenceGPT.on(cfg.data)
    workload.prepare(cfg.plan)
    workload.preflight(workload.plan(cfg.plan))
    assert "repeats the train split" in capsys.readouterr().err


def test_preflight_counts_the_tokens_a_trial_would_see(tmp_path, smoke_cache, tiny_corpus):
    """The count is the trainer's: exact for a small split, within 3% from samples of a big one."""
    from flops_fit.data import sample
    from flops_fit.data.preflight import estimate_split_tokens, open_split
    from flops_fit.data.tinystories import TinyStoriesDataset

    tokenizer_json = _tokenizer_json(_cfg(tmp_path, smoke_cache))
    big = tmp_path / "big.jsonl"
    big.write_text("".join(json.dumps({"text": s}) + "\n" for s in sample.generate_stories("train", 0, 6000)))
    for corpus, exact in ((tiny_corpus, True), (big, False)):
        stories, count = open_split(str(corpus), "train", smoke_cache)
        estimate, is_exact = estimate_split_tokens(stories, count, tokenizer_json)
        real = TinyStoriesDataset("train", 1, cache_dir=smoke_cache, source=str(corpus), tokenizer=tokenizer_json,
                                  num_tokens=None).prepare_data().num_tokens_available
        assert is_exact == exact
        assert estimate == real if exact else abs(estimate / real - 1) < 0.03


def test_unreachable_hub_without_local_data_is_refused_in_one_line(tmp_path, smoke_cache, no_ray):
    """HF_HUB_OFFLINE=1 stands in for no network (conftest). The driver's tokenizer step or the
    pre-flight source check fails in seconds, naming the offline and local alternatives."""
    from flops_fit.data.sources import HubUnavailableError
    from flops_fit.ray import sweep

    hub = "roneneldan/TinyStories"
    _refused(lambda: sweep(_cfg(tmp_path, smoke_cache, source=hub)),
             r"(cannot|could not) .*'roneneldan/TinyStories'.*Use source='sample' .*or point source= at local", HubUnavailableError)
    # a named tokenizer needs no corpus on the driver: the pre-flight check catches it instead
    from flops_fit.data.tokenizer import DataTokenizer

    tok_dir = DataTokenizer.from_json(_tokenizer_json(_cfg(tmp_path, smoke_cache))).save(smoke_cache)
    _refused(lambda: sweep(_cfg(tmp_path, smoke_cache, source=hub, tokenizer_name=str(tok_dir))),
             r"data source 'roneneldan/TinyStories' \(train split\) cannot be opened: .*Use source='sample'")


def test_cli_unreachable_hub_is_one_line(capsys, smoke_cache):
    from flops_fit.cli import main

    rc = main(["sweep", "--preset", "smoke", "--source", "roneneldan/TinyStories", "--cache-dir", str(smoke_cache)])
    assert rc == 2 and len(capsys.readouterr().err.strip().splitlines()) == 1


def test_unwritable_storage_is_refused_before_any_trial(tmp_path, smoke_cache, no_ray):
    from flops_fit.ray import sweep

    blocker = tmp_path / "file"
    blocker.write_text("x")  # tests run as root: a file in the path is what makes it unwritable
    _refused(lambda: sweep(_cfg(tmp_path, smoke_cache, storage_path=str(blocker / "runs"))),
             r"storage_path '.*' is not writable \(Not a directory\); choose another --storage-path")


def test_unwritable_cache_is_refused_before_any_trial(tmp_path, no_ray):
    from flops_fit.ray import sweep

    blocker = tmp_path / "file"
    blocker.write_text("x")
    _refused(lambda: sweep(_cfg(tmp_path, blocker / "cache")),
             r"cache_dir '.*' is not writable \(Not a directory\); choose another --cache-dir")


def test_unwritable_cache_is_refused_by_preflight(tmp_path, smoke_cache):
    """Once the tokenizer exists, the pre-flight probe refuses an unwritable cache (workers
    write shards there) before any trial, instead of every trial failing in turn."""
    from flops_fit.data.preflight import check_cache_writable

    blocker = tmp_path / "file"
    blocker.write_text("x")
    _refused(lambda: check_cache_writable(blocker / "cache"),
             r"cache_dir '.*' is not writable \(Not a directory\); choose another --cache-dir")
