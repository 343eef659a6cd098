"""Warmup-stable-decay planning (pure) and the trainer's stems (torch, no Ray): the ladder,
the branches' batch/steps/cooldown, the FLOPs accounting, the stem gate, the schedule's
shape, and a branch continued from its stem's kept state training exactly as one trained
from the start."""

from __future__ import annotations

import dataclasses
import math

import pytest
from windows import SEQ, VOCAB, TinyGPTWorkload

from flops_fit.config import TrainOptions, preset
from flops_fit.errors import PlanError
from flops_fit.models import gpt_spec
from flops_fit.models.gpt_spec import gpt_shape
from flops_fit.planning.grid import plan
from flops_fit.planning.schedule import (
    StemGate,
    lr_multiplier,
    spent_flops,
    stems_in_order,
    to_branches,
    with_stem_starts,
)
from flops_fit.planning.spec import TrialSpec

FIVE_BUDGETS = (1e11, 2e11, 4e11, 8e11, 1.6e12)


def _plan(schedule: str, **changes):
    return plan(preset("tiny").replace(schedule=schedule, budgets=FIVE_BUDGETS, adapt=False, **changes).plan)


def _spec(steps: int, cooldown_start: int, stem: str = "s", trial_id: str | None = None) -> TrialSpec:
    return TrialSpec(trial_id=trial_id or f"b{steps}", budget=float(steps), seq_len=1, batch_size=1, steps=steps,
                     lr=1e-3, warmup_steps=1, flops_convention="6n", flops_per_token=1.0, n=1, seed=0, model={},
                     params={"n": 1}, flops_per_token_by={"flops_6n": 1.0}, schedule="wsd", stem=stem,
                     cooldown_start=cooldown_start)


def test_one_size_serving_five_doublings_costs_19_of_31_units_at_f_02():
    # The arithmetic of the issue: token counts 1, 2, 4, 8, 16 units (100 steps a unit) as
    # separate runs cost 31 units; a stem to 16 plus cooldowns of 0.2 x (1+2+4+8) costs 19.
    branches = with_stem_starts([_spec(100 * u, round(100 * u * 0.8)) for u in (1, 2, 4, 8, 16)])
    assert [b.stem_start for b in branches] == [0, 80, 160, 320, 640]
    assert spent_flops(branches) == 1900
    assert sum(b.flops for b in branches) == 3100
    assert {b.stem_tokens for b in branches} == {1600}  # every branch draws from the longest one's tokens


def test_every_budget_takes_its_sizes_from_one_ladder_and_the_smallest_budget_is_the_cosine_grid():
    wsd, cosine = _plan("wsd"), _plan("cosine")
    assert [s.n for s in wsd if s.budget == 1e11 and s.seed == 0] == \
           [s.n for s in cosine if s.budget == 1e11 and s.seed == 0]
    per_budget = {b: {s.n for s in wsd if s.budget == b and not s.trial_id.endswith("_x")} for b in FIVE_BUDGETS}
    # neighbouring budgets share sizes (the same stems), so far fewer sizes than points
    assert all(len(per_budget[a] & per_budget[b]) >= 3 for a, b in zip(FIVE_BUDGETS, FIVE_BUDGETS[1:]))
    assert len({s.n for s in wsd}) < len(wsd) / 2
    # each a model the worker rebuilds from the spec exactly as planned
    for s in wsd:
        m = s.model
        assert gpt_spec.shape_for_params(m["target_params"], m["vocab_size"], s.seq_len, count=m["size_count"]) == gpt_shape(m)


def test_a_stem_keeps_one_batch_and_warmup_and_each_branch_its_own_budgets_tokens():
    cfg = preset("tiny").replace(schedule="wsd", budgets=FIVE_BUDGETS, adapt=False).plan
    wsd = plan(cfg)
    for stem in {s.stem for s in wsd}:
        branches = sorted((s for s in wsd if s.stem == stem), key=lambda s: s.steps)
        assert len({(b.batch_size, b.warmup_steps, b.lr, b.seed) for b in branches}) == 1, stem
        first = branches[0]
        for b in branches:
            assert b.steps >= cfg.min_steps
            assert b.flops == pytest.approx(b.budget, rel=0.1)  # the budget's point, to whole steps
            assert b.cooldown_start == b.steps - round(cfg.cooldown_fraction * b.steps)
            assert b.cooldown_tokens == (b.steps - b.cooldown_start) * b.batch_size * b.seq_len
        assert first.stem_start == 0 and [b.stem_start for b in branches[1:]] == [b.cooldown_start for b in branches[:-1]]


def test_the_grid_as_wsd_costs_about_two_thirds_of_separate_cosine_runs():
    wsd, cosine = _plan("wsd"), _plan("cosine")
    ratio = spent_flops(wsd) / sum(s.flops for s in cosine)
    assert 0.55 < ratio < 0.75, ratio  # 0.71 at f = 0.2 (benchmarks/RESULTS.md)
    assert spent_flops(_plan("wsd", cooldown_fraction=0.1)) < spent_flops(wsd)
    assert spent_flops(cosine) == sum(s.flops for s in cosine)  # a cosine run trains all of itself


