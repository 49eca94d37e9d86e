from functools import partial
from types import SimpleNamespace
from unittest.mock import MagicMock

import pytorch_lightning as L
import torch
from pytorch_lightning.loggers import MLFlowLogger
from torch.utils.data import DataLoader

from forecast.models.conv_lstm import ConvLSTMForecaster
from forecast.models.step_rnn import StepRNN
from forecast.training.callbacks import GradientFlowCallback
from forecast.training.gradient_flow import gradient_flow, plot_gradient_flow
from forecast.training.task import ForecastTask


def conv_task():
    torch.manual_seed(0)
    net = ConvLSTMForecaster(1, horizon=2, hidden_channels=[4, 4], patch=1)
    return ForecastTask(net, partial(torch.optim.SGD, lr=0.01))


def grid_batch(t=6):
    g = torch.Generator().manual_seed(0)
    return {
        "x": torch.randn(2, t, 1, 8, 8, generator=g),
        "y": torch.randn(2, 2, 1, 8, 8, generator=g),
    }


def test_hidden_state_flow_reaches_every_context_step():
    batch = grid_batch()
    flow = gradient_flow(conv_task().net, batch["x"], batch["y"])
    assert flow["what"] == "hidden" and flow["norm"].shape == (6,)
    # only the final encoder state feeds the forecaster directly: non-zero norms at lags > 0
    # prove the recorded grads are total derivatives through the recurrence
    assert torch.all(flow["norm"] > 0)


def test_vanishing_with_small_recurrent_weights():
    torch.manual_seed(0)
    net = StepRNN(in_channels=3, horizon=1, hidden_size=8, cell="rnn")
    with torch.no_grad():
        for name, p in net.rnn.named_parameters():
            if "weight_hh" in name:
                p.mul_(0.05)
    task = ForecastTask(net, partial(torch.optim.SGD, lr=0.01))
    g = torch.Generator().manual_seed(1)
    batch = {"x": torch.randn(4, 10, 3, generator=g), "y": torch.randn(4, 1, 3, generator=g)}
    flow = gradient_flow(task.net, batch["x"], batch["y"])
    assert flow["what"] == "input"  # torch's fused RNN: measured at the inputs
    assert flow["norm"][5] < 1e-3 * flow["norm"][0]


def test_callback_saves_png_and_logs_to_mlflow(tmp_path):
    task = conv_task()
    cb = GradientFlowCallback()
    data = [grid_batch()] * 2
    trainer = L.Trainer(
        max_epochs=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
        callbacks=[cb],
        num_sanity_val_steps=0,
    )
    trainer.fit(task, DataLoader(data, batch_size=None), DataLoader(data, batch_size=None))
    assert len(cb.paths) == 1 and cb.paths[0].stat().st_size > 1000
    assert "grad_flow/ratio" in trainer.callback_metrics
    logger = MagicMock(spec=MLFlowLogger)
    logger.run_id = "abc"
    fake = SimpleNamespace(
        current_epoch=1, logger=logger, log_dir=str(tmp_path), default_root_dir=str(tmp_path)
    )
    cb.on_train_epoch_end(fake, conv_task())  # a task outside any trainer loop
    logger.experiment.log_artifact.assert_called_once()
    assert logger.experiment.log_artifact.call_args[0][0] == "abc"


def test_plot_returns_a_figure():
    fig = plot_gradient_flow(
        {"lag": torch.arange(3), "norm": torch.tensor([1.0, 0.1, 0.01]), "what": "hidden"}
    )
    assert fig.axes[0].get_yscale() == "log"


def test_probe_records_without_patching_and_is_cleared():
    task = conv_task()
    stack = next(m for m in task.net.modules() if hasattr(m, "probe"))
    step = type(stack.cells[-1]).step
    batch = grid_batch()
    gradient_flow(task.net, batch["x"], batch["y"])
    assert stack.probe is None  # recording is off again
    assert "step" not in vars(stack.cells[-1]) and type(stack.cells[-1]).step is step


def test_gradient_flow_is_opt_in(compose_cfg):
    default = compose_cfg(["logger=none"])
    assert "gradient_flow" not in default.callbacks
    opted = compose_cfg(["logger=none", "callbacks=with_gradient_flow"])
    assert opted.callbacks.gradient_flow._target_.endswith("GradientFlowCallback")
    assert "model_checkpoint" in opted.callbacks
