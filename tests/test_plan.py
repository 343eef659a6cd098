"""Planner properties: IsoFLOP budgets honoured, interior optimum, merging, refusals."""

from __future__ import annotations

import math
import re
import subprocess
import sys

import pytest

from flops_fit.config import preset
from flops_fit.errors import PlanError
from flops_fit.models import gpt_spec as accounting
from flops_fit.models.gpt_spec import gpt_shape
from flops_fit.planning.config import PlanConfig
from flops_fit.planning.grid import TrialSpec, format_plan, plan, smallest_feasible_budget


@pytest.mark.parametrize("convention", accounting.FLOPS_CONVENTIONS)
def test_each_trial_spends_its_budget_within_rounding(convention):
    specs = plan([1e15, 1e16, 1e17], 7, vocab_size=8192, seq_len=512, flops_convention=convention)
    for s in specs:
        flops = s.tokens * accounting.flops_per_token(gpt_shape(s.model), s.seq_len, convention)
        # tokens are whole steps: the error is at most half a step's worth of tokens
        assert abs(flops - s.budget) / s.budget <= 0.5 / s.steps + 1e-12
        assert s.steps >= 50


def test_6n_convention_is_six_n_d():
    for s in plan([1e18], 5, vocab_size=32000, seq_len=1024):
        assert s.flops == pytest.approx(6 * s.n * s.tokens)
        assert abs(6 * s.n * s.tokens - 1e18) / 1e18 < 0.01


def test_sizes_are_log_even_and_bracket_the_prior_optimum():
    cfg = PlanConfig(budgets=(1e19,), points_per_budget=7, vocab_size=32000, seq_len=1024, tokens_per_param=20)
    specs = plan(cfg)
    ns = [s.n for s in specs]
    ratios = [b / a for a, b in zip(ns, ns[1:])]
    expected = cfg.span ** (1 / 6)
    assert all(abs(r / expected - 1) < 0.15 for r in ratios), ratios
    tpp = [s.tokens / s.n for s in specs]
    # the prior optimum (20 tokens/param) is strictly inside the grid: an interior minimum
    assert tpp[0] > 20 > tpp[-1]
    assert math.isclose(math.sqrt(tpp[0] * tpp[-1]), 20, rel_tol=0.25)


def test_sizes_that_round_to_one_model_are_merged():
    # nine targets within 30% of each other: widths move in steps of 2, so several coincide
    cfg = PlanConfig(budgets=(1e11,), points_per_budget=9, span=1.3, vocab_size=512, seq_len=32, min_steps=8)
    specs = plan(cfg)
    shapes = [gpt_shape(s.model) for s in specs]
    assert len(shapes) == len(set(shapes))
    assert 3 <= len(specs) < 9


def test_parameter_counts_come_from_the_formula_without_torch():
    code = (
        "import sys; from flops_fit.planning.grid import plan; plan([1e20, 1e21], 7, vocab_size=50304, seq_len=2048); "
        "assert 'torch' not in sys.modules and 'ray' not in sys.modules, sorted(m for m in sys.modules if m in ('torch','ray'))"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(budgets=[0.0, 1e12]), "positive finite"),
        (dict(budgets=[-1e12]), "positive finite"),
        (dict(budgets=[float("nan")]), "positive finite"),
        (dict(budgets=[float("inf")]), "positive finite"),
        (dict(budgets=[1e12, 1e12]), "duplicate budgets"),
        (dict(budgets=[]), "no budgets"),
        (dict(budgets=[1e12], points_per_budget=2), "at least 3"),
        (dict(budgets=[1e12], flops_convention="7n"), "unknown flops_convention"),
        (dict(budgets=[1e12], span=1.0), "span"),
    ],
)
def test_bad_requests_are_refused_with_the_reason(kwargs, message):
    budgets = kwargs.pop("budgets")
    with pytest.raises(PlanError, match=message):
        plan(budgets, kwargs.pop("points_per_budget", 5), **kwargs)


