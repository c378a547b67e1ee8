"""Per-sample evaluation: logits in loader order, CE and KL against torch, the certificate's guarantee."""

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from rmtlib.errors import InputError
from rmtlib.nn.models import fc_net
from rmtlib.pruning import prune
from rmtlib.train.data import make_loader, synthetic_classification
from rmtlib.train.evaluation import Predictions, predict, sample_metrics
from rmtlib.train.loops import evaluate, train


@pytest.fixture(scope="module")
def setup():
    torch.manual_seed(0)
    data = synthetic_classification(n=512, dim=32, classes=5, seed=0, separation=2.5)
    model = fc_net([32, 64, 5])
    train(model, make_loader(data, 64, shuffle=True), 2, lr=3e-3, progress=False)
    return model.eval(), make_loader(data, 100)


def test_predictions_agree_with_evaluate_and_the_model(setup):
    model, loader = setup
    pred = predict(model, loader)
    x, y = loader.dataset.tensors
    assert len(pred) == 512 and np.array_equal(pred.labels, y.numpy())
    np.testing.assert_allclose(pred.logits, model(x).detach().numpy(), rtol=1e-5, atol=1e-5)
    metrics = sample_metrics(pred, pred)
    full = evaluate(model, loader)
    assert metrics["correct"].mean() == pytest.approx(full["accuracy"])
    assert metrics["ce"].mean() == pytest.approx(full["loss"], rel=1e-5)
    assert len(predict(model, loader, max_batches=2)) == 200


def test_dense_model_has_zero_kl_and_every_sample_certified(setup):
    model, loader = setup
    pred = predict(model, loader)
    metrics = sample_metrics(pred, pred)
    assert np.all(metrics["kl_to_dense"] == 0.0)
    # a sample is certified against itself unless its top two logits tie
    margin = np.diff(np.sort(pred.logits, axis=1)[:, -2:], axis=1)[:, 0]
    assert np.array_equal(metrics["certified"], margin > 0)


def test_ce_and_kl_match_torch_for_a_pruned_model(setup):
    model, loader = setup
    pruned = prune(model, "magnitude", sparsity=0.6, fit=False).model
    dense, pred = predict(model, loader), predict(pruned, loader)
    metrics = sample_metrics(pred, dense)
    z, zd = torch.from_numpy(pred.logits).double(), torch.from_numpy(dense.logits).double()
    y = torch.from_numpy(pred.labels)
    np.testing.assert_allclose(metrics["ce"], F.cross_entropy(z, y, reduction="none").numpy(), rtol=1e-10)
    # KL(p_dense || p_pruned): kl_div takes the log-probabilities of the second argument first
    kl = F.kl_div(F.log_softmax(z, 1), F.log_softmax(zd, 1), log_target=True, reduction="none").sum(1)
    np.testing.assert_allclose(metrics["kl_to_dense"], kl.numpy(), rtol=1e-8, atol=1e-12)
    assert metrics["kl_to_dense"].mean() > 0
    assert np.array_equal(metrics["correct"], z.argmax(1).numpy() == pred.labels)


@pytest.mark.parametrize("scale", [0.05, 0.5, 2.0])
def test_a_certified_sample_never_changes_its_label(scale):
    rng = np.random.default_rng(int(scale * 100))
    dense = Predictions(rng.normal(size=(4000, 7)).astype(np.float32), rng.integers(0, 7, 4000))
    noisy = dense.logits + scale * rng.normal(size=dense.logits.shape).astype(np.float32)
    metrics = sample_metrics(Predictions(noisy, dense.labels), dense)
    flipped = noisy.argmax(1) != dense.logits.argmax(1)
    assert flipped.any() and metrics["certified"].any()  # both kinds occur, so the check is not empty
    assert not np.any(metrics["certified"] & flipped)
    # the bound is the sup-norm shift: doubling the margin's requirement by hand gives the same flags
    top2 = np.sort(dense.logits.astype(np.float64), 1)[:, -2:]
    shift = np.abs(noisy.astype(np.float64) - dense.logits).max(1)
    assert np.array_equal(metrics["certified"], top2[:, 1] - top2[:, 0] > 2 * shift)


def test_mismatched_samples_are_refused():
    a = Predictions(np.zeros((3, 4), np.float32), np.array([0, 1, 2]))
    with pytest.raises(InputError, match="same samples"):
        sample_metrics(a, Predictions(np.zeros((3, 4), np.float32), np.array([0, 1, 3])))
    with pytest.raises(InputError, match="same samples"):
        sample_metrics(a, Predictions(np.zeros((2, 4), np.float32), np.array([0, 1])))
