import pytest
import pytorch_lightning as L
import torch
from torch import nn
from torch.utils.data import DataLoader

from forecast.training.gradients import NonFiniteError
from forecast.training.losses import MaskedMSE
from forecast.training.task import ForecastTask


class LastStepNet(nn.Module):
    """(B, T, F) -> (B, horizon, F): a linear map of the last step."""

    def __init__(self, features: int = 3, horizon: int = 2, scale: float = 1.0) -> None:
        super().__init__()
        self.horizon = horizon
        self.lin = nn.Linear(features, features * horizon)
        with torch.no_grad():
            self.lin.weight.mul_(scale)

    def forward(self, x):
        return self.lin(x[:, -1]).unflatten(1, (self.horizon, -1))


def batches(n=4, b=8, t=5, f=3, horizon=2, bad=False, seed=0):
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        x = torch.randn(b, t, f, generator=g) * 10
        y = torch.randn(b, horizon, f, generator=g) * 100
        if bad:
            x[0, -1, 0] = float("inf")
        out.append({"x": x, "y": y})
    return out


class NormRecorder(L.Callback):
    def __init__(self):
        self.norms, self.maxabs = [], []

    def on_before_optimizer_step(self, trainer, pl_module, optimizer):
        grads = [p.grad for p in pl_module.parameters() if p.grad is not None]
        self.norms.append(torch.linalg.vector_norm(torch.stack([g.norm() for g in grads])).item())
        self.maxabs.append(max(g.abs().max().item() for g in grads))


def fit(task, data, callbacks=(), **kw):
    trainer = L.Trainer(
        max_epochs=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=list(callbacks),
        num_sanity_val_steps=0,
        limit_val_batches=0,
        **kw,
    )
    trainer.fit(task, train_dataloaders=DataLoader(data, batch_size=None))
    return trainer


def make_task(**kw):
    torch.manual_seed(0)
    opt = lambda params: torch.optim.SGD(params, lr=1e-3)  # noqa: E731
    return ForecastTask(LastStepNet(), opt, **kw)


class ClippedRecorder(L.Callback):
    """Gradients as the optimiser sees them: after the Trainer's clipping."""

    def __init__(self):
        self.norms, self.maxabs = [], []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        grads = [p.grad for p in pl_module.parameters() if p.grad is not None]
        self.norms.append(torch.linalg.vector_norm(torch.stack([g.norm() for g in grads])).item())
        self.maxabs.append(max(g.abs().max().item() for g in grads))


def test_task_uses_automatic_optimisation():
    assert make_task().automatic_optimization


@pytest.mark.parametrize("mode", ["norm", "value"])
def test_trainer_clipping_bounds_the_gradient(mode):
    rec = ClippedRecorder()
    fit(make_task(), batches(), [rec], gradient_clip_val=0.5, gradient_clip_algorithm=mode)
    assert len(rec.norms) == 4
    bound = rec.norms if mode == "norm" else rec.maxabs
    assert max(bound) <= 0.5 + 1e-5
    free = NormRecorder()
    fit(make_task(), batches(), [free])
    # the same data without clipping exceeds the bound, so the check above can fail
    assert max(free.norms if mode == "norm" else free.maxabs) > 5.0


def test_grad_norm_is_logged_before_clipping_every_step():
    rec = NormRecorder()  # runs just before the task's hook: the same unclipped gradients
    trainer = fit(make_task(), batches(), [rec], gradient_clip_val=0.5)
    assert trainer.global_step == 4  # one optimiser step per batch
    logged = float(trainer.logged_metrics["train/grad_norm"])
    assert logged == pytest.approx(rec.norms[-1], rel=1e-5) and logged > 0.5


def test_nonfinite_skip_counts_and_leaves_weights():
    task = make_task(nonfinite="skip")
    before = [p.detach().clone() for p in task.parameters()]
    fit(task, batches(n=3, bad=True))
    assert task.skipped_steps == 3
    assert all(torch.equal(a, b) for a, b in zip(before, task.parameters(), strict=True))


class NaNGradientNet(LastStepNet):
    """Finite forecasts whose weight gradient is NaN (d sqrt(0 * w) / dw = inf * 0)."""

    def forward(self, x):
        return super().forward(x) + torch.sqrt(self.lin.weight * 0).sum()


def test_nonfinite_gradients_are_skipped_and_counted():
    torch.manual_seed(0)
    task = ForecastTask(NaNGradientNet(), lambda params: torch.optim.SGD(params, lr=1e-3))
    before = [p.detach().clone() for p in task.parameters()]
    fit(task, batches(n=2), gradient_clip_val=1.0)
    assert task.skipped_steps == 2
    assert all(torch.equal(a, b) for a, b in zip(before, task.parameters(), strict=True))


def test_nonfinite_raise_stops_with_a_clear_error():
    with pytest.raises(NonFiniteError, match="non-finite loss"):
        fit(make_task(nonfinite="raise"), batches(n=2, bad=True))


def test_masked_targets_are_not_trained_on():
    task = make_task()
    data = batches(n=1)
    data[0]["y_mask"] = torch.zeros_like(data[0]["y"], dtype=torch.bool)
    data[0]["y_mask"][:, 0] = True
    data[0]["y"][:, 1] = float("nan")  # masked and NaN: must not poison the step
    before = [p.detach().clone() for p in task.parameters()]
    fit(task, data)
    assert task.skipped_steps == 0
    assert all(torch.isfinite(p).all() for p in task.parameters())
    assert any(not torch.equal(a, b) for a, b in zip(before, task.parameters(), strict=True))


def test_bad_options_are_refused():
    opt = lambda params: torch.optim.SGD(params, lr=1e-3)  # noqa: E731
    with pytest.raises(ValueError, match="gradient_clip_algorithm"):
        ForecastTask(LastStepNet(), opt, tbptt_k1=None).clip_manually(1.0, "max")
    with pytest.raises(ValueError, match="nonfinite"):
        ForecastTask(LastStepNet(), opt, nonfinite="ignore")
    with pytest.raises(ValueError, match="teacher_forcing"):
        ForecastTask(LastStepNet(), opt, teacher_forcing=lambda step: 1.0)


def test_bf16_precision_trains():
    task = make_task(loss=MaskedMSE())
    trainer = fit(task, batches(n=2), precision="bf16-mixed")
    assert trainer.global_step == 2
    assert task.finite_weights()


@pytest.mark.gpu
def test_bf16_on_gpu_clips_and_trains():
    rec = ClippedRecorder()
    task = make_task()
    trainer = fit(
        task, batches(n=3), [rec], accelerator="gpu", devices=1, precision="bf16-mixed",
        gradient_clip_val=0.5,
    )  # fmt: skip
    assert trainer.global_step == 3 and max(rec.norms) <= 0.5 + 1e-3
    assert task.finite_weights()
