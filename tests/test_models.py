"""Model factories: FC parameter counts, the MNIST ViT, create_model, offline hub errors, the committed ViT."""

import json
import time

import pytest
import torch

from rmtlib.errors import CheckpointError, InputError
from rmtlib.nn import models
from rmtlib.train.data import load_dataset, make_loader, sha256_file
from rmtlib.train.loops import evaluate


def test_fc_net_param_count_and_shape():
    widths = [784, 300, 100, 10]
    net = models.fc_net(widths)
    hand = 784 * 300 + 300 + 300 * 100 + 100 + 100 * 10 + 10
    assert sum(p.numel() for p in net.parameters()) == hand
    assert net(torch.zeros(2, 1, 28, 28)).shape == (2, 10)
    assert [type(m).__name__ for m in net] == ["Flatten", "Linear", "ReLU", "Linear", "ReLU", "Linear"]
    with pytest.raises(InputError):
        models.fc_net([10])
    with pytest.raises(InputError, match="activation"):
        models.fc_net([3, 2], activation="swish")


def test_create_model_names():
    fc = models.create_model("fc:20-7-3")
    assert [m.out_features for m in fc if isinstance(m, torch.nn.Linear)] == [7, 3]
    vit = models.create_model("mnist_vit", depth=1)
    assert vit(torch.zeros(1, 1, 28, 28)).shape == (1, 10)
    assert vit.blocks[0].attn.qkv.weight.shape == (576, 192)
    assert models.create_model("resnet18", num_classes=3).eval()(torch.zeros(1, 3, 32, 32)).shape == (1, 3)
    with pytest.raises(InputError, match="unknown model"):
        models.create_model("no_such_net_xyz")
    with pytest.raises(InputError, match="fc:784"):
        models.create_model("fc:abc")


def test_pretrained_offline_fails_fast_with_checkpoint_hint(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    import huggingface_hub.constants as c

    monkeypatch.setattr(c, "HF_HUB_OFFLINE", True)
    start = time.perf_counter()
    with pytest.raises(CheckpointError, match="--checkpoint"):
        models.create_model("resnet18", pretrained=True)
    assert time.perf_counter() - start < 20


def test_checkpoint_roundtrip(tmp_path):
    torch.manual_seed(0)
    net = models.fc_net([6, 5, 2])
    path = tmp_path / "w.pt"
    torch.save(net.state_dict(), path)
    again = models.create_model("fc:6-5-2", checkpoint=path)
    x = torch.randn(3, 6)
    assert torch.equal(net(x), again(x))
    with pytest.raises(CheckpointError):
        models.create_model("fc:6-4-2", checkpoint=path)
    with pytest.raises(CheckpointError, match="no such checkpoint file"):
        models.create_model("fc:6-5-2", checkpoint=tmp_path / "missing.pt")


@pytest.mark.slow  # ~12 s on an idle 2-core CPU (10k test images)
def test_committed_mnist_vit_card_and_accuracy():
    card = json.loads(models.MNIST_VIT_CARD.read_text())
    assert card["sha256"] == sha256_file(models.MNIST_VIT_CHECKPOINT)
    assert models.MNIST_VIT_CHECKPOINT.stat().st_size < 25 * 2**20
    assert card["test_accuracy"] >= 0.98 and card["seed"] == 0 and card["config"]["embed_dim"] >= 192
    model = models.load_mnist_vit()
    assert not model.training
    torch.set_num_threads(max(1, torch.get_num_threads()))
    result = evaluate(model, make_loader(load_dataset("mnist", "test"), 1000), "cpu")
    assert result["n"] == 10000
    assert result["accuracy"] >= 0.98
    assert abs(result["accuracy"] - card["test_accuracy"]) < 0.002  # GPU bf16 vs CPU fp32


def test_recorded_architecture_comes_back(tmp_path):
    """A checkpoint records the keywords its model was built with (``model_kwargs``, or an mnist_vit's
    ``config``); keywords that keep every shape (an activation) used to be dropped on loading, so the model
    came back with the same weights but other outputs."""
    from rmtlib.nn.checkpoints import save_checkpoint

    torch.manual_seed(0)
    fc = models.fc_net([6, 5, 2], activation="tanh")
    path = save_checkpoint(
        fc, tmp_path / "fc.safetensors", {"model": "fc:6-5-2", "model_kwargs": {"activation": "tanh"}}
    )
    x = torch.randn(4, 6)
    assert torch.equal(models.create_model("fc:6-5-2", checkpoint=path)(x), fc(x))
    assert isinstance(
        models.create_model("fc:6-5-2", checkpoint=path, activation="gelu")[2], torch.nn.GELU
    )  # caller on top
    # a record made for another model name is not applied
    other = save_checkpoint(
        fc, tmp_path / "other.safetensors", {"model": "fc:6-9-2", "model_kwargs": {"activation": "tanh"}}
    )
    assert isinstance(models.create_model("fc:6-5-2", checkpoint=other)[2], torch.nn.ReLU)
    change = {"depth": 1, "act_layer": "gelu_tanh"}
    vit = models.mnist_vit(**change).eval()
    path = save_checkpoint(
        vit, tmp_path / "vit.safetensors", {"model": "mnist_vit", "config": models.mnist_vit_config(None, change)}
    )
    images = torch.randn(2, 1, 28, 28)
    assert torch.equal(models.create_model("mnist_vit", checkpoint=path).eval()(images), vit(images))
    assert torch.equal(models.load_mnist_vit(path)(images), vit(images))


def test_pretrained_mnist_vit_with_keywords_keeps_the_committed_weights():
    """``pretrained=True`` with a keyword (e.g. a drop-path rate for fine-tuning) used to return a randomly
    initialised model silently; now the committed weights are loaded, and a change of shape is refused."""
    committed = models.load_mnist_vit().state_dict()
    model = models.create_model("mnist_vit", pretrained=True, drop_path_rate=0.1)
    assert model.blocks[-1].drop_path1.drop_prob == pytest.approx(0.1)  # the keyword took effect
    state = model.state_dict()
    assert state.keys() == committed.keys() and all(torch.equal(state[k], committed[k]) for k in state)
    with pytest.raises(CheckpointError, match="unexpected keys: blocks.4"):
        models.create_model("mnist_vit", pretrained=True, depth=4)
