"""The model-wide NaN/Inf check names the layer, the tensor and whether it is a parameter or a buffer."""

import pytest
import torch
from torch import nn

import rmtlib
from rmtlib.errors import InputError
from rmtlib.nn.finite import check_finite_model


def _net() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(8, 16), nn.BatchNorm1d(16), nn.Linear(16, 4))


def test_a_finite_model_passes():
    check_finite_model(_net(), "model")


@pytest.mark.parametrize(
    "poison, message",
    [
        (lambda m: m[0].bias, "model: layer 0: bias contains 1 NaN or Inf value(s) (a parameter)"),
        (lambda m: m[1].running_var, "model: layer 1: running_var contains 1 NaN or Inf value(s) (a buffer)"),
    ],
)
def test_the_first_bad_tensor_is_named(poison, message):
    net = _net()
    with torch.no_grad():
        poison(net)[3] = float("inf")
    with pytest.raises(InputError, match=message.replace("(", r"\(").replace(")", r"\)")):
        check_finite_model(net, "model")


def test_prune_refuses_a_nan_bias_before_any_change():
    """The Python entry point pruned a model with a NaN bias (only the CLI refused it); in place, too."""
    net = _net()
    with torch.no_grad():
        net[2].bias[0] = float("nan")
    before = {k: v.clone() for k, v in net.state_dict().items()}
    with pytest.raises(InputError, match="prune magnitude: layer 2: bias contains 1 NaN"):
        rmtlib.prune(net, "magnitude", sparsity=0.5, inplace=True)
    after = net.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before if k != "2.bias")  # NaN != NaN
