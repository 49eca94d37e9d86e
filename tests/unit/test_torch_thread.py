"""The served model's torch thread: one thread runs every call, results and errors come back."""

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
import torch

from forecast.serving.torch_thread import THREAD_PREFIX, on_torch_thread


def _thread_name() -> str:
    return threading.current_thread().name


def test_calls_from_many_threads_run_on_one_torch_thread() -> None:
    with ThreadPoolExecutor(4) as pool:
        names = set(pool.map(lambda _: on_torch_thread(_thread_name), range(16)))
    assert len(names) == 1
    assert names.pop().startswith(THREAD_PREFIX)
    assert on_torch_thread(_thread_name) != _thread_name()


def test_result_error_and_nesting() -> None:
    x = torch.arange(6.0)
    assert torch.equal(on_torch_thread(torch.mul, x, 2.0), x * 2)
    with pytest.raises(ValueError, match="boom"):
        on_torch_thread(lambda: (_ for _ in ()).throw(ValueError("boom")))
    # a call made on the torch thread runs inline instead of waiting on itself
    assert on_torch_thread(lambda: on_torch_thread(_thread_name)).startswith(THREAD_PREFIX)


def test_torch_thread_uses_the_process_thread_count() -> None:
    assert on_torch_thread(torch.get_num_threads) == torch.get_num_threads()
