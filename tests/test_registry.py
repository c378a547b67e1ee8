"""The method registry: a method registered in one place is usable, validated and counted by rmtlib.prune."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import rmtlib
from rmtlib.errors import InputError
from rmtlib.pruning import METHODS, PruneContext, register_method
from rmtlib.pruning.elementwise import removal_needed


@pytest.fixture
def first_rows_method():
    """A toy method: zero whole leading entries of the first unit until the target is met."""

    @register_method("test_first_entries", requires_sparsity=True)
    def first_entries(ctx: PruneContext, *, offset: int = 0) -> dict:
        """Zero the first entries of the first unit."""
        remove = removal_needed(ctx.units, ctx.budget)
        flat = ctx.units[0].matrix.view(-1)
        flat[offset : offset + remove] = 0
        return {"removed_here": remove}

    yield "test_first_entries"
    del METHODS["test_first_entries"]


def test_a_registered_method_prunes_to_the_exact_target(first_rows_method: str):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(20, 30), nn.ReLU(), nn.Linear(30, 5))
    dense = sum(p.numel() for p in net.parameters())
    result = rmtlib.prune(net, first_rows_method, sparsity=0.2)
    pruned = result.model
    nonzero = sum(int(torch.count_nonzero(p)) for p in pruned.parameters())
    assert nonzero == int((1 - 0.2) * dense)
    assert int(torch.count_nonzero(pruned[0].weight[:, :])) == 600 - result.summary.outputs["removed_here"]
    spec = METHODS[first_rows_method]
    assert spec.options == frozenset({"offset"}) and spec.summary == "Zero the first entries of the first unit."


def test_unknown_options_and_missing_sparsity_are_refused_by_name(first_rows_method: str):
    net = nn.Linear(8, 8)
    with pytest.raises(InputError, match="unknown option.*bogus.*accepts offset"):
        rmtlib.prune(net, first_rows_method, sparsity=0.5, bogus=1)
    with pytest.raises(InputError, match="sparsity= is required"):
        rmtlib.prune(net, first_rows_method)
    with pytest.raises(InputError, match="unknown pruning method 'nope'"):
        rmtlib.prune(net, "nope", sparsity=0.5)


def test_registration_checks_its_own_declaration():
    with pytest.raises(ValueError, match="kind must be one of"):
        register_method("x", kind="diagonal")
    with pytest.raises(ValueError, match="stopping option 'z' is not an option"):
        register_method("x", stopping_option="z")(lambda ctx: None)
    assert "x" not in METHODS


def test_every_builtin_method_declares_what_it_needs():
    assert {"rmt", "rmt_oneshot", "rmt_lowrank", "magnitude", "svd", "random"} <= set(METHODS)
    assert [m for m, s in METHODS.items() if s.structured] == ["rmt_lowrank", "svd"]
    assert {m for m, s in METHODS.items() if s.needs_fit} == {"rmt", "rmt_oneshot", "rmt_lowrank", "seb"}
    assert METHODS["rmt"].stopping_option == "cycles" and METHODS["random"].requires_sparsity