def test_the_cosine_plan_carries_no_wsd_fields_so_old_manifests_match():
    for s in _plan("cosine"):
        assert s.schedule == "cosine" and not set(TrialSpec._WSD_FIELDS) & set(s.to_dict())
        assert TrialSpec.from_dict(s.to_dict()) == s
    for s in _plan("wsd"):
        assert TrialSpec.from_dict(s.to_dict()) == s


def test_a_branch_the_stems_batch_cannot_give_min_steps_is_refused_in_one_line():
    cfg = preset("tiny").replace(budgets=(1e11, 1e12), adapt=False).plan
    big = plan(dataclasses.replace(cfg, budgets=(1e12,)))[-1]  # the largest model of 1e12, batch 8
    small = dataclasses.replace(big, budget=1e11, trial_id="small")  # the same size at a tenth of the budget
    with pytest.raises(PlanError, match=r"stem's batch of \d+ gives \d+ steps \(< min_steps=400\)"):
        to_branches([small], dataclasses.replace(cfg, schedule="wsd"), known=to_branches([big], cfg))


def test_the_wsd_schedule_holds_the_peak_then_cools_down_as_one_minus_sqrt_to_zero():
    s = dataclasses.replace(_spec(1000, 800), warmup_steps=50)
    assert lr_multiplier(s, 0) == pytest.approx(1 / 50) and lr_multiplier(s, 49) == 1.0
    assert all(lr_multiplier(s, k) == 1.0 for k in range(50, 801))
    assert lr_multiplier(s, 900) == pytest.approx(1 - math.sqrt(0.5))
    assert lr_multiplier(s, 999) == pytest.approx(1 - math.sqrt(199 / 200)) and lr_multiplier(s, 1000) == 0.0
    cooling = [lr_multiplier(s, k) for k in range(800, 1001)]
    assert all(a > b for a, b in zip(cooling, cooling[1:]))


def test_the_gate_releases_a_stems_branches_one_at_a_time_shortest_first():
    a1, a2, a3, other = _spec(100, 80, "a"), _spec(200, 160, "a"), _spec(400, 320, "a"), _spec(300, 240, "b")
    # a launch order puts the longest first; each stem's branches take its places shortest first
    assert [s.trial_id for s in stems_in_order([a3, other, a2, a1])] == ["b100", "b300", "b200", "b400"]
    gate = StemGate()
    for s in (a3, other, a2, a1):
        gate.push(s)
    assert gate.pop_ready() is other and gate.pop_ready() is a1
    assert gate.pop_ready() is None  # a2 waits for a1, which keeps the state it continues
    gate.done(a1.trial_id)
    assert gate.pop_ready() is a2 and gate.pop_ready() is None
    gate.done(a2.trial_id)
    assert gate.pop_ready() is a3


# --- the trainer: a branch continued from its stem's kept state ---------------------------
@pytest.fixture(scope="module")
def branches():
    cfg = preset("tiny").plan
    cfg = dataclasses.replace(cfg, budgets=(2e9, 4e9), vocab_size=VOCAB, seq_len=SEQ, min_steps=20, max_batch_size=4,
                              recipe=None, rules_valid_to=None, schedule="wsd", points_per_budget=3, adapt=False,
                              replicates=0)
    specs = plan(cfg)
    stem = max({s.stem for s in specs}, key=lambda name: sum(s.stem == name for s in specs))
    return sorted((s for s in specs if s.stem == stem), key=lambda s: s.steps)


def test_a_branch_continued_from_its_stems_kept_state_trains_exactly_as_one_from_the_start(branches, tmp_path):
    from flops_fit.trainer.trial import run_trial

    short, long = branches[0], branches[-1]
    assert long.stem_start == short.cooldown_start > 0
    options = TrainOptions(threads=1, checkpoint_every_s=1e9)
    first = run_trial(short, TinyGPTWorkload(400), options, stem_dir=tmp_path).metrics
    kept = sorted((tmp_path / short.stem).glob("step_*.pt"))
    assert [p.name for p in kept] == [f"step_{short.cooldown_start:08d}.pt"]
    continued = run_trial(long, TinyGPTWorkload(400), options, stem_dir=tmp_path).metrics
    alone = run_trial(long, TinyGPTWorkload(400), options).metrics  # no stem directory: trained from step 0
    assert continued["loss"] == alone["loss"]  # bit for bit: the batch at step k and the state are the same
    assert continued["flops_trained"] == (long.steps - short.cooldown_start) * long.batch_size * SEQ * long.flops_per_token
    assert alone["flops_trained"] == long.flops and first["flops_trained"] == short.flops
    assert [p.name for p in (tmp_path / long.stem).glob("step_*.pt")] == [f"step_{long.cooldown_start:08d}.pt"]
    assert json_curve_starts_at_zero(continued["curve"])  # the stem's curve travels with its state


def json_curve_starts_at_zero(curve: str) -> bool:
    import json

    points = json.loads(curve)
    return points[0]["step"] <= 10 and points[-1]["step"] > 10
