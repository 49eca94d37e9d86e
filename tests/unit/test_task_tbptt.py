from functools import partial

import pytest
import pytorch_lightning as L
import torch
from torch.utils.data import DataLoader

from forecast.models.heads import DirectHead
from forecast.models.recurrent import StackedRecurrent
from forecast.models.sequence import SequenceForecaster
from forecast.models.step_rnn import StepRNN
from forecast.training.losses import MaskedCE, MaskedMSE
from forecast.training.task import ForecastTask
from forecast.training.tbptt import check_tbptt, truncated_bptt
from forecast.training.trainer_options import trainer_options


def step_net():
    torch.manual_seed(0)
    return StepRNN(in_channels=2, horizon=2, hidden_size=6, cell="gru")


def test_chunks_cut_the_graph_and_only_last_k2_steps_get_gradient():
    net = step_net()
    x = torch.randn(3, 12, 2, requires_grad=True)
    y = torch.randn(3, 12, 2)
    per_chunk = []

    def step(loss):
        before = torch.zeros_like(x) if x.grad is None else x.grad.clone()
        loss.backward()
        per_chunk.append((x.grad - before).abs().sum(dim=(0, 2)))

    truncated_bptt(net, x, y, None, k1=4, k2=3, loss_fn=MaskedMSE(), step=step)
    assert len(per_chunk) == 3
    for c, g in enumerate(per_chunk):
        lo, hi = 4 * c, 4 * c + 4
        outside = torch.cat([g[:lo], g[hi:]])
        assert torch.all(outside == 0), f"chunk {c} reached inputs outside its chunk"
        assert g[lo] == 0  # the first k1 - k2 = 1 step runs without a graph
        assert torch.all(g[lo + 1 : hi] > 0)


def test_state_is_carried_across_chunks():
    net = step_net()
    x, y = torch.randn(2, 8, 2), torch.randn(2, 8, 2)
    carried = truncated_bptt(net, x, y, None, 4, 4, MaskedMSE(), step=lambda loss: None)
    whole, _ = net.forward_sequence(x)
    assert torch.allclose(carried[1], MaskedMSE()(whole[:, 4:], y[:, 4:]), atol=1e-6)
    fresh, _ = net.forward_sequence(x[:, 4:])
    assert not torch.allclose(carried[1], MaskedMSE()(fresh, y[:, 4:]))


def test_refused_for_bidirectional_and_final_state_only_nets():
    bi = StepRNN(in_channels=2, horizon=2, hidden_size=4, n_classes=3, bidirectional=True)
    with pytest.raises(ValueError, match="bidirectional"):
        check_tbptt(bi, 4, None)
    direct = SequenceForecaster(
        in_channels=2, horizon=2, backbone=partial(StackedRecurrent, hidden_size=4),
        head=partial(DirectHead),
    )  # fmt: skip
    with pytest.raises(ValueError, match="final state"):
        ForecastTask(direct, partial(torch.optim.SGD, lr=0.1), tbptt_k1=4)
    with pytest.raises(ValueError, match="k2"):
        check_tbptt(step_net(), 4, 0)
    assert check_tbptt(step_net(), 4, 6) == 6  # k2 > k1: the graph reaches back further


class Wrapped(torch.nn.Module):
    """A custom net hiding a bidirectional stack one level down, with no attribute of its own."""

    def __init__(self):
        super().__init__()
        self.inner = torch.nn.Sequential(torch.nn.GRU(2, 4, batch_first=True, bidirectional=True))

    def forward_sequence(self, x, state=None):
        return self.inner[0](x, state)


def test_refused_for_a_bidirectional_module_anywhere_in_the_net():
    with pytest.raises(ValueError, match=r"bidirectional modules \(inner.0\)"):
        check_tbptt(Wrapped(), 4, None)
    stack = StackedRecurrent(2, hidden_size=4, bidirectional=True)
    with pytest.raises(ValueError, match="bidirectional"):
        check_tbptt(stack, 4, None)