def test_too_small_budget_names_the_smallest_feasible_one():
    cfg = PlanConfig(budgets=(1e6,), vocab_size=2048, seq_len=128)
    floor = smallest_feasible_budget(cfg)
    with pytest.raises(PlanError, match=re.escape(f"smallest feasible budget is {floor:.3g}")):
        plan(cfg)
    assert plan([floor * 30], 3, vocab_size=2048, seq_len=128)  # and just above it, it plans


def test_unsorted_budgets_are_sorted():
    specs = plan([3e12, 1e12], 3, vocab_size=2048, seq_len=128)
    assert [s.budget for s in specs] == sorted(s.budget for s in specs)


def test_batch_shrinks_until_every_trial_gets_min_steps_and_is_one_per_budget():
    loose = plan([1e12], 5, vocab_size=2048, seq_len=128, min_steps=10)
    specs = plan([1e12], 5, vocab_size=2048, seq_len=128, min_steps=200)
    assert all(s.steps >= 200 for s in specs)
    assert len({s.batch_size for s in specs}) == 1  # a batch varying inside a budget would move its valley
    assert specs[0].batch_size < loose[0].batch_size


def test_spec_round_trips_and_records_every_convention():
    spec = plan([1e12], 3, vocab_size=2048, seq_len=128)[1]
    assert TrialSpec.from_dict(spec.to_dict()) == spec
    row = spec.record()
    for c in accounting.FLOPS_CONVENTIONS:
        assert row[f"flops_{c}"] == pytest.approx(spec.tokens * accounting.flops_per_token(gpt_shape(spec.model), 128, c))
    assert row["n"] == spec.n and row["n_non_embedding"] == spec.params["n_non_embedding"]


@pytest.mark.parametrize("name", ["tiny", "tinystories-gpu", "smoke"])
def test_presets_plan(name):
    cfg = preset(name)
    specs = plan(cfg.plan)
    assert len(specs) >= 3 * len(cfg.budgets) >= 9
    assert "total" in format_plan(specs)


def test_unknown_preset_and_option_are_refused():
    with pytest.raises(PlanError, match="unknown preset 'huge'"):
        preset("huge")
    with pytest.raises(PlanError, match="unknown option"):
        preset("tiny").replace(bogus=1)


def test_a_vocabulary_below_a_byte_level_bpe_is_refused_not_silently_raised():
    # --vocab-size 1 used to become 257 without a word (the default tokenizer is a byte-level BPE;
    # a user's model and dataset may have any vocabulary, so only the reference GPT refuses).
    from flops_fit.config import DataOptions
    from flops_fit.workloads.gpt import ReferenceGPT

    workload = ReferenceGPT.on(DataOptions(source="sample"))
    with pytest.raises(PlanError, match="vocab_size=1: the reference GPT's byte-level BPE has at least 257"):
        workload.plan(PlanConfig(budgets=(1e12,), vocab_size=1, seq_len=64))
    assert workload.plan(PlanConfig(budgets=(1e12,), vocab_size=257, seq_len=64))
    assert PlanConfig(budgets=(1e12,), vocab_size=64).vocab_size == 64  # other workloads keep theirs


def test_tiny_past_1e12_keeps_its_batch_below_the_critical_batch_measured_at_3e12():
    # At 3e12 the DeepSeek rule gives 32 sequences a step, where N = 178k ends 0.05 nats worse
    # than at 4-16 (README, "Learning rate and batch"): tiny caps the batch at 16.
    from flops_fit.planning.rules import TrainingRules, deepseek_batch_tokens

    cfg = preset("tiny").replace(budgets=(1e12, 3e12)).plan
    assert round(deepseek_batch_tokens(3e12) / cfg.seq_len) > 16  # the rule alone would exceed it
    assert TrainingRules(cfg).batch(3e12, 1e8) == 16 and TrainingRules(cfg).batch(1e13, 1e8) == 16
    assert max(s.batch_size for s in plan(cfg)) <= 16


