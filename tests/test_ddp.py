"""Evaluation and fine-tuning under torch.distributed (2 gloo processes on the CPU) match one process."""

import json
import os
import socket

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from rmtlib.nn.models import fc_net
from rmtlib.train.data import make_loader, synthetic_classification
from rmtlib.train.loops import evaluate, finetune


def _model():
    torch.manual_seed(0)
    net = fc_net([10, 16, 3])
    with torch.no_grad():
        net[1].weight[:, :5] = 0.0
    return net


def _dataset():
    return synthetic_classification(301, 10, 3, seed=0, separation=1.5)  # odd size: uneven shards


def _worker(rank, world, port, out_dir):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        net = _model()
        result = evaluate(net, make_loader(_dataset(), 64), "cpu")
        finetune(net, make_loader(_dataset(), 32, shuffle=True, seed=0), 1, lr=1e-2, device="cpu", progress=False)
        flat = torch.cat([p.detach().flatten() for p in net.parameters()])
        gathered = [torch.zeros_like(flat) for _ in range(world)]
        dist.all_gather(gathered, flat)
        with open(os.path.join(out_dir, f"rank{rank}.json"), "w") as fh:
            json.dump(
                {
                    "eval": result,
                    "same_params": all(torch.equal(g, gathered[0]) for g in gathered),
                    "zeros_kept": bool(torch.all(net[1].weight[:, :5] == 0)),
                    "changed": not torch.equal(flat, torch.cat([p.detach().flatten() for p in _model().parameters()])),
                },
                fh,
            )
    finally:
        dist.destroy_process_group()


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_ddp_eval_equals_single_process_and_finetune_syncs(tmp_path):
    single = evaluate(_model(), make_loader(_dataset(), 64), "cpu")
    mp.spawn(_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    for rank in range(2):
        res = json.loads((tmp_path / f"rank{rank}.json").read_text())
        assert res["eval"]["n"] == 301
        assert res["eval"]["accuracy"] == single["accuracy"]
        assert abs(res["eval"]["loss"] - single["loss"]) < 1e-6  # float32 sums over other batches
        assert res["same_params"] and res["zeros_kept"] and res["changed"]


def _sweep_worker(rank, world, port, out_dir, argv):
    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        RANK=str(rank),
        WORLD_SIZE=str(world),
        LOCAL_RANK=str(rank),
        HF_HUB_OFFLINE="1",
    )
    torch.set_num_threads(1)
    from rmtlib.cli.main import main
    from rmtlib.train.distributed import sync_from_rank0

    try:
        code = main(argv)
        # sync_from_rank0 makes differently initialised copies equal to rank 0's
        torch.manual_seed(100 + rank)
        net = fc_net([10, 16, 3])
        sync_from_rank0(net)
        flat = torch.cat([p.detach().flatten() for p in net.parameters()])
        gathered = [torch.zeros_like(flat) for _ in range(world)]
        dist.all_gather(gathered, flat)
        torch.manual_seed(100)
        rank0 = torch.cat([p.detach().flatten() for p in fc_net([10, 16, 3]).parameters()])
        with open(os.path.join(out_dir, f"sweep{rank}.json"), "w") as fh:
            json.dump({"code": code, "same": all(torch.equal(g, rank0) for g in gathered)}, fh)
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def test_sweep_under_torch_distributed_equals_one_process(tmp_path):
    """`rmtlib sweep` in 2 gloo processes: the same table as one process (sharded top-1), written once;
    DDP fine-tuning keeps the zeros (the sweep checks it on every rank)."""
    import pandas as pd

    from rmtlib.cli.main import main
    from rmtlib.nn.checkpoints import save_checkpoint

    torch.manual_seed(3)
    save_checkpoint(fc_net([784, 48, 10]), tmp_path / "in.safetensors")
    argv = [
        "sweep",
        "fc:784-48-10",
        "--checkpoint",
        str(tmp_path / "in.safetensors"),
        "--data",
        "synthetic",
        "--methods",
        "magnitude,svd",
        "--levels",
        "0.3,0.6",
        "--eval-batch-size",
        "50",
        "--finetune-steps",
        "2",
        "--batch-size",
        "32",
        "--quiet",
    ]
    assert main([*argv, "--out", str(tmp_path / "one.csv")]) == 0
    (tmp_path / "ddp").mkdir()
    mp.spawn(
        _sweep_worker,
        args=(2, _free_port(), str(tmp_path / "ddp"), [*argv, "--out", str(tmp_path / "ddp" / "two.csv")]),
        nprocs=2,
        join=True,
    )
    for rank in range(2):
        res = json.loads((tmp_path / "ddp" / f"sweep{rank}.json").read_text())
        assert res == {"code": 0, "same": True}
    # fine-tuning is data-parallel (2 x 32 samples a step), so only its top-1 may differ
    differ = ["prune_s", "finetune_s", "top1_finetuned"]
    one, two = pd.read_csv(tmp_path / "one.csv"), pd.read_csv(tmp_path / "ddp" / "two.csv")
    pd.testing.assert_frame_equal(one.drop(columns=differ), two.drop(columns=differ))
    assert two.loc[two.method != "dense", "top1_finetuned"].between(0, 100).all()
    # only rank 0 writes: the table and its settings record
    assert sorted(p.name for p in (tmp_path / "ddp").iterdir()) == [
        "sweep0.json",
        "sweep1.json",
        "two.csv",
        "two.csv.settings.json",
    ]


