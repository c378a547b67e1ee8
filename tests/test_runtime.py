import pytest
import torch

from rmtlib import InputError
from rmtlib.runtime import one_torch_thread, resolve_device


def test_resolve_device_checks_names_and_gpus():
    assert resolve_device(None) is None
    assert resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(InputError, match="device"):
        resolve_device("nonsense")
    if not torch.cuda.is_available():
        with pytest.raises(InputError, match="CUDA is not available"):
            resolve_device("cuda")


def test_one_torch_thread_restores_the_setting_even_on_error():
    before = torch.get_num_threads()
    with pytest.raises(RuntimeError, match="inside"):
        with one_torch_thread():
            assert torch.get_num_threads() == 1
            raise RuntimeError("inside")
    assert torch.get_num_threads() == before


def test_a_gpu_index_past_the_last_device_is_refused(monkeypatch):
    import torch

    from rmtlib.errors import InputError
    from rmtlib.runtime import resolve_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert resolve_device("cuda:0").index == 0
    with pytest.raises(InputError, match="has 1 CUDA device"):
        resolve_device("cuda:7")
