from functools import partial

import pytest
import pytorch_lightning as L
import torch
from torch.utils.data import DataLoader

from forecast.models.heads import ClassHead, DirectHead
from forecast.models.recurrent import StackedRecurrent
from forecast.models.sequence import SequenceForecaster
from forecast.models.step_rnn import StepRNN
from forecast.training.losses import MaskedCE
from forecast.training.schedules import (
    ConstantRatio,
    ExponentialDecay,
    InverseSigmoidDecay,
    LinearDecay,
)
from forecast.training.task import ForecastTask


def fit(task, train, val=None, epochs=1):
    trainer = L.Trainer(
        max_epochs=epochs,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        limit_val_batches=1.0 if val else 0,
    )
    trainer.fit(
        task, DataLoader(train, batch_size=None), DataLoader(val, batch_size=None) if val else None
    )
    return trainer


def labelled(n, seed, synced):
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        x = torch.randn(16, 6, 2, 1, generator=g)
        y = (x[..., 0, 0] > 0).long() if synced else (x.mean(dim=(1, 2, 3)) > 0).long()
        out.append({"x": x, "y": y})
    return out


def test_many_to_one_classification_learns():
    torch.manual_seed(0)
    net = SequenceForecaster(
        in_channels=1,
        horizon=1,
        n_sensors=2,
        backbone=partial(StackedRecurrent, hidden_size=16),
        head=partial(ClassHead, n_classes=2),
    )
    task = ForecastTask(net, partial(torch.optim.Adam, lr=0.05), loss=MaskedCE(2))
    trainer = fit(task, labelled(8, 0, False), labelled(2, 1, False), epochs=2)
    assert trainer.callback_metrics["val/accuracy"] > 0.75


def test_synced_labelling_with_a_bidirectional_net():
    torch.manual_seed(0)
    net = StepRNN(
        in_channels=1, horizon=1, hidden_size=16, n_sensors=2, n_classes=2, bidirectional=True
    )
    task = ForecastTask(net, partial(torch.optim.Adam, lr=0.05), loss=MaskedCE(2))
    trainer = fit(task, labelled(8, 0, True), labelled(2, 1, True), epochs=2)
    assert trainer.callback_metrics["val/accuracy"] > 0.75


def test_task_applies_the_teacher_forcing_schedule():
    torch.manual_seed(0)
    net = StepRNN(in_channels=2, horizon=3, hidden_size=8)
    seen = []
    forward = net.forward

    def spy(x, targets=None, teacher_forcing=0.0):
        seen.append(teacher_forcing)
        return forward(x, targets=targets, teacher_forcing=teacher_forcing)

    net.forward = spy
    task = ForecastTask(
        net, partial(torch.optim.SGD, lr=0.01), teacher_forcing=LinearDecay(1.0, 0.0, steps=4)
    )
    task._net_args = {"targets", "teacher_forcing"}
    g = torch.Generator().manual_seed(0)
    data = [
        {"x": torch.randn(4, 5, 2, generator=g), "y": torch.randn(4, 3, 2, generator=g)}
        for _ in range(5)
    ]
    fit(task, data)
    assert seen == pytest.approx([1.0, 0.75, 0.5, 0.25, 0.0])


def test_schedules():
    assert ConstantRatio(0.3)(1000) == 0.3
    assert LinearDecay(1.0, 0.2, 10)(5) == pytest.approx(0.6)
    assert LinearDecay(1.0, 0.2, 10)(50) == pytest.approx(0.2)
    s = InverseSigmoidDecay(10)
    assert s(0) == pytest.approx(10 / 11) and s(100) < 0.01 and s(10**6) == 0.0
    assert ExponentialDecay(0.5)(3) == pytest.approx(0.125)
    with pytest.raises(ValueError, match="probability"):
        ConstantRatio(1.5)


@pytest.mark.parametrize("kind", ["bidirectional", "teacher_forced"])
def test_evaluation_never_reads_the_horizon(kind):
    torch.manual_seed(0)
    if kind == "bidirectional":
        net = SequenceForecaster(
            in_channels=1,
            horizon=3,
            n_sensors=2,
            backbone=partial(StackedRecurrent, hidden_size=8, bidirectional=True),
            head=partial(DirectHead),
        )
        schedule = None
    else:
        net = StepRNN(in_channels=1, horizon=3, hidden_size=8, n_sensors=2)
        schedule = ConstantRatio(1.0)  # full teacher forcing while training
    task = ForecastTask(net, partial(torch.optim.SGD, lr=0.1), teacher_forcing=schedule).eval()
    x = torch.randn(4, 6, 2, 1)
    a = task.predict_batch({"x": x, "y": torch.randn(4, 3, 2, 1)})
    b = task.predict_batch({"x": x, "y": torch.randn(4, 3, 2, 1) * 100})
    assert torch.equal(a, b)