def test_budgets_past_what_a_presets_rules_were_measured_on_are_refused_in_one_line(capsys):
    """tiny's batch cap (16 sequences) and learning-rate recipe (128-token CPU runs) were measured
    up to 3e12: a 1e19-1e20 plan on them (1.1M optimizer steps for a 456M model) is refused,
    naming the preset and flags that fix it; setting the rules by hand lifts the limit."""
    from flops_fit.cli import main

    assert main(["plan", "--budgets", "1e19", "3e19", "1e20", "--seq-len", "2048"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "past what this config's training rules were measured on (up to 3e+12" in err[0]
    assert "--preset tinystories-gpu" in err[0] and "--max-batch-size" in err[0]
    assert main(["plan", "--preset", "tinystories-gpu", "--budgets", "1e19", "3e19", "1e20", "--seq-len", "2048"]) == 0
    rows = [r.split() for r in capsys.readouterr().out.splitlines() if r.startswith(" 1.00e+20")]
    assert rows and all(int(r[7]) >= 128 for r in rows)  # the DeepSeek batch, uncapped: thousands of steps, not 1.1M
    assert preset("tiny").replace(budgets=(1e11, 3e12)).plan.rules_valid_to == 3e12  # inside: planned as measured
    lifted = preset("tiny").replace(budgets=(1e19,), max_batch_size=512, base_lr=1e-3)
    assert lifted.plan.rules_valid_to is None and lifted.plan.recipe is None


def test_auto_shards_a_model_one_gpu_cannot_hold_over_enough_gpus_and_refuses_one_that_fits_none():
    # 1e19-1e20 at a 24 GB GPU: the 2.9B model's weights, gradients and AdamW moments are 47 GB;
    # sharded over 4 GPUs (FSDP2) each holds 13 GB of them plus two gathered blocks.
    from flops_fit.models.gpt_spec import gpt_shape, training_bytes
    from flops_fit.planning.resources import resource_rule

    cfg = preset("tinystories-gpu").replace(budgets=(1e19, 3e19, 1e20), adapt=False)
    specs = plan(cfg.plan)
    rule = resource_rule(4, "auto", gpu_memory_gb=24)
    largest = max(specs, key=lambda s: s.n)
    assert 2.8e9 < largest.n < 3e9 and rule.describe(largest) == "4c/1g x4 sharded"
    shape = gpt_shape(largest.model)
    assert training_bytes(shape, 1, largest.seq_len, 2) > 24e9 >= training_bytes(shape, 1, largest.seq_len, 4)
    one_gpu = [s for s in specs if rule.shards_for(s) == 1]
    assert one_gpu and all(training_bytes(gpt_shape(s.model), 1, s.seq_len) <= 24e9 for s in one_gpu)
    assert all(rule.workers_for(s) == rule.shards_for(s) for s in specs)  # auto adds workers only to shard
    assert {rule.gpus_for(s) for s in specs} == {1.0}  # at 1e19 even the smallest trial's batch needs most of a GPU
    with pytest.raises(PlanError, match=r"trial C\S+_N\d+: a 2.9B-parameter model needs \d+ GB .* sharded over the "
                                        r"most GPUs its batch of 512 allows \(up to 64\) still more than one 1 GB GPU"):
        resource_rule(4, "auto", gpu_memory_gb=1).describe(largest)
    assert resource_rule(4, "auto", gpu_memory_gb=80).shards_for(largest) == 1  # 60 GB at one sequence: one H100


def test_workers_per_trial_shows_in_the_plan_and_a_batch_they_cannot_split_is_refused_in_one_line():
    from flops_fit.planning.resources import ResourceRule

    spec = plan([1e12], 3, seq_len=64, vocab_size=512, min_steps=8)[0]
    assert spec.batch_size % 4 == 0
    assert ResourceRule(cpus=4.0, gpus=1.0, workers=4).describe(spec) == "4c/1g x4"
    assert ResourceRule(cpus=1.0).describe(spec) == "1c"
    with pytest.raises(PlanError, match=rf"trial {spec.trial_id}: its batch of {spec.batch_size} sequences does not "
                                        "split into 3 equal per-worker slices"):
        ResourceRule(cpus=1.0, workers=3).describe(spec)
    out = subprocess.run([sys.executable, "-m", "flops_fit.cli", "plan", "--preset", "tiny", "--workers-per-trial", "3"],
                         capture_output=True, text=True)
    assert out.returncode == 2 and out.stderr.count("\n") == 1 and "does not split into 3 equal" in out.stderr
    with pytest.raises(PlanError, match="workers_per_trial must be a whole number >= 1"):
        preset("tiny").replace(workers_per_trial=0)


def test_auto_workers_spread_only_the_trials_that_would_end_after_the_rest():
    """--workers-per-trial auto: the sweep's FLOPs over its GPUs is the load each GPU carries;
    a whole-GPU trial above it gets the fewest GPUs (a power of two dividing its batch) that
    bring its share under it. tinystories-gpu's grid on 16 GPUs: 1.02e18 / 16 = 6.4e16, so the
    1e17 trials (one alone would run 1.6x the packed sweep) go on two GPUs, the rest on one."""
    from flops_fit.planning.resources import ResourceRule, spread_for_time

    assert spread_for_time(1e17, 6.4e16, 16, 256) == 2
    assert spread_for_time(1e17, 1e16, 16, 256) == 16  # 1e17 / 16 = 6.3e15, under the load
    assert spread_for_time(1e17, 1e15, 16, 256) == 16  # 100 GPUs' worth, and 16 is all there is
    assert spread_for_time(1e17, 1e16, 64, 6) == 2  # the batch of 6 splits in two, not four
    assert spread_for_time(1e17, 1e18, 16, 256) == 1
    cfg = preset("tinystories-gpu").replace(adapt=False)
    specs = plan(cfg.plan)
    rule = ResourceRule(cpus=4.0, gpus=1.0, workers="auto").for_sweep(specs, 16)
    assert rule.load == pytest.approx(sum(s.flops for s in specs) / 16)
    by_budget = {s.budget: rule.workers_for(s) for s in specs}
    assert by_budget == {3e15: 1, 1e16: 1, 3e16: 1, 1e17: 2}
    assert rule.describe(max(specs, key=lambda s: s.budget)) == "4c/1g x2"
    alone = ResourceRule(cpus=4.0, gpus=1.0, workers="auto").for_sweep(specs[-1:], 8)  # one trial (--verify's run)
    assert alone.workers_for(specs[-1]) == 8
    shared = ResourceRule(cpus=1.0, gpus=0.25, workers="auto").for_sweep(specs, 16)
    assert {shared.workers_for(s) for s in specs} == {1}  # a trial that shares a GPU is never the makespan
    forced = ResourceRule(cpus=4.0, gpus="auto", gpu_bytes=int(24e9), workers="auto", shard=True).for_sweep(specs, 16)
    assert {s.budget: forced.describe(s) for s in specs}[1e17] == "4c/1g x2 sharded"  # --shard-model with both autos
    with pytest.raises(PlanError, match="needs to know how many: pass --cluster-gpus"):
        ResourceRule(cpus=4.0, gpus=1.0, workers="auto").for_sweep(specs, 0)
    assert preset("tiny").replace(workers_per_trial="2").workers_per_trial == 2
    with pytest.raises(PlanError, match="workers_per_trial must be a whole number >= 1 or 'auto', got 'many'"):
        preset("tiny").replace(workers_per_trial="many")


def test_plan_schedule_wsd_prints_each_stem_and_the_cost_against_separate_cosine_runs():
    out = subprocess.run([sys.executable, "-m", "flops_fit.cli", "plan", "--preset", "tiny", "--schedule", "wsd",
                          "--no-adapt", "--budgets", "1e11", "2e11", "4e11", "8e11", "1.6e12"],
                         capture_output=True, text=True, check=True).stdout
    stems = re.findall(r"^\s+(N\d+(?:_s\d+)?)\s+\d+x\d+\s+(\d+)\s+[\d,]+\s+((?:[\d.]+M\+? )+)", out, re.M)
    assert len(stems) >= 8 and any(len(points.split()) >= 4 for _, _, points in stems)
    spent, cosine, ratio = re.search(r"WSD trains ([\d.e+]+) FLOPs for these \d+ points; as separate cosine runs "
                                     r"they cost ([\d.e+]+) \(([\d.]+)x\)", out).groups()
    assert float(ratio) == pytest.approx(float(spent) / float(cosine), abs=0.005) and float(ratio) < 0.75
    assert "recipe tiny-wsd" in out  # the stems' own measured rule
