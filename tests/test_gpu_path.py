"""The GPU path, shown on CPU with stand-ins (no GPU in CI): the memory model's
arithmetic, slot counting from GPUs, the dtype by compute capability, the GPU preset against
TinyStories' real size, and the actor-reuse policy. What only a GPU can show (peak memory
against the model, MFU, compile time, checkpoint stall) is measured by
``python benchmarks/bench_gpu.py`` (see benchmarks/RESULTS.md)."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from flops_fit.config import SweepConfig, preset
from flops_fit.engine.sweep import default_workload
from flops_fit.errors import PlanError
from flops_fit.models import gpt_spec
from flops_fit.models.gpt_spec import ModelShape, gpt_shape, param_groups
from flops_fit.planning import resources
from flops_fit.planning.resources import trial_slots
from flops_fit.trainer.accelerator import compute_dtype

#: TinyStories (roneneldan/TinyStories) train split: 2,119,719 stories; 0.5B tokens is the low
#: end of its size with a 4096 BPE (0.47B with GPT-2's 50k BPE, more with a smaller vocabulary).
TINYSTORIES_TRAIN_STORIES = 2_119_719
TINYSTORIES_TRAIN_TOKENS_LOW = 500_000_000

SHAPE = ModelShape(vocab_size=4096, d_model=1024, num_layers=12, num_heads=16, d_ff=2816, max_seq_len=512)


def test_memory_model_arithmetic():
    n = param_groups(SHAPE).total
    assert gpt_spec.state_bytes(SHAPE) == 16 * n
    per_seq = 512 * (12 * (26 * 1024 + 8 * 2816) + 8 * 1024)
    assert gpt_spec.activation_bytes_per_sequence(SHAPE, 512) == per_seq
    head = min(gpt_spec.CE_CHUNK_ELEMENTS, 64 * 512 * 4096) * 10
    assert gpt_spec.training_bytes(SHAPE, 64, 512) == int((16 * n + 64 * per_seq + head) * gpt_spec.SAFETY) + (1 << 30)
    # doubling the micro-batch adds exactly SAFETY x one micro-batch of activations (head chunk capped)
    assert gpt_spec.training_bytes(SHAPE, 128, 512) - gpt_spec.training_bytes(SHAPE, 64, 512) == pytest.approx(
        64 * per_seq * gpt_spec.SAFETY, abs=2)


def test_micro_batch_is_the_largest_fitting_divisor():
    B, T = 256, 512
    fits_32 = gpt_spec.training_bytes(SHAPE, 32, T)
    assert gpt_spec.micro_batch_for(SHAPE, B, T, fits_32) == 32
    assert gpt_spec.micro_batch_for(SHAPE, B, T, fits_32 - 1) == 16
    assert gpt_spec.micro_batch_for(SHAPE, B, T, 10**15) == B
    assert gpt_spec.micro_batch_for(SHAPE, B, T, 0) == 1
    assert gpt_spec.micro_batch_for(SHAPE, 48, T, fits_32) == 24  # always a divisor of the batch
    assert gpt_spec.micro_batch_for(SHAPE, 24, T, gpt_spec.training_bytes(SHAPE, 8, T)) == 6
    # 1e18's largest trial (372M, 512 x 512 tokens a step) does not fit an 80 GB GPU at its full
    # batch (an out-of-memory error hours in); its micro-batch does
    cfg = preset("tinystories-gpu").replace(budgets=(1e18,), span=16.0)
    big = max(default_workload(cfg).plan(cfg.plan), key=lambda s: s.n)
    from flops_fit.models.gpt_spec import gpt_shape

    shape = gpt_shape(big.model)
    assert gpt_spec.training_bytes(shape, big.batch_size, big.seq_len) > 80e9 > gpt_spec.training_bytes(
        shape, gpt_spec.micro_batch_for(shape, big.batch_size, big.seq_len, 80 * 10**9), big.seq_len)


def test_ce_chunk_matches_the_model():
    from flops_fit.models import gpt

    assert gpt.CE_CHUNK_ELEMENTS == gpt_spec.CE_CHUNK_ELEMENTS


def test_gpus_per_trial_auto_packs_small_models_and_gives_large_ones_a_gpu():
    tiny = ModelShape(vocab_size=4096, d_model=128, num_layers=2, num_heads=2, d_ff=384, max_seq_len=512)
    assert resources.gpus_for(tiny, 32, 512, 80 * 10**9) == 0.25
    assert resources.gpus_for(SHAPE, 256, 512, 80 * 10**9) == 1.0


def test_auto_resources_follow_the_model_and_a_fixed_share_stays_fixed():
    cfg = preset("tinystories-gpu")
    specs = default_workload(cfg).plan(cfg.plan)
    rule = resources.ResourceRule(cpus=4, gpus="auto", gpu_bytes=80 * 10**9)
    shares = {s.trial_id: rule.gpus_for(s) for s in specs}
    assert set(shares.values()) == {0.25, 0.5, 1.0}  # packed small, shared middle, a whole GPU for the largest
    by_size = sorted(specs, key=lambda s: gpt_spec.training_bytes(gpt_shape(s.model), s.batch_size, s.seq_len))
    assert shares[by_size[0].trial_id] == 0.25 and shares[by_size[-1].trial_id] == 1.0
    assert rule.for_spec(by_size[0]) == {"CPU": 4.0, "GPU": 0.25}
    # a model the memory model cannot describe (a user's own) gets a whole GPU under auto
    assert rule.gpus_for(dataclasses.replace(specs[0], model={"width": 8})) == 1.0
    fixed = resources.ResourceRule(cpus=1, gpus=0.5)
    assert {fixed.gpus_for(s) for s in specs} == {0.5}
    assert resources.ResourceRule(cpus=2).for_spec(specs[0]) == {"CPU": 2.0}  # CPU trials ask for no GPU
    with pytest.raises(ValueError, match="gpu_bytes"):
        resources.ResourceRule(cpus=1, gpus="auto")


@pytest.mark.parametrize("value, ok", [("auto", True), (0.5, True), ("0.25", True), (2, True), ("lots", False),
                                        (1.5, False), (-1, False)])
def test_gpus_per_trial_accepts_numbers_and_auto_only(value, ok):
    if ok:
        SweepConfig.of(gpus_per_trial=value)
    else:
        with pytest.raises(PlanError, match="gpus_per_trial"):
            SweepConfig.of(gpus_per_trial=value)


def test_plan_shows_each_trials_resources_and_auto_needs_the_gpu_size(capsys):
    from flops_fit.cli import main

    assert main(["plan", "--preset", "tinystories-gpu", "--gpus-per-trial", "auto", "--gpu-memory-gb", "80"]) == 0
    rows = [line.split() for line in capsys.readouterr().out.splitlines() if line.strip().startswith(("3.00e", "1.00e"))]
    assert {row[-1] for row in rows} == {"4c/0.25g", "4c/0.5g", "4c/1g"}
    if torch.cuda.is_available():
        return  # the local GPU sizes auto here
    assert main(["plan", "--preset", "tinystories-gpu", "--gpus-per-trial", "auto"]) == 2
    err = capsys.readouterr().err
    assert "--gpu-memory-gb" in err and len(err.strip().splitlines()) == 1


def test_fractional_gpu_trials_get_their_own_share_through_tune(ray_session, tmp_path, capsys):
    """Real Tune scheduling on the session's one logical GPU: under auto each trial asks for
    its own share (the per-trial resource callable), and records what Ray gave it. Real smoke
    trials (they train on the CPU: Ray's GPU here is logical), since a simulated trial asks for
    no GPU at all."""
    from flops_fit.ray import sweep

    base = preset("smoke").replace(storage_path=str(tmp_path), cache_dir=str(tmp_path / "cache"), name="gpus",
                                   budgets=(1e10,), n_boot=0)
    workload = default_workload(base)
    workload.prepare(base.plan)
    specs = workload.plan(base.plan)
    needs = sorted(gpt_spec.training_bytes(gpt_shape(s.model), s.batch_size, s.seq_len) for s in specs)
    assert needs[0] < needs[1] < needs[2]
    gpu_gb = 4 * needs[1] / 1e9  # the two smaller fit in a quarter GPU, the largest does not
    result = sweep(base.replace(gpus_per_trial="auto", gpu_memory_gb=gpu_gb), progress=True)
    rule = resources.ResourceRule(cpus=1, gpus="auto", gpu_bytes=int(gpu_gb * 1e9))
    rows = result.results.set_index("trial_id")
    want = {s.trial_id: rule.gpus_for(s) for s in specs}
    assert min(want.values()) == 0.25 and max(want.values()) > 0.25  # shares differ by trial
    assert {t: rows.loc[t, "gpus"] for t in want} == want
    assert "gpus per trial (auto" in capsys.readouterr().out


def test_slots_count_gpus_on_a_gpu_node():
    assert trial_slots(192, 4.0, gpus=8, gpus_per_trial=1.0) == 8  # not 192 / 4 = 48
    assert trial_slots(192, 4.0, gpus=8, gpus_per_trial=0.5) == 16
    assert trial_slots(16, 4.0, gpus=8, gpus_per_trial=0.5) == 4  # CPUs bound too
    assert trial_slots(8, 1.0) == 8  # CPU sweep
    assert trial_slots(192, 4.0, gpus=8, gpus_per_trial=1.0, max_concurrent=3) == 3
    assert trial_slots(2, 4.0) == 1


@pytest.mark.parametrize("capability,dtype", [((7, 5), torch.float16), ((7, 0), torch.float16),
                                              ((8, 0), torch.bfloat16), ((8, 6), torch.bfloat16),
                                              ((9, 0), torch.bfloat16), (None, torch.float32)])
def test_dtype_follows_compute_capability(capability, dtype):
    assert compute_dtype(capability) == dtype


def _preflight_epochs(cfg, monkeypatch) -> float:
    from flops_fit.data import preflight

    monkeypatch.setattr(preflight, "estimate_split_tokens", lambda *a: (TINYSTORIES_TRAIN_TOKENS_LOW, False))
    specs = default_workload(cfg).plan(cfg.plan)
    return preflight.check_data_size(cfg.data, specs, None, TINYSTORIES_TRAIN_STORIES, "")


def test_gpu_preset_passes_preflight_against_tinystories_real_size(monkeypatch):
    cfg = preset("tinystories-gpu")
    assert _preflight_epochs(cfg, monkeypatch) <= cfg.max_epochs
    old = cfg.replace(budgets=(1e16, 3e16, 1e17, 3e17, 1e18), span=16.0)  # the preset's earlier budgets
    with pytest.raises(PlanError, match="dataset too small"):
        _preflight_epochs(old, monkeypatch)


def test_gpu_sweeps_do_not_reuse_actors():
    from flops_fit.planning.resources import ResourceRule
    from flops_fit.ray.backend import reuse_actors_for

    assert reuse_actors_for(ResourceRule(cpus=1.0)) is True
    assert reuse_actors_for(ResourceRule(cpus=4.0, gpus=1.0)) is False
    assert reuse_actors_for(ResourceRule(cpus=4.0, gpus="auto", gpu_bytes=80 * 10**9)) is False


def test_compile_only_where_it_pays():
    from flops_fit.planning.grid import plan
    from flops_fit.trainer.accelerator import COMPILE_MIN_STEPS, compile_pays

    short = plan([2e9], 3, vocab_size=64, seq_len=16, min_steps=20, max_batch_size=8)[0]
    assert short.steps < COMPILE_MIN_STEPS and not compile_pays(short)
    import dataclasses

    assert compile_pays(dataclasses.replace(short, steps=COMPILE_MIN_STEPS))


def test_checkpoint_is_written_off_the_loop_from_a_copy(tmp_path):
    """The loop pays only the host copy: the state written is the state at submit time even
    if training changes the weights while the thread writes; the finished directory goes to
    on_done on the caller's thread at poll()."""
    import threading

    from flops_fit.trainer import checkpoint

    weights = torch.ones(1000)
    done = []
    writer = checkpoint.BackgroundWriter(tmp_path, lambda d, p: done.append((d, p, threading.get_ident())), 0.0)
    writer.submit({"w": weights, "nested": [weights]}, 7, {"step": 7})
    weights.add_(1.0)  # training goes on
    assert not writer.due()  # one write in flight at a time
    writer.close()
    (directory, progress, thread), = done
    assert thread == threading.get_ident() and progress == {"step": 7}
    state = torch.load(directory / checkpoint.CHECKPOINT_FILE)
    assert torch.equal(state["w"], torch.ones(1000)) and torch.equal(state["nested"][0], torch.ones(1000))
    writer.last_write_s = 5.0  # a slow write stretches the interval to 1 / WRITE_FRACTION of it
    writer.last_start -= 10.0
    assert not writer.due()
    writer.last_start -= 50.0
    assert writer.due()


def test_estimate_counts_compile_time_for_trials_that_compile():
    from flops_fit.engine.estimate import COMPILE_S, estimate_sweep_seconds
    from flops_fit.models.gpt_spec import gpt_shape
    from flops_fit.planning.grid import plan
    from flops_fit.trainer.accelerator import COMPILE_MIN_STEPS

    specs = plan([1e14], 3, vocab_size=64, seq_len=16, min_steps=COMPILE_MIN_STEPS)
    rates = {(gpt_shape(s.model), s.batch_size, s.seq_len): 1e6 for s in specs}
    plain = estimate_sweep_seconds(specs, slots=1, tokens_per_s=rates)
    compiled = estimate_sweep_seconds(specs, slots=1, tokens_per_s=rates, compile=True)
    assert compiled["trial_seconds"] == pytest.approx(plain["trial_seconds"] + len(specs) * COMPILE_S)