@pytest.mark.parametrize(("k1", "k2", "t"), [(4, 4, 12), (4, 2, 10), (3, 5, 11), (2, 7, 9)])
def test_every_output_step_enters_exactly_one_loss(k1, k2, t):
    net = step_net()
    x = torch.randn(2, t, 2)
    y = torch.randn(2, t, 2)
    y[..., 0] = torch.arange(t, dtype=torch.float32)  # each target carries its step index
    seen = []

    def loss_fn(pred, target, mask):
        assert pred.shape == target.shape
        seen.extend(int(v) for v in target[0, :, 0])
        return MaskedMSE()(pred, target, mask)

    losses = truncated_bptt(net, x, y, None, k1, k2, loss_fn, step=lambda loss: None)
    assert sorted(seen) == list(range(t))  # every step once, none twice, none missing
    assert len(losses) == -(-t // k1)  # one update every k1 steps


def test_k2_above_k1_gradients_reach_back_k2_steps_and_match_full_bptt():
    net = step_net()
    k1, k2, t = 3, 5, 9
    x = torch.randn(2, t, 2, requires_grad=True)
    y = torch.randn(2, t, 2)
    reach = []

    def step(loss):
        (g,) = torch.autograd.grad(loss, x, retain_graph=True)
        reach.append(g.abs().sum(dim=(0, 2)) > 0)

    truncated_bptt(net, x, y, None, k1, k2, MaskedMSE(), step)
    for u, got in enumerate(reach):
        hi = min((u + 1) * k1, t)
        expected = torch.zeros(t, dtype=torch.bool)
        expected[max(0, hi - k2) : hi] = True  # exactly the last k2 steps before the update
        assert torch.equal(got, expected), (u, got)
    # the re-run prefix starts from the carried state: the update's outputs equal full BPTT's
    whole, _ = net.forward_sequence(x)
    last = truncated_bptt(net, x, y, None, k1, k2, MaskedMSE(), step=lambda loss: None)[-1]
    assert torch.allclose(last, MaskedMSE()(whole[:, 6:], y[:, 6:]), atol=1e-6)


def test_task_trains_one_step_ahead_with_tbptt():
    g = torch.Generator().manual_seed(0)
    data = [
        {"x": torch.randn(4, 10, 2, generator=g), "y": torch.randn(4, 2, 2, generator=g)}
        for _ in range(2)
    ]
    task = ForecastTask(step_net(), partial(torch.optim.SGD, lr=0.01), tbptt_k1=4, tbptt_k2=2)
    assert not task.automatic_optimization
    trainer = L.Trainer(
        max_epochs=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
    )
    trainer.fit(task, train_dataloaders=DataLoader(data, batch_size=None))
    # 11 one-step-ahead pairs per window -> chunks of 4: 3 optimiser steps per batch
    assert trainer.global_step == 6


def test_task_labels_every_step_with_tbptt():
    torch.manual_seed(0)
    net = StepRNN(in_channels=2, horizon=1, hidden_size=6, n_classes=3)
    g = torch.Generator().manual_seed(0)
    data = [
        {"x": torch.randn(4, 10, 2, generator=g), "y": torch.randint(0, 3, (4, 10), generator=g)}
        for _ in range(2)
    ]
    task = ForecastTask(net, partial(torch.optim.SGD, lr=0.01), loss=MaskedCE(3), tbptt_k1=5)
    trainer = L.Trainer(
        max_epochs=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
    )
    trainer.fit(task, train_dataloaders=DataLoader(data, batch_size=None))
    assert trainer.global_step == 4  # 10 labelled steps in chunks of 5, two batches


class ClippedStep(L.Callback):
    def __init__(self):
        self.norms = []

    def on_before_optimizer_step(self, trainer, pl_module, optimizer):
        grads = [p.grad for p in pl_module.parameters() if p.grad is not None]
        self.norms.append(torch.linalg.vector_norm(torch.stack([g.norm() for g in grads])).item())


def test_tbptt_task_clips_with_the_trainer_settings_handed_over():
    g = torch.Generator().manual_seed(0)
    data = [{"x": torch.randn(4, 10, 2, generator=g) * 50, "y": torch.randn(4, 2, 2, generator=g)}]
    task = ForecastTask(step_net(), partial(torch.optim.SGD, lr=0.01), tbptt_k1=4)
    options = trainer_options(
        {"max_epochs": 1, "gradient_clip_val": 0.1, "gradient_clip_algorithm": "norm",
         "threads": torch.get_num_threads()},
        task,
    )  # fmt: skip
    assert "gradient_clip_val" not in options and "threads" not in options
    assert (task.clip_val, task.clip_algorithm) == (0.1, "norm")
    rec = ClippedStep()  # runs inside opt.step(), after the task's clip_gradients
    trainer = L.Trainer(
        **options, logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, limit_val_batches=0, callbacks=[rec],
    )  # fmt: skip
    trainer.fit(task, train_dataloaders=DataLoader(data, batch_size=None))
    assert len(rec.norms) == 3 and max(rec.norms) <= 0.1 + 1e-5
    assert float(trainer.logged_metrics["train/grad_norm"]) > 0.1  # logged before clipping
