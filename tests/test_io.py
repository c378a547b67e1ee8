"""Checkpoints: exact round trip (low-rank layers included), atomic writes, refusal of mismatches."""

from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

import rmtlib.nn.checkpoints as rio
from rmtlib.errors import CheckpointError
from rmtlib.nn.checkpoints import load_checkpoint, read_checkpoint, save_checkpoint
from rmtlib.nn.lowrank import LowRankConv2d, LowRankLinear, replace_module


def _net() -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(1, 6, 3), nn.Flatten(), nn.Linear(6 * 6 * 6, 32), nn.ReLU(), nn.Linear(32, 10))


def test_round_trip_identical_outputs_with_low_rank(tmp_path: Path):
    model = _net()
    replace_module(model, "2", LowRankLinear.from_linear(model[2], 5))
    replace_module(model, "0", LowRankConv2d.from_conv(model[0], 2))
    with torch.no_grad():
        model[4].weight[0].zero_()
    x = torch.randn(4, 1, 8, 8)
    path = save_checkpoint(model, tmp_path / "m.safetensors", {"method": "rmt_lowrank", "sparsity": 0.5})
    fresh, meta = load_checkpoint(path, _net())
    assert isinstance(fresh[2], LowRankLinear) and fresh[2].rank == 5
    assert isinstance(fresh[0], LowRankConv2d) and fresh[0].rank == 2
    assert torch.equal(fresh(x), model(x))
    assert meta["method"] == "rmt_lowrank" and meta["sparsity"] == 0.5
    assert meta["lowrank"] == {"0": {"type": "LowRankConv2d", "rank": 2}, "2": {"type": "LowRankLinear", "rank": 5}}
    assert meta["library_version"]


def test_plain_state_dicts_load(tmp_path: Path):
    model = _net()
    x = torch.randn(2, 1, 8, 8)
    torch.save({"state_dict": model.state_dict()}, tmp_path / "w.pth")
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp_path / "w.safetensors"))
    for name in ("w.pth", "w.safetensors"):
        fresh, meta = load_checkpoint(tmp_path / name, _net())
        assert torch.equal(fresh(x), model(x))
        assert meta["lowrank"] == {}


def test_failed_write_leaves_the_old_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    model = _net()
    path = save_checkpoint(model, tmp_path / "m.safetensors", {"v": 1})
    before = path.read_bytes()

    def broken(tensors, filename, metadata=None):
        Path(filename).write_bytes(b"partial garbage")
        raise OSError("disk full")

    monkeypatch.setattr(rio, "save_file", broken)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(_net(), path, {"v": 2})
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.safetensors"]  # no temp file left
    assert load_checkpoint(path, _net())[1]["v"] == 1


def test_mismatching_checkpoint_is_refused_naming_keys(tmp_path: Path):
    path = save_checkpoint(_net(), tmp_path / "m.safetensors")
    other = nn.Sequential(
        nn.Conv2d(1, 6, 3), nn.Flatten(), nn.Linear(6 * 6 * 6, 16), nn.ReLU(), nn.Linear(16, 10), nn.Linear(10, 2)
    )
    before = {k: v.clone() for k, v in other.state_dict().items()}
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path, other)
    msg = str(info.value)
    assert "2.weight (32, 216) vs (16, 216)" in msg and "5.weight" in msg and "missing keys" in msg
    assert all(torch.equal(before[k], v) for k, v in other.state_dict().items())  # untouched


def test_low_rank_mismatch_restores_dense_layers(tmp_path: Path):
    model = _net()
    replace_module(model, "2", LowRankLinear.from_linear(model[2], 5))
    path = save_checkpoint(model, tmp_path / "m.safetensors")
    other = nn.Sequential(nn.Conv2d(1, 6, 3), nn.Flatten(), nn.Linear(6 * 6 * 6, 32), nn.ReLU(), nn.Linear(32, 7))
    with pytest.raises(CheckpointError, match="4.weight"):
        load_checkpoint(path, other)
    assert type(other[2]) is nn.Linear


def test_unreadable_checkpoint(tmp_path: Path):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not a safetensors file at all")
    with pytest.raises(CheckpointError, match="bad.safetensors"):
        load_checkpoint(bad, _net())
    with pytest.raises(CheckpointError, match="no such"):
        load_checkpoint(tmp_path / "missing.pt", _net())
    (tmp_path / "bad.pt").write_bytes(b"junk")
    with pytest.raises(CheckpointError, match="bad.pt"):
        load_checkpoint(tmp_path / "bad.pt", _net())


def test_the_same_model_saved_in_different_processes_is_the_same_file(tmp_path):
    """safetensors writes its metadata map in a per-process random order; the header is rewritten sorted,
    so a model card's sha256 can confirm a reproduction."""
    import hashlib
    import subprocess
    import sys

    script = (
        "import sys, torch\n"
        "from rmtlib.nn.checkpoints import save_checkpoint\n"
        "from rmtlib.nn.models import fc_net\n"
        "torch.manual_seed(0)\n"
        "save_checkpoint(fc_net([20, 16, 4]), sys.argv[1], {'b': 1, 'a': 'x', 'seed': 0})\n"
    )
    digests = set()
    for i in range(3):
        out = tmp_path / f"m{i}.safetensors"
        subprocess.run([sys.executable, "-c", script, str(out)], check=True)
        digests.add(hashlib.sha256(out.read_bytes()).hexdigest())
    assert len(digests) == 1
    state, record = read_checkpoint(tmp_path / "m0.safetensors")
    assert record["metadata"] == {"b": 1, "a": "x", "seed": 0} and set(state) == {
        "1.weight",
        "1.bias",
        "3.weight",
        "3.bias",
    }


def test_checkpoint_saved_under_any_name_loads_back(tmp_path: Path):
    """save_checkpoint writes safetensors whatever the name; the reader used to pick the format from the
    suffix, so ``--out pruned.pt`` gave a file no rmtlib command could load (torch.load failed on it)."""
    model = _net()
    replace_module(model, "2", LowRankLinear.from_linear(model[2], 5))
    x = torch.randn(3, 1, 8, 8)
    for name in ("pruned.pt", "pruned.bin", "pruned"):
        path = save_checkpoint(model, tmp_path / name, {"method": "svd"})
        fresh, meta = load_checkpoint(path, _net())
        assert isinstance(fresh[2], LowRankLinear) and fresh[2].rank == 5, name
        assert torch.equal(fresh(x), model(x)) and meta["method"] == "svd", name
    torch.save(_net().state_dict(), tmp_path / "plain.pt")  # torch files are still read as torch files
    assert read_checkpoint(tmp_path / "plain.pt")[1] == {}
