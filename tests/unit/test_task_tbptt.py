from functools import partial

import pytorch_lightning as L
import pytest
import torch
from torch.utils.data import DataLoader

from forecast.models.heads import DirectHead
from forecast.models.recurrent import StackedRecurrent
from forecast.models.sequence import SequenceForecaster
from forecast.models.step_rnn import StepRNN
from forecast.training.losses import MaskedCE, MaskedMSE
from forecast.training.task import ForecastTask
from forecast.training.tbptt import check_tbptt, truncated_bptt


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
        check_tbptt(step_net(), 4, 5)


def test_task_trains_one_step_ahead_with_tbptt():
    g = torch.Generator().manual_seed(0)
    data = [
        {"x": torch.randn(4, 10, 2, generator=g), "y": torch.randn(4, 2, 2, generator=g)}
        for _ in range(2)
    ]
    task = ForecastTask(step_net(), partial(torch.optim.SGD, lr=0.01), tbptt_k1=4, tbptt_k2=2)
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
