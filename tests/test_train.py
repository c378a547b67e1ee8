"""Training loops: loss goes down on a separable set, seeding, schedules, hooks, masks, fine-tuning."""

import pytest
import torch
from torch import nn

from rmtlib.errors import InputError
from rmtlib.nn.models import fc_net
from rmtlib.train.data import make_loader, synthetic_classification
from rmtlib.train.loops import evaluate, finetune, lr_schedule, train


def _setup(seed=0):
    torch.manual_seed(seed)
    ds = synthetic_classification(300, 10, 3, seed=0)
    return fc_net([10, 32, 3]), make_loader(ds, 32, shuffle=True, seed=0), make_loader(ds, 100)


def test_training_lowers_loss_and_separates():
    model, loader, eval_loader = _setup()
    before = evaluate(model, eval_loader)
    history = train(model, loader, 5, lr=1e-2, schedule="constant", progress=False)
    after = evaluate(model, eval_loader)
    assert len(history) == 5 and history[-1]["train_loss"] < history[0]["train_loss"]
    assert after["loss"] < 0.5 * before["loss"] and after["accuracy"] > 0.95


def test_evaluate_matches_hand_computation():
    model, _, eval_loader = _setup()
    x, y = eval_loader.dataset.tensors
    with torch.no_grad():
        logits = model(x)
    result = evaluate(model, eval_loader)
    assert result["n"] == 300
    assert result["accuracy"] == pytest.approx((logits.argmax(1) == y).float().mean().item())
    assert result["loss"] == pytest.approx(nn.functional.cross_entropy(logits, y).item(), rel=1e-5)


def test_training_is_seeded():
    runs = []
    for _ in range(2):
        model, loader, _ = _setup()
        train(model, loader, 2, lr=1e-2, progress=False, seed=3)
        runs.append(torch.cat([p.detach().flatten() for p in model.parameters()]))
    assert torch.equal(runs[0], runs[1])


def _flat(model):
    return torch.cat([p.detach().flatten() for p in model.parameters()])


def test_same_seed_same_batches_on_a_reused_loader_and_with_workers():
    """train(seed=) resets the loader's shuffle (a loader used before gives the same batches), and loader
    worker processes change nothing (a progress bar used to open, and discard, an extra iterator)."""
    model, loader, _ = _setup()
    runs = []
    for _ in range(2):  # the same loader twice
        net = fc_net([10, 32, 3])
        net.load_state_dict(model.state_dict())
        train(net, loader, 2, lr=1e-2, progress=True, seed=3)
        runs.append(_flat(net))
    assert torch.equal(runs[0], runs[1])
    ds = synthetic_classification(300, 10, 3, seed=0)
    net = fc_net([10, 32, 3])
    net.load_state_dict(model.state_dict())
    train(net, make_loader(ds, 32, shuffle=True, seed=0, num_workers=2), 2, lr=1e-2, progress=True, seed=3)
    assert torch.equal(_flat(net), runs[0])


def test_a_loader_without_a_full_batch_is_refused():
    model, _, _ = _setup()
    ds = synthetic_classification(20, 10, 3, seed=0)
    with pytest.raises(InputError, match="no batch"):
        train(model, make_loader(ds, 32, shuffle=True, drop_last=True), 1, progress=False)


def test_lr_schedules():
    cos = lr_schedule("cosine", 100)
    assert cos(0) == 1.0 and cos(50) == pytest.approx(0.5) and cos(100) == pytest.approx(0.0)
    one = lr_schedule("onecycle", 100, warmup=0.1)
    assert one(0) == pytest.approx(0.1) and one(9) == pytest.approx(1.0) and one(99) < 0.01
    step = lr_schedule("step", 1000, steps_per_epoch=10, step_epochs=4, gamma=0.96)
    assert step(39) == 1.0 and step(40) == pytest.approx(0.96) and step(80) == pytest.approx(0.96**2)
    with pytest.raises(InputError):
        lr_schedule("warmup-magic", 10)


def test_hooks_see_each_epoch_and_add_to_records():
    model, loader, _ = _setup()
    seen = []

    def hook(epoch, m, record):
        seen.append((epoch, record["train_loss"]))
        return {"norm": float(sum(p.detach().norm() ** 2 for p in m.parameters()) ** 0.5)}

    history = train(model, loader, 3, lr=1e-2, hooks=[hook], progress=False, val_loader=loader)
    assert [e for e, _ in seen] == [1, 2, 3]
    assert all("norm" in r and "val_accuracy" in r for r in history)


