import pytest
import torch

from forecast.training.threads import one_thread_worker, set_threads, usable_cores
from forecast.training.trainer_options import trainer_options


@pytest.fixture(autouse=True)
def keep_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def test_default_threads_are_the_usable_cores():
    assert set_threads(None) == usable_cores() == torch.get_num_threads()
    assert set_threads(1) == 1 == torch.get_num_threads()


def test_bad_thread_count_is_refused_in_one_line():
    with pytest.raises(ValueError, match=r"trainer.threads: expected >= 1 or null, got 0"):
        set_threads(0)


def test_trainer_options_pop_threads_and_keep_clipping_for_automatic_tasks():
    task = torch.nn.Module()
    task.automatic_optimization = True
    out = trainer_options({"_target_": "T", "threads": 1, "gradient_clip_val": 0.5}, task)
    assert out == {"_target_": "T", "gradient_clip_val": 0.5}
    assert torch.get_num_threads() == 1


def test_worker_init_runs_one_thread():
    torch.set_num_threads(2)
    one_thread_worker(0)
    assert torch.get_num_threads() == 1