def _prune_worker(rank, world, port, out_dir, argv):
    import contextlib

    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        RANK=str(rank),
        WORLD_SIZE=str(world),
        LOCAL_RANK=str(rank),
        HF_HUB_OFFLINE="1",
    )
    torch.set_num_threads(1)
    from rmtlib.cli.main import main

    try:
        with open(os.path.join(out_dir, f"stdout{rank}.txt"), "w") as fh, contextlib.redirect_stdout(fh):
            code = main(argv)
        with open(os.path.join(out_dir, f"code{rank}.json"), "w") as fh:
            json.dump({"code": code}, fh)
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def test_prune_under_torch_distributed_prunes_like_one_process_and_writes_once(tmp_path, capsys):
    """`rmtlib prune --finetune-epochs 1` in 2 gloo processes: the same weights removed and the same
    pruned top-1 as one process, the zeros kept through DDP fine-tuning, one printout, one file."""
    from rmtlib.cli.main import main
    from rmtlib.nn.checkpoints import read_checkpoint, save_checkpoint

    torch.manual_seed(4)
    save_checkpoint(fc_net([784, 48, 10]), tmp_path / "in.safetensors")
    argv = [
        "prune",
        "fc:784-48-10",
        "--checkpoint",
        str(tmp_path / "in.safetensors"),
        "--method",
        "magnitude",
        "--sparsity",
        "0.5",
        "--data",
        "synthetic",
        "--finetune-epochs",
        "1",
        "--batch-size",
        "32",
        "--quiet",
    ]
    assert main([*argv, "--out", str(tmp_path / "one.safetensors")]) == 0
    one_out = capsys.readouterr().out
    ddp = tmp_path / "ddp"
    ddp.mkdir()
    mp.spawn(
        _prune_worker,
        args=(
            2,
            _free_port(),
            str(ddp),
            [*argv, "--out", str(ddp / "two.safetensors"), "--report", str(ddp / "layers.csv")],
        ),
        nprocs=2,
        join=True,
    )
    assert [json.loads((ddp / f"code{r}.json").read_text())["code"] for r in range(2)] == [0, 0]
    assert (ddp / "stdout1.txt").read_text() == ""  # rank 1 prints nothing
    two_out = (ddp / "stdout0.txt").read_text()
    assert sorted(p.name for p in ddp.iterdir()) == [
        "code0.json",
        "code1.json",
        "layers.csv",
        "stdout0.txt",
        "stdout1.txt",
        "two.safetensors",
    ]

    def accuracy_line(text):
        return next(line for line in text.splitlines() if line.startswith("accuracy on"))

    # top-1 of the dense and the pruned model are measured on shards and summed: equal to one process's
    assert accuracy_line(one_out).split(", after")[0] == accuracy_line(two_out).split(", after")[0]
    one, two = read_checkpoint(tmp_path / "one.safetensors")[0], read_checkpoint(ddp / "two.safetensors")[0]
    assert one.keys() == two.keys()
    for name in one:
        if name.endswith("weight"):
            assert torch.equal(one[name] == 0, two[name] == 0), name  # same mask, kept through fine-tuning
    assert any(not torch.equal(one[k], two[k]) for k in one)  # fine-tuning differed (2 x 32 samples a step)


def _val_worker(rank, world, port, out_dir):
    import datetime

    from torch.utils.data import TensorDataset

    from rmtlib.train.loops import train

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world, timeout=datetime.timedelta(seconds=20))
    try:
        torch.manual_seed(0)
        net = nn.Sequential(nn.Linear(10, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 3))  # has buffers
        ds = _dataset()
        val = TensorDataset(ds.tensors[0][:1], ds.tensors[1][:1])  # one sample: rank 1's shard is empty
        history = train(
            net, make_loader(ds, 16, shuffle=True), 1, val_loader=make_loader(val, 8), device="cpu", progress=False
        )
        with open(os.path.join(out_dir, f"val{rank}.json"), "w") as fh:
            json.dump({"val_accuracy": history[-1]["val_accuracy"]}, fh)
    finally:
        dist.destroy_process_group()


def test_validation_with_an_empty_shard_does_not_hang(tmp_path):
    """Validation used to run through the DDP wrapper, whose buffer broadcast waited for a process that
    had no validation batch (a hang; here a 20 s timeout)."""
    mp.spawn(_val_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    got = [json.loads((tmp_path / f"val{rank}.json").read_text())["val_accuracy"] for rank in range(2)]
    assert got[0] == got[1] and got[0] in (0.0, 1.0)
