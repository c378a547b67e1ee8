"""`rmtlib train` and `rmtlib eval`: a tiny run writes a checkpoint + card that eval reproduces; bad input exits 2."""

import json

import pytest
import torch

from rmtlib.cli.main import main
from rmtlib.train.data import sha256_file


def test_train_then_eval_roundtrip(tmp_path, capsys):
    ckpt, card = tmp_path / "fc.safetensors", tmp_path / "fc.json"
    rc = main(
        [
            "train",
            "fc:784-32-10",
            "--data",
            "mnist",
            "--epochs",
            "3",
            "--train-subset",
            "2000",
            "--schedule",
            "constant",
            "--lr",
            "3e-3",
            "--l1",
            "1e-6",
            "--l2",
            "1e-6",
            "--out",
            str(ckpt),
            "--card",
            str(card),
            "--quiet",
            "--device",
            "cpu",
        ]
    )
    assert rc == 0
    meta = json.loads(card.read_text())
    assert meta["sha256"] == sha256_file(ckpt) and meta["epochs"] == 3 and meta["data"]["train_samples"] == 2000
    assert meta["test_accuracy"] > 0.8  # 2000 samples are enough for a small MLP
    out = tmp_path / "eval.json"
    assert (
        main(
            [
                "eval",
                "fc:784-32-10",
                "--checkpoint",
                str(ckpt),
                "--data",
                "mnist",
                "--quiet",
                "--out",
                str(out),
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    assert json.loads(out.read_text())["accuracy"] == meta["test_accuracy"]
    assert "top-1" in capsys.readouterr().out


def test_bad_input_exits_2(tmp_path, capsys):
    assert main(["eval", "fc:784-32-10", "--checkpoint", str(tmp_path / "missing.safetensors")]) == 2
    assert main(["train", "fc:784-10", "--epochs", "0"]) == 2
    assert main(["train", "fc:784-10", "--data", str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err
    assert "missing.safetensors" in err and "--epochs" in err and "nowhere" in err
    # refused before any training, naming the flag, nothing written
    (tmp_path / "afile").write_text("")
    for extra, flag in (
        (["--batch-size", "0"], "--batch-size"),
        (["--train-subset", "-5"], "--train-subset"),
        (["--lr", "-1"], "--lr"),
        (["--set", "foo=1"], "foo"),
        (["--card", str(tmp_path / "afile" / "card.json")], "--card"),
        (["--out", str(tmp_path / "afile" / "m.safetensors")], "--out"),
    ):
        argv = ["train", "fc:784-16-10", "--data", "synthetic", "--epochs", "1", *extra]
        assert main(argv) == 2, extra
        assert flag in capsys.readouterr().err
    assert main(["eval", "fc:784-16-10", "--data", "synthetic", "--out", str(tmp_path / "afile" / "x.json")]) == 2
    assert main(["analyze", "fc:100-64-10", "--out", str(tmp_path / "t.csv"), "--plots", str(tmp_path / "afile")]) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile"]


def test_eval_of_a_random_model_is_seeded(capsys):
    lines = []
    for _ in range(2):
        assert main(["eval", "fc:784-16-10", "--data", "synthetic", "--quiet"]) == 0
        captured = capsys.readouterr()
        assert "randomly initialised" in captured.err
        lines.append(captured.out)
    assert lines[0] == lines[1]


def test_prune_with_finetune_reports_accuracies_and_keeps_zeros(tmp_path, capsys):
    from safetensors.torch import load_file

    ckpt = tmp_path / "fc.safetensors"
    assert (
        main(
            [
                "train",
                "fc:784-32-10",
                "--epochs",
                "2",
                "--train-subset",
                "2000",
                "--schedule",
                "constant",
                "--lr",
                "3e-3",
                "--out",
                str(ckpt),
                "--quiet",
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    out = tmp_path / "pruned.safetensors"
    rc = main(
        [
            "prune",
            "fc:784-32-10",
            "--checkpoint",
            str(ckpt),
            "--method",
            "magnitude",
            "--sparsity",
            "0.6",
            "--data",
            "mnist",
            "--finetune-epochs",
            "1",
            "--train-subset",
            "1000",
            "--finetune-lr",
            "1e-3",
            "--out",
            str(out),
            "--quiet",
        ]
    )
    assert rc == 0
    text = capsys.readouterr().out
    assert "top-1 dense" in text and "pruned" in text and "after 1 epoch(s) of fine-tuning" in text
    state = load_file(str(out))
    total = sum(v.numel() for v in state.values())
    zeros = sum(int((v == 0).sum()) for k, v in state.items() if k.endswith("weight"))
    assert zeros / total >= 0.6 - 1e-3  # the fine-tuning kept the pruned weights at zero
    assert main(["prune", "fc:784-32-10", "--method", "magnitude", "--sparsity", "0.5", "--finetune-epochs", "1"]) == 2


def test_a_non_default_mnist_vit_stays_loadable_through_train_prune_and_eval(tmp_path, capsys):
    """The metadata records the architecture actually built from --checkpoint (it used to record the
    default depth 6, so the next step could not load the file)."""
    from rmtlib.nn.checkpoints import read_checkpoint
    from rmtlib.nn.models import load_mnist_vit

    a, b, p = (str(tmp_path / f"{x}.safetensors") for x in "abp")
    common = ["--data", "synthetic", "--epochs", "1", "--batch-size", "64", "--quiet"]
    assert main(["train", "mnist_vit", "--set", "depth=1", *common, "--out", a]) == 0
    assert main(["train", "mnist_vit", "--checkpoint", a, *common, "--out", b]) == 0
    assert read_checkpoint(b)[1]["metadata"]["config"]["depth"] == 1
    assert (
        main(
            [
                "prune",
                "mnist_vit",
                "--checkpoint",
                b,
                "--method",
                "magnitude",
                "--sparsity",
                "0.3",
                "--out",
                p,
                "--quiet",
            ]
        )
        == 0
    )
    assert read_checkpoint(p)[1]["metadata"]["config"]["depth"] == 1
    assert main(["eval", "mnist_vit", "--checkpoint", p, "--data", "synthetic", "--quiet"]) == 0
    assert len(load_mnist_vit(a).blocks) == 1


def test_a_non_default_fc_net_keeps_its_architecture_through_train_and_prune(tmp_path):
    """train from a checkpoint and prune record the architecture the checkpoint recorded (tanh), not only
    this run's --set (nothing): the files used to come back as ReLU nets, with other outputs."""
    import torch

    from rmtlib.nn.checkpoints import read_checkpoint
    from rmtlib.nn.models import create_model, fc_net

    name, (a, b, p) = "fc:784-16-10", (str(tmp_path / f"{x}.safetensors") for x in "abp")
    common = ["--data", "synthetic", "--epochs", "1", "--batch-size", "64", "--quiet"]
    assert main(["train", name, "--set", "activation=tanh", *common, "--out", a]) == 0
    assert main(["train", name, "--checkpoint", a, *common, "--out", b]) == 0
    assert (
        main(["prune", name, "--checkpoint", b, "--method", "magnitude", "--sparsity", "0.3", "--out", p, "--quiet"])
        == 0
    )
    x = torch.randn(4, 784)
    for path in (b, p):
        expected = fc_net([784, 16, 10], activation="tanh")  # the file's weights in the architecture trained
        expected.load_state_dict(read_checkpoint(path)[0])
        assert torch.equal(create_model(name, checkpoint=path)(x), expected(x)), path


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--lr", "inf"], "--lr must be a finite number > 0"),
        (["--l1", "nan"], "--l1 must be a finite number >= 0"),
        (["--l2", "-1"], "--l2 must be"),
        (["--weight-decay", "-1"], "--weight-decay must be"),
        (["--mp-every", "-1"], "--mp-every must be >= 0"),
        (["--device", "cuda:7" if torch.cuda.is_available() else "cuda"], "device"),
        (["--device", "bogus"], "device"),
        (["--card", "same.safetensors"], "--out and --card name the same file"),
    ],
)
def test_bad_training_settings_exit_2_before_any_work(tmp_path, monkeypatch, capsys, extra, message):
    """These were silently dropped (a NaN or negative penalty), trained to NaN (--lr inf), or failed
    with a traceback after loading the data (--device cuda on a CPU machine)."""
    monkeypatch.chdir(tmp_path)
    try:
        code = main(
            ["train", "fc:784-16-10", "--data", "synthetic", "--epochs", "1", "--out", "same.safetensors", *extra]
        )
    except SystemExit as stop:
        code = int(stop.code)
    assert code == 2 and message in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_eval_of_a_model_that_cannot_take_the_data_exits_2(capsys):
    assert main(["eval", "fc:100-10", "--data", "synthetic", "--quiet"]) == 2  # was a RuntimeError traceback
    assert "cannot take" in capsys.readouterr().err


def test_training_that_diverges_exits_2_and_writes_nothing(tmp_path, monkeypatch, capsys):
    """--l1 1e308 passes the range check but makes the penalty infinite: this trained to NaN weights and
    saved them; now training stops at the first loss check and no checkpoint is written."""
    monkeypatch.chdir(tmp_path)
    code = main(
        [
            "train",
            "fc:784-16-10",
            "--data",
            "synthetic",
            "--epochs",
            "1",
            "--l1",
            "1e308",
            "--quiet",
            "--out",
            "m.safetensors",
        ]
    )
    assert code == 2 and "lower the learning rate or the penalty" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []
