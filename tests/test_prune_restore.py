"""SER (prune-restore) and the cumulative schedules: exact counts, restores only from the reservoir,
kept weights frozen while the reservoir trains, bad input refused before any change."""

from __future__ import annotations

import numpy as np
import pytest
import timm
import torch
from torch import nn

from rmtlib.errors import InputError
from rmtlib.experiments.prune_restore import (
    per_sample_correct,
    prune_restore,
    prune_schedule,
    schedule_levels,
    select_restore,
)
from rmtlib.nn.count import count_params
from rmtlib.nn.models import mnist_vit
from rmtlib.pruning import prune
from rmtlib.pruning.common import elementwise_units, fit_units
from rmtlib.pruning.seb import seb_layer_weights
from rmtlib.train.data import image_folder, make_loader, synthetic_images
from rmtlib.train.regularize import layer_weights

FAST = {"reservoir_steps": 2, "finetune_steps": 0, "batch_size": 16}


def _vit() -> nn.Module:
    """A small MNIST ViT whose zero-initialised biases and tokens are set nonzero, as in a trained model:
    fine-tuning would move them off zero and blur the counts."""
    torch.manual_seed(0)
    model = mnist_vit(depth=2)
    with torch.no_grad():
        for p in model.parameters():
            p[p == 0] = 0.01
    return model


def _data(n: int = 64, seed: int = 0):
    return synthetic_images(n, 10, seed=seed)


def _weights(model: nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in model.named_parameters()}


def _layer_nonzeros(model: nn.Module) -> int:
    return sum(int(torch.count_nonzero(w)) for _, _, w in layer_weights(model))


def test_select_restore_takes_the_largest_weighted_deltas_from_the_reservoir_only():
    deltas = [torch.tensor([[0.9, 0.5], [0.2, 0.12]]), torch.tensor([0.3, 0.25, 0.05])]
    reservoir = [torch.tensor([[False, True], [True, True]]), torch.tensor([True, True, False])]
    # with w = (1, 3): scores 0.5, 0.2, 0.12 | 0.9, 0.75 -> the three largest are 0.9, 0.75, 0.5
    got = select_restore(deltas, reservoir, [1.0, 3.0], 3, "w")
    assert torch.equal(got[0], torch.tensor([[False, True], [False, False]]))
    assert torch.equal(got[1], torch.tensor([True, True, False]))
    # with 1 / w: 0.5, 0.2, 0.12 | 0.1, 0.083 -> all three of layer 0
    got = select_restore(deltas, reservoir, [1.0, 3.0], 3, "inverse")
    assert torch.equal(got[0], torch.tensor([[False, True], [True, True]]))
    assert not got[1].any()
    # the entry outside the reservoir (0.9 in layer 0) is never taken, even when all are restored
    got = select_restore(deltas, reservoir, [1.0, 1.0], 5)
    assert torch.equal(got[0], reservoir[0]) and torch.equal(got[1], reservoir[1])
    with pytest.raises(InputError, match="restore count 6"):
        select_restore(deltas, reservoir, [1.0, 1.0], 6)


def test_ser_restores_only_reservoir_entries_to_the_exact_target():
    """b = 0: the over-pruned set is global magnitude at s + over (an independent computation). Without
    fine-tuning, kept weights and every other parameter are unchanged, the restored entries come from
    the over-pruned ones and hold their trained (nonzero) values, and the count is exactly the target."""
    model = _vit()
    s, over = 0.4, 0.05
    pruned, record = prune_restore(model, s, _data(), over=over, seb_options={"b": 0.0}, **FAST)
    overpruned = prune(model, "magnitude", sparsity=s + over, scope="global").model
    dense = count_params(model)["dense"]
    target = int(np.floor((1 - s) * dense + 1e-9))
    assert record["nonzero_mask"] == target == count_params(pruned)["nonzero"]
    assert record["restored"] == target - int(np.floor((1 - s - over) * dense + 1e-9))
    assert record["reservoir"] == count_params(model)["nonzero"] - (target - record["restored"])
    before, cut, after = _weights(model), _weights(overpruned), _weights(pruned)
    restored_total = 0
    for name in before:
        kept = cut[name] != 0
        assert torch.equal(after[name][kept], before[name][kept]), name  # frozen while the reservoir trained
        new = (after[name] != 0) & ~kept
        assert not new.any() or (before[name][new] != 0).all(), name  # restored from the reservoir only
        restored_total += int(new.sum())
    assert restored_total == record["restored"]
    assert record["reached_sparsity"] == pytest.approx(1 - target / dense)


def test_ser_takes_its_layer_weights_from_given_fits():
    """The schedule passes the dense model's fits: SEB weights then come from them, not from the
    current (already pruned) weights."""
    model = _vit()
    units = elementwise_units(model, None, None)
    fit_units(units)
    expect = seb_layer_weights(units, 0.3)["weights"]
    sparse = prune(model, "magnitude", sparsity=0.2, scope="global").model
    _, given = prune_restore(sparse, 0.3, _data(), fits={u.name: u.fit for u in units}, **FAST)
    np.testing.assert_allclose([given["seb_weights"][u.name] for u in units], expect, rtol=1e-4)
    _, own = prune_restore(sparse, 0.3, _data(), **FAST)
    assert not np.allclose([own["seb_weights"][u.name] for u in units], expect, rtol=1e-4)


def test_ser_with_finetuning_keeps_its_mask():
    model = _vit()
    pruned, record = prune_restore(model, 0.3, _data(), reservoir_steps=2, finetune_steps=3, batch_size=16, seed=1)
    # fine-tuning moves the zero-initialised biases of this random model, so count the pruned weights only
    fixed = count_params(model)["nonzero"] - _layer_nonzeros(model)
    assert _layer_nonzeros(pruned) == record["target_nonzero"] - fixed
    assert record["seb_signal"] == "edge"


@pytest.mark.parametrize(
    "kwargs, word",
    [
        ({"train_data": None}, "train_data"),
        ({"over": 0.0}, "over"),
        ({"over": -0.02}, "over"),
        ({"over": 0.7}, "over"),
        ({"restore_weight": "sqrt"}, "restore_weight"),
        ({"reservoir_steps": 0}, "reservoir_steps"),
        ({"seb_options": {"signal": "x"}}, "signal"),
        ({"sparsity": 0.0}, "sparsity"),
    ],
)
def test_ser_bad_input_is_refused_before_any_change(kwargs: dict, word: str):
    model = _vit()
    before = _weights(model)
    args = {"sparsity": 0.4, "train_data": _data(16), **kwargs}
    with pytest.raises(InputError, match=word):
        prune_restore(model, args.pop("sparsity"), args.pop("train_data"), inplace=True, **args)
    for name, value in _weights(model).items():
        assert torch.equal(value, before[name])


def test_ser_refuses_a_model_already_past_the_target():
    model = prune(_vit(), "magnitude", sparsity=0.5).model
    with pytest.raises(InputError, match="already at sparsity"):
        prune_restore(model, 0.4, _data(16), **FAST)


def test_schedule_levels_reach_the_target_or_say_why():
    assert schedule_levels(0.8) == pytest.approx([0.05 * i for i in range(1, 17)])
    assert schedule_levels(0.3, 0.1) == pytest.approx([0.1, 0.2, 0.3])
    with pytest.raises(InputError, match="steps of 0.05 do not reach the target sparsity 0.82"):
        schedule_levels(0.82)
    with pytest.raises(InputError, match="levels end at 0.6"):
        schedule_levels(0.7, levels=[0.3, 0.6])
    with pytest.raises(InputError, match="rise strictly"):
        schedule_levels(0.5, levels=[0.3, 0.3, 0.5])


def test_hybrid_schedule_switches_to_ser_and_meets_each_level():
    model = _vit()
    eval_data = _data(40, seed=3)
    seen = []
    pruned, table = prune_schedule(
        model,
        0.4,
        _data(),
        step=0.1,
        finetune_steps=2,
        reservoir_steps=2,
        batch_size=16,
        eval_data=eval_data,
        evaluate_at=[0.2, 0.4],
        callback=lambda level, m, rec: seen.append((level, count_params(m)["nonzero"])),
    )
    assert list(table["action"]) == ["magnitude", "magnitude", "ser", "ser"]
    dense = count_params(model)["dense"]
    for level, nonzero in seen:
        assert nonzero <= int(np.floor((1 - level) * dense + 1e-9))
        assert 1 - nonzero / dense < level + 1e-4
    evaluated = table.dropna(subset=["accuracy"])
    assert list(evaluated["level"]) == pytest.approx([0.2, 0.4])
    last = evaluated.iloc[-1]
    independent = per_sample_correct(pruned, make_loader(eval_data, 7))
    assert np.array_equal(last["correct"], independent) and last["accuracy"] == independent.mean()
    assert model is not pruned and count_params(model)["nonzero"] == dense  # the input model is untouched


@pytest.mark.parametrize(
    "strategy, options", [("magnitude", None), ("rmt", {"regularization": "light", "reg_steps": 1})]
)
def test_baseline_schedules_run_under_the_same_budget(strategy: str, options: dict | None):
    model = _vit()
    _, table = prune_schedule(
        model, 0.3, _data(), strategy=strategy, step=0.15, finetune_steps=1, batch_size=16, method_options=options
    )
    assert list(table["action"]) == [strategy, strategy]
    assert table["reached_sparsity"].iloc[-1] == pytest.approx(0.3, abs=1e-4)


@pytest.mark.parametrize(
    "kwargs, word",
    [
        ({"sparsity": 0.82}, "step"),
        ({"levels": [0.2, 0.5]}, "levels"),
        ({"train_data": None}, "train_data"),
        ({"strategy": "svd"}, "strategy"),
        ({"strategy": "magnitude", "method_options": {"scope": "row"}}, "scope"),
        ({"evaluate_at": [0.33]}, "evaluate_at"),
        ({"over": 0.0}, "over"),
    ],
)
def test_schedule_bad_input_is_refused_before_any_change(kwargs: dict, word: str):
    model = _vit()
    before = _weights(model)
    args = {"sparsity": 0.6, "train_data": _data(16), **kwargs}
    with pytest.raises(InputError, match=word):
        prune_schedule(model, args.pop("sparsity"), args.pop("train_data"), inplace=True, finetune_steps=1, **args)
    for name, value in _weights(model).items():
        assert torch.equal(value, before[name])


@pytest.mark.slow  # ~40 s of CPU: MP fit of 74 ViT-B matrices and two 224-px steps
def test_vit_base_on_an_image_folder(tmp_path):
    """A random-init timm ViT-B/16 on a tiny synthetic ImageNet-style folder: one SER step (SEB over-prune,
    reservoir, restore, fine-tune) meets the target count with every layer pruned, patch embedding and head too."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for cls in ("a", "b"):
            (tmp_path / split / cls).mkdir(parents=True)
            for i in range(2):
                image = Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8))
                image.save(tmp_path / split / cls / f"{i}.png")
    torch.manual_seed(0)
    model = timm.create_model("vit_base_patch16_224", num_classes=2)
    with torch.no_grad():
        for p in model.parameters():
            p[p == 0] = 0.01  # zero-initialised biases would move off zero in fine-tuning and blur the count
    dense = count_params(model)["dense"]
    train_set = image_folder(tmp_path / "train", model, train=False)
    pruned, record = prune_restore(
        model, 0.6, train_set, reservoir_steps=1, finetune_steps=1, batch_size=2, inplace=True
    )
    assert record["nonzero_mask"] == int(np.floor(0.4 * dense + 1e-9)) == count_params(pruned)["nonzero"]
    assert len(record["seb_weights"]) == 2 + 4 * 12 and record["seb_signal"] == "edge"
    for name in ("patch_embed.proj", "head", "blocks.0.attn.qkv", "blocks.11.mlp.fc2"):
        weight = dict(pruned.named_modules())[name].weight
        assert 0 < int(torch.count_nonzero(weight)) < weight.numel(), name
    correct = per_sample_correct(pruned, make_loader(image_folder(tmp_path / "val", model), 4))
    assert correct.shape == (4,) and correct.dtype == bool