def test_hook_replacing_a_layer_rebuilds_optimizer():
    model, loader, _ = _setup()

    def swap(epoch, m, record):
        if epoch == 1:
            old = m[1]
            new = nn.Linear(old.in_features, old.out_features)
            new.load_state_dict(old.state_dict())
            m[1] = new
        return None

    train(model, loader, 2, lr=1e-2, hooks=[swap], progress=False)
    # the new layer was trained in epoch 2 (it would be frozen if the old optimizer were kept)
    assert model[1].weight.grad is not None


def test_rebuilt_optimizer_keeps_the_state_of_the_layers_that_remain():
    """After a hook replaces a layer, the other parameters keep their momentum: a fresh optimizer used
    to reset it everywhere, so an MP-split row was also slowed down in every layer it did not split."""
    model, loader, _ = _setup()
    made: list[torch.optim.Optimizer] = []

    def factory(params):
        made.append(torch.optim.SGD(params, lr=1e-2, momentum=0.9))
        return made[-1]

    def swap(epoch, m, record):
        if epoch == 1:
            new = nn.Linear(m[1].in_features, m[1].out_features)
            new.load_state_dict(m[1].state_dict())
            m[1] = new

    train(model, loader, 2, optimizer=factory, hooks=[swap], progress=False)
    assert len(made) == 2
    new_params = set(map(id, model[1].parameters()))
    kept = [p for p in model.parameters() if id(p) not in new_params]
    assert kept and all(made[1].state[p] is made[0].state[p] for p in kept)  # the same buffers, carried on
    assert all("momentum_buffer" in made[1].state[p] and p not in made[0].state for p in model[1].parameters())


def test_masked_training_keeps_zeros_exactly():
    model, loader, _ = _setup()
    with torch.no_grad():
        model[1].weight[:, ::2] = 0.0
    zeros = model[1].weight == 0
    finetune(model, loader, 2, lr=1e-2, optimizer="sgd", weight_decay=1e-3, progress=False)
    assert torch.all(model[1].weight[zeros] == 0)
    assert torch.all(model[1].weight[~zeros] != 0)


def test_a_diverging_penalty_stops_training_with_a_named_error():
    """An L1 coefficient of 1e308 makes the penalty infinite at the first step; training on used to
    leave NaN weights behind. The error names the epoch and the remedy."""
    from rmtlib.errors import DivergenceError
    from rmtlib.train.regularize import L1

    model, loader, _ = _setup()
    with pytest.raises(DivergenceError, match=r"epoch 1, batch 0.*lower the learning rate or the penalty"):
        train(model, loader, 1, lr=1e-2, penalty=L1(1e308), progress=False)


def test_weights_that_turn_nan_between_loss_checks_stop_the_epoch():
    """The loss is checked every DIVERGENCE_CHECK_EVERY steps; a weight that turns NaN in between is caught
    at the end of the epoch, before the caller could save it."""
    from rmtlib.errors import DivergenceError

    class PoisonAfterFirstStep(torch.optim.SGD):
        def step(self, closure=None):
            super().step(closure)
            with torch.no_grad():
                self.param_groups[0]["params"][0][0, 0] = float("nan")

    model, loader, _ = _setup()
    with pytest.raises(DivergenceError, match=r"parameter '1.weight' is not finite after epoch 1"):
        train(
            model,
            loader,
            1,
            optimizer=lambda params: PoisonAfterFirstStep(params, lr=1e-2),
            schedule="constant",
            progress=False,
            max_steps_per_epoch=3,
        )


def test_a_step_size_that_overflows_is_a_divergence_not_a_traceback():
    """--lr 3.4e38 passed the CLI's finite check; Adam's first step (lr / (1 - beta1)) overflowed float32
    inside torch with a RuntimeError traceback."""
    from rmtlib.errors import DivergenceError

    model, loader, _ = _setup()
    with pytest.raises(DivergenceError, match="optimizer step overflowed at epoch 1, batch 0.*lower the learning"):
        train(model, loader, 1, lr=3.4e38, schedule="constant", progress=False)
