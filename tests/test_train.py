"""The trainer alone, without Ray: schedule, batch order, batch stream, in-process resume."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from windows import SEQ, VOCAB, Windows
from windows import TinyGPTWorkload as _TinyGPTWorkload

from flops_fit.config import TrainOptions
from flops_fit.planning.grid import plan
from flops_fit.trainer.batches import BatchOrder, BatchStream
from flops_fit.trainer.trial import lr_at, run_trial


@pytest.fixture(scope="module")
def spec():
    return plan([2e9], 3, vocab_size=VOCAB, seq_len=SEQ, min_steps=20, max_batch_size=8)[0]


def test_schedule_warms_up_linearly_and_ends_at_the_floor(spec):
    assert lr_at(0, spec) == pytest.approx(spec.lr / spec.warmup_steps)
    assert lr_at(spec.warmup_steps - 1, spec) == pytest.approx(spec.lr)
    assert lr_at(spec.warmup_steps, spec) == pytest.approx(spec.lr)  # cosine starts at the peak
    assert lr_at(spec.steps, spec) == pytest.approx(0.1 * spec.lr)  # exactly min_ratio at the end
    lrs = [lr_at(k, spec) for k in range(spec.warmup_steps, spec.steps + 1)]
    assert all(a >= b for a, b in zip(lrs, lrs[1:]))  # monotone decay


def test_batch_order_is_a_permutation_each_epoch_and_differs_across_epochs():
    order = BatchOrder(num_windows=10, batch_size=5, seed=3)
    epoch0 = np.concatenate([order.indices(0), order.indices(1)])
    epoch1 = np.concatenate([order.indices(2), order.indices(3)])
    assert sorted(epoch0) == list(range(10)) and sorted(epoch1) == list(range(10))
    assert not np.array_equal(epoch0, epoch1)
    assert np.array_equal(order.indices(1, 3), np.concatenate([order.indices(1), order.indices(2)]))
    assert np.array_equal(BatchOrder(10, 5, 3).indices(3), order.indices(3))  # a pure function of (seed, step)


def test_batch_stream_equals_gathering_each_step_directly():
    data, steps = Windows(37, 0), 23
    order = BatchOrder(len(data), 4, seed=7)
    stream = BatchStream(data, order, steps, SEQ, torch.device("cpu"), prefetch=True)
    stream.ahead = 5  # several chunks, one crossing an epoch boundary
    try:
        for k in range(steps):
            x, y = stream.get(k)
            assert torch.equal(x, data.get_batch(order.indices(k))) and y is x
    finally:
        stream.close()


def test_save_then_resume_in_one_process_gives_bitwise_equal_weights(spec, tmp_path):
    torch.set_num_threads(1)
    workload = _TinyGPTWorkload()
    saved: list = []

    def save(directory, progress):
        saved.append((directory, progress["step"]))

    class _Stop(Exception):
        pass

    def stop_after_first_checkpoint(ctx):
        if saved and not ctx.resumed:
            raise _Stop

    options = TrainOptions(threads=1, checkpoint_every_s=1e-9, log_every=1)
    straight = run_trial(spec, workload, TrainOptions(threads=1, log_every=1))
    with pytest.raises(_Stop):
        run_trial(spec, workload, TrainOptions(threads=1, checkpoint_every_s=1e-9, log_every=1,
                                               step_hooks=(stop_after_first_checkpoint,)),
                  save_checkpoint=save, checkpoint_root=tmp_path)
    directory, step = saved[0]
    assert 0 < step < spec.steps
    resumed = run_trial(spec, workload, options, resume_from=directory, checkpoint_root=tmp_path)
    straight_weights, resumed_weights = workload.models[0].state_dict(), workload.models[2].state_dict()
    assert all(torch.equal(straight_weights[k], resumed_weights[k]) for k in straight_weights)  # bitwise
    assert resumed.metrics["loss"] == straight.metrics["loss"]
    assert resumed.metrics["curve"] == straight.metrics["curve"]
    assert resumed.metrics["tokens"] == spec.tokens


def test_step_hooks_see_every_step_once(spec):
    seen: list[int] = []
    run_trial(spec, _TinyGPTWorkload(), TrainOptions(threads=1, step_hooks=(lambda ctx: seen.append(ctx.step),)))
    assert seen == list(range(spec.steps))


# --- the GPU path, CPU stand-ins ----------------------------------------------------------


def test_micro_batches_give_the_gradient_and_update_of_one_batch(spec):
    """k equal micro-batches (loss/k each) accumulate the whole batch's gradient: with SGD(lr=1)
    the weight change is the gradient; equal to 1e-6 absolute (fp32 sums in another order)."""
    from flops_fit.trainer.steps import train_step
    from flops_fit.workloads.gpt import ReferenceGPT

    x = Windows(8, 5).data
    after = []
    for k in (1, 2, 4):
        torch.manual_seed(0)
        model = ReferenceGPT().build_model(spec)
        before = {n: p.detach().clone() for n, p in model.named_parameters()}
        loss = train_step(model, torch.optim.SGD(model.parameters(), lr=1.0), x, lambda: torch.autocast("cpu", enabled=False),
                          micro_batches=k)
        after.append((float(loss), {n: p.detach() - before[n] for n, p in model.named_parameters()}))
    (loss1, step1), rest = after[0], after[1:]
    assert any(v.abs().max() > 1e-4 for v in step1.values())  # the step moved the weights
    for loss_k, step_k in rest:
        assert loss_k == pytest.approx(loss1, rel=1e-6)
        for name in step1:
            torch.testing.assert_close(step_k[name], step1[name], rtol=0, atol=1e-6)
    with pytest.raises(ValueError, match="equal micro-batches"):
        train_step(model, torch.optim.SGD(model.parameters(), lr=1.0), x[:6], lambda: torch.autocast("cpu", enabled=False),
                   micro_batches=4)


def test_a_trial_in_micro_batches_trains_the_same_model(spec):
    """The whole trainer (AdamW, schedule, tokens) with 4 micro-batches: same tokens, and the
    final validation loss within 1e-4 of one batch a step (Adam divides small gradient
    differences by small second moments, so the bound is looser than the gradient's)."""
    one = run_trial(spec, _TinyGPTWorkload(), TrainOptions(threads=1))
    four = run_trial(spec, _TinyGPTWorkload(), TrainOptions(threads=1, micro_batches=4))
    assert one.metrics["micro_batches"] == 1 and four.metrics["micro_batches"] == 4
    assert four.metrics["tokens"] == one.metrics["tokens"] == spec.tokens
    assert four.metrics["loss"] == pytest.approx(one.metrics["loss"], abs=1e-4)


class _AsIfOnCuda:
    """What ``torch.load(map_location="cuda")`` returns for the saved CPU RNG state: a tensor
    ``torch.set_rng_state`` refuses ("RNG state must be a torch.ByteTensor") until it is moved
    back to a CPU ByteTensor. No GPU here, so this stands in for the CUDA copy."""

    def __init__(self, cpu_tensor):
        self.cpu_tensor = cpu_tensor

    def to(self, device, dtype=None):
        assert str(device) == "cpu" and dtype in (None, torch.uint8)
        return self.cpu_tensor

    def cpu(self):
        return self.cpu_tensor


def test_resume_loads_rng_state_saved_by_a_gpu_trial(spec, tmp_path, monkeypatch):
    from flops_fit.trainer import trial as train_mod

    saved: list = []
    workload = _TinyGPTWorkload()
    run_trial(spec, workload, TrainOptions(threads=1, checkpoint_every_s=1e-9),
              save_checkpoint=lambda d, p: saved.append(d), checkpoint_root=tmp_path)
    real_load = torch.load

    def load_as_on_gpu(*args, **kwargs):
        state = real_load(*args, **kwargs)
        state["rng_cpu"] = _AsIfOnCuda(state["rng_cpu"])
        return state

    monkeypatch.setattr(train_mod.torch, "load", load_as_on_gpu)
    with pytest.raises(TypeError):  # what the old load path did with it on every GPU resume
        torch.set_rng_state(_AsIfOnCuda(torch.get_rng_state()))
    out = run_trial(spec, workload, TrainOptions(threads=1), resume_from=saved[0])
    assert out.status == "ok" and out.metrics["tokens"] == spec.tokens


def test_fp16_grad_scaler_step_matches_the_unscaled_step_and_skips_overflow(spec):
    """Below sm80 the trainer scales fp16 losses with a GradScaler (CPU stand-in here): a finite
    step equals the unscaled one (the scaler unscales before the optimizer; 1e-6), and an
    overflowing one changes no weight and halves the scale."""
    from flops_fit.trainer.steps import train_step
    from flops_fit.workloads.gpt import ReferenceGPT

    x = Windows(4, 5).data
    no_autocast = lambda: torch.autocast("cpu", enabled=False)  # noqa: E731
    steps = []
    for scaler in (None, torch.amp.GradScaler("cpu", init_scale=2.0**12)):
        torch.manual_seed(0)
        model = ReferenceGPT().build_model(spec)
        before = {n: p.detach().clone() for n, p in model.named_parameters()}
        loss = train_step(model, torch.optim.SGD(model.parameters(), lr=1.0), x, no_autocast, scaler=scaler)
        steps.append((float(loss), {n: p.detach() - before[n] for n, p in model.named_parameters()}))
    (plain_loss, plain), (scaled_loss, scaled) = steps
    assert scaled_loss == pytest.approx(plain_loss, abs=1e-6)  # the reported loss is not the scaled one
    assert any(v.abs().max() > 1e-4 for v in plain.values())
    for name in plain:
        torch.testing.assert_close(scaled[name], plain[name], rtol=0, atol=1e-6)

    torch.manual_seed(0)
    model = ReferenceGPT().build_model(spec)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**12)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    overflow = lambda xs, labels: (None, model(xs, labels=labels)[1] * float("inf"))  # noqa: E731
    train_step(overflow, torch.optim.SGD(model.parameters(), lr=1.0), x, no_autocast, scaler=scaler)
    assert all(torch.equal(p, before[n]) for n, p in model.named_parameters())
    assert scaler.get_scale() == 2.0**11
