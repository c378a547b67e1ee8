"""Sparsity sweeps on a tiny trained FC net: reached sparsity, independent re-evaluation, seeds, masks."""

import copy

import numpy as np
import pandas as pd
import pytest
import torch

from rmtlib.errors import InputError
from rmtlib.experiments.paired import mcnemar, paired_bootstrap
from rmtlib.experiments.paper_numbers import paper_vit_results
from rmtlib.experiments.sweep import SWEEP_COLUMNS, level_table, sweep
from rmtlib.nn.count import count_macs, count_params
from rmtlib.nn.models import fc_net
from rmtlib.plots.sweep import plot_sweep
from rmtlib.pruning import METHODS as REGISTRY
from rmtlib.pruning import prune, register_method
from rmtlib.pruning.calibration import draw_calibration
from rmtlib.pruning.elementwise import layerwise_counts, removal_needed
from rmtlib.train.data import make_loader, synthetic_classification
from rmtlib.train.evaluation import predict, sample_metrics
from rmtlib.train.loops import evaluate, train

METHODS = ["rmt", "rmt_lowrank", "magnitude", "svd", "random"]
TIMING = ["prune_s", "finetune_s"]


@pytest.fixture(scope="module")
def setup():
    torch.manual_seed(0)
    full = synthetic_classification(n=640, dim=48, classes=4, seed=0, separation=3.0)
    data = torch.utils.data.Subset(full, range(384))  # same class centres in train and test
    test = torch.utils.data.Subset(full, range(384, 640))
    model = fc_net([48, 96, 96, 4])
    train(model, make_loader(data, 64, shuffle=True), 3, lr=3e-3, progress=False)
    return model.eval(), make_loader(data, 64, shuffle=True), make_loader(test, 128)


def _captured():
    models = {}

    def keep(method, target, pruned, result):
        assert result.model is pruned  # the model the sweep measured (and fine-tuned) is the result's
        models[(method, target)] = (copy.deepcopy(pruned), result.summary)

    return models, keep


def test_reached_sparsity_matches_counts_and_evaluation(setup):
    model, _, test = setup
    before = {k: v.clone() for k, v in model.state_dict().items()}
    models, keep = _captured()
    df = sweep(model, METHODS, [0.3, 0.6], eval_loader=test, callback=keep)
    assert list(df.columns) == SWEEP_COLUMNS
    assert len(df) == 1 + len(METHODS) * 2
    dense_counts = count_params(model)
    dense_row = df[df.method == "dense"].iloc[0]
    assert dense_row.top1_dense == pytest.approx(100 * evaluate(model, test)["accuracy"])
    assert dense_row.top1_dense > 80  # the tiny net learned the blobs, so accuracy drops are meaningful
    example = next(iter(test))[0][:1]
    for _, row in df[df.method != "dense"].iterrows():
        pruned, summary = models[(row.method, row.target)]
        counts = count_params(pruned)
        # the table's numbers are the counts and the accuracy of the model the method produced
        assert row.sparsity == pytest.approx(1 - counts["nonzero"] / dense_counts["dense"], abs=1e-12)
        assert row.stored_reduction == pytest.approx(1 - counts["stored"] / dense_counts["dense"], abs=1e-12)
        assert row.params_dense == dense_counts["dense"]
        assert row.sparsity == pytest.approx(summary.reached_sparsity, abs=1e-12)
        assert row.top1_pruned == pytest.approx(100 * evaluate(pruned, test)["accuracy"])
        assert row.macs == count_macs(pruned, example)
        # element-wise methods hit the target to one parameter; factorized ones to one rank step
        tol = 1.0 / dense_counts["dense"] if row.method in ("rmt", "magnitude", "random") else 0.02
        assert abs(row.sparsity - row.target) <= tol + 1e-12, (row.method, row.target, row.sparsity)
        structured = row.method in ("rmt_lowrank", "svd")
        assert (row.stored_reduction > 0.2) == structured
        assert (row.macs < row.macs_dense) == structured  # zeros alone do not save multiply-adds
        assert np.isnan(row.top1_finetuned)
    # the input model is untouched
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    # more pruning never helps random pruning on this net
    rnd = df[df.method == "random"].set_index("target").top1_pruned
    assert rnd[0.6] <= rnd[0.3] + 1e-9


def test_finetune_keeps_mask_and_same_seed_same_numbers(setup):
    model, train_loader, test = setup
    models, keep = _captured()
    kwargs = dict(eval_loader=test, finetune_loader=train_loader, finetune_steps=4, finetune_lr=1e-3, seed=3)
    df = sweep(model, ["magnitude", "rmt_lowrank"], [0.5], callback=keep, **kwargs)
    runs = df[df.method != "dense"]
    assert runs.top1_finetuned.notna().all() and (runs.finetune_steps == 4).all()
    for _, row in runs.iterrows():
        pruned, _ = models[(row.method, row.target)]
        # pruned weights stayed exactly zero through fine-tuning: nonzeros of the weights <= those after pruning
        weights = [p for n, p in pruned.named_parameters() if n.endswith("weight")]
        nnz = sum(int(torch.count_nonzero(w)) for w in weights)
        biases = sum(int(torch.count_nonzero(p)) for n, p in pruned.named_parameters() if not n.endswith("weight"))
        assert nnz + biases <= row.params_nonzero
        assert row.top1_finetuned == pytest.approx(100 * evaluate(pruned, test)["accuracy"])
    again = sweep(model, ["magnitude", "rmt_lowrank"], [0.5], **kwargs)
    pd.testing.assert_frame_equal(df.drop(columns=TIMING), again.drop(columns=TIMING))


def test_on_update_sees_each_finished_row(setup):
    model, _, test = setup
    seen = []
    df = sweep(model, ["magnitude", "svd"], [0.3, 0.6], eval_loader=test, on_update=seen.append)
    assert [len(t) for t in seen] == [2, 3, 4, 5]  # dense row + one more run each time
    for table in seen:  # each snapshot is the head of the final table
        pd.testing.assert_frame_equal(table.drop(columns=TIMING), df.head(len(table)).drop(columns=TIMING))


def test_variants_are_labelled_and_equal_their_method(setup):
    model, _, test = setup
    models, keep = _captured()
    options = {"global": {"method": "magnitude", "scope": "global"}, "magnitude": {"scope": "layer"}}
    df = sweep(model, ["magnitude", "global"], [0.6], eval_loader=test, method_options=options, callback=keep)
    assert set(df.method) == {"dense", "magnitude", "global"}
    direct = prune(model, "magnitude", sparsity=0.6, scope="global").model
    pruned, summary = models[("global", 0.6)]
    assert summary.method == "magnitude" and summary.options["scope"] == "global"
    assert all(torch.equal(a, b) for a, b in zip(direct.state_dict().values(), pruned.state_dict().values()))
    # global and per-layer magnitude pick different weights, so the variant really ran
    layer, _ = models[("magnitude", 0.6)]
    assert not all(torch.equal(a, b) for a, b in zip(layer.state_dict().values(), pruned.state_dict().values()))
    with pytest.raises(InputError, match="'method' key"):
        sweep(model, ["nonsense"], [0.5], eval_loader=test, method_options={"nonsense": {"method": "nope"}})


def _zeros(model):
    return {n: p.detach() == 0 for n, p in model.named_parameters() if n.endswith("weight")}


@pytest.mark.parametrize("method", ["magnitude", "rmt", "rmt_lowrank"])
def test_gradual_schedule_prunes_the_previous_stage(setup, method):
    model, _, test = setup
    models, keep = _captured()
    df = sweep(model, [method], [0.6, 0.3], eval_loader=test, schedule="gradual", callback=keep)
    runs = df[df.method == method]
    assert list(runs.target) == [0.3, 0.6] and (df.schedule == "gradual").all()  # increasing order
    first, _ = models[(method, 0.3)]
    second, _ = models[(method, 0.6)]
    # stage two is exactly the method applied to stage one's model, not to the dense one
    again = prune(first, method, sparsity=0.6, fit=False).model
    assert all(torch.equal(a, b) for a, b in zip(second.state_dict().values(), again.state_dict().values()))
    assert runs.set_index("target").loc[0.6, "top1_pruned"] == pytest.approx(100 * evaluate(second, test)["accuracy"])
    oneshot = sweep(model, [method], [0.3], eval_loader=test)
    # the first stage starts from the dense model, so it equals the one-shot result
    assert oneshot.top1_pruned.iloc[1] == runs.top1_pruned.iloc[0] and (oneshot.schedule == "oneshot").all()


def test_gradual_fine_tuning_accumulates_and_keeps_earlier_zeros(setup):
    model, train_loader, test = setup
    models, keep = _captured()
    kwargs = dict(eval_loader=test, finetune_loader=train_loader, finetune_steps=4, finetune_lr=1e-3, seed=1)
    df = sweep(model, ["magnitude"], [0.3, 0.6], schedule="gradual", callback=keep, **kwargs)
    first, second = models[("magnitude", 0.3)][0], models[("magnitude", 0.6)][0]
    for name, zero in _zeros(first).items():  # what stage one pruned is still pruned after stage two
        assert bool((dict(second.named_parameters())[name].detach()[zero] == 0).all()), name
    # the fine-tuned stage one, pruned further, differs from pruning the dense model to the same level
    direct = prune(model, "magnitude", sparsity=0.6).model
    assert not all(torch.equal(a, b) for a, b in zip(_zeros(second).values(), _zeros(direct).values()))
    again = sweep(model, ["magnitude"], [0.3, 0.6], schedule="gradual", **kwargs)
    pd.testing.assert_frame_equal(df.drop(columns=TIMING), again.drop(columns=TIMING))


def test_layer_sparsity_plot_draws_the_counts(setup):
    import matplotlib.pyplot as plt

    from rmtlib.nn.count import layer_sparsity
    from rmtlib.plots.sweep import plot_layer_sparsity

    model, _, _ = setup
    tables = {m: layer_sparsity(prune(model, m, sparsity=0.5).model) for m in ("magnitude", "random")}
    ax = plot_layer_sparsity(tables)
    lines = [line for line in ax.get_lines() if not line.get_label().startswith("_")]  # not the slot borders
    assert [line.get_label() for line in lines] == ["magnitude", "random"]
    assert all(line.get_linestyle() == "None" for line in lines)  # layers are categories: no joining lines
    np.testing.assert_allclose(lines[0].get_ydata(), 100 * tables["magnitude"]["sparsity"].to_numpy())
    x0, x1 = (line.get_xdata() for line in lines)  # side by side within each layer's slot
    assert (x0 < x1).all() and (np.abs(x0 - np.arange(len(x0))) < 0.5).all()
    assert [t.get_text() for t in ax.get_xticklabels()] == list(tables["magnitude"]["layer"])
    plt.close("all")


def test_bad_input_is_refused(setup):
    model, train_loader, test = setup
    with pytest.raises(InputError, match="unknown method"):
        sweep(model, ["nope"], [0.5], eval_loader=test)
    with pytest.raises(InputError, match="level"):
        sweep(model, ["magnitude"], [1.0], eval_loader=test)
    with pytest.raises(InputError, match="finetune_loader"):
        sweep(model, ["magnitude"], [0.5], eval_loader=test, finetune_steps=2)
    with pytest.raises(InputError, match="more than one pass"):  # it used to stop at one pass, recording N
        sweep(
            model,
            ["magnitude"],
            [0.5],
            eval_loader=test,
            finetune_loader=train_loader,
            finetune_steps=len(train_loader) + 1,
        )
    with pytest.raises(InputError, match="not swept"):
        sweep(model, ["magnitude"], [0.5], eval_loader=test, method_options={"rmt": {"cycles": 2}})
    with pytest.raises(InputError, match="schedule"):
        sweep(model, ["magnitude"], [0.5], eval_loader=test, schedule="cyclic")
    with pytest.raises(InputError, match="distinct levels"):
        sweep(model, ["magnitude"], [0.5, 0.5], eval_loader=test, schedule="gradual")
    # a bad option of the second method is refused before the first method runs
    ran = []
    with pytest.raises(InputError, match="'svd': svd: unknown option\\(s\\) cycles"):
        sweep(
            model,
            ["magnitude", "svd"],
            [0.5],
            eval_loader=test,
            method_options={"svd": {"cycles": 2}},
            callback=lambda *args: ran.append(args),
        )
    assert ran == []
    # keywords the sweep decides itself are refused before any work, not a TypeError after the dense model
    for options in (
        {"prune_options": {"seed": 5}},
        {"method_options": {"random": {"device": "cpu"}}},
        {"method_options": {"random": {"inplace": True}}},
    ):
        with pytest.raises(InputError, match="set by the sweep itself"):
            sweep(model, ["random"], [0.5], eval_loader=test, callback=lambda *args: ran.append(args), **options)
    assert ran == []


def test_paper_numbers_are_the_papers():
    paper = paper_vit_results()
    assert (paper.source == "paper").all() and (paper.dataset == "ImageNet-1k").all()
    assert set(SWEEP_COLUMNS) <= set(paper.columns)
    vit_l = paper[(paper.model == "ViT-L/16 (timm)") & (paper.method == "rmt")].set_index("target")
    assert vit_l.top1_pruned.to_dict() == pytest.approx({0.30: 85.05, 0.39: 84.08, 0.475: 81.49, 0.55: 74.40})
    tv = paper[(paper.model == "ViT-B/16 (torchvision V1)") & (paper.method == "rmt")]
    assert tv.top1_finetuned.tolist() == [82.2, 80.9, 78.0] and tv.top1_pruned.isna().all()
    rerun = paper[paper.model.str.contains("re-run")]
    mag = rerun[rerun.method == "magnitude"].set_index("target").top1_finetuned
    rmt = rerun[rerun.method == "rmt"].set_index("target").top1_finetuned
    assert mag.to_dict() == pytest.approx({0.3: 84.46, 0.5: 81.67, 0.7: 67.44})
    assert (rmt >= mag).all()  # the paper's re-run: rmt at least as accurate as magnitude at every level
    dense = paper[paper.method == "dense"].set_index("model").top1_dense
    assert dense["ViT-B/16 (SWAG)"] == 85.30 and dense["ViT-L/16 (timm)"] == 85.84


def test_level_table_and_plot(setup):
    model, _, test = setup
    df = sweep(model, ["magnitude", "random"], [0.3, 0.6], eval_loader=test)
    table = level_table(df)
    assert list(table.columns) == ["dense", "30%", "60%"]
    assert table.loc["magnitude", "60%"] == df[(df.method == "magnitude") & (df.target == 0.6)].top1_pruned.item()
    import matplotlib

    matplotlib.use("Agg")
    ax = plot_sweep(df)
    dense = df[df.method == "dense"].top1_dense.item()
    curves = [line for line in ax.get_lines() if len(line.get_xdata()) == 3]
    assert len(curves) == 2  # one per method, each starting at the dense model's top-1 at 0%
    for line in curves:
        assert list(line.get_xdata()) == pytest.approx([0.0, 30.0, 60.0], abs=0.5) and line.get_ydata()[
            0
        ] == pytest.approx(dense)
    assert {"magnitude", "random", "dense model"} <= {t.get_text() for t in ax.get_legend().get_texts()}
    ax = plot_sweep(paper_vit_results(), value="top1_pruned", hue="model", dense_line=False)
    assert len([line for line in ax.get_lines() if len(line.get_xdata())]) >= 2


def test_esd_helpers_read_dense_and_factorized_layers(setup):
    from rmtlib.experiments.sweep import default_esd_layers, layer_spectra
    from rmtlib.nn.models import mnist_vit
    from rmtlib.spectral.fit import fit_mp

    assert default_esd_layers(mnist_vit(depth=4)) == ["blocks.0.attn.qkv", "blocks.2.mlp.fc1", "blocks.3.mlp.fc2"]
    model, _, _ = setup
    assert default_esd_layers(model) == ["1", "3", "5"]
    before = layer_spectra(model, ["3"])
    independent = fit_mp(model[3].weight.detach())
    assert before["3"].sigma2 == pytest.approx(independent.sigma2) and before["3"].n_spikes == independent.n_spikes
    result = __import__("rmtlib").pruning.prune(model, "rmt_lowrank", sparsity=0.6)
    pruned = result.model
    rank = int(result.layers.set_index("layer").loc["3", "rank_kept"])
    assert rank < 96 and hasattr(pruned[3], "rmt_matrix")
    after = layer_spectra(pruned, ["3"])["3"]
    sv = after.singular_values  # the product of the factors has exactly `rank` nonzero singular values
    assert np.all(sv[rank:] < 1e-4 * sv[0]) and sv[rank - 1] > 1e-4 * sv[0]
    with pytest.raises(InputError, match="not in the model"):
        layer_spectra(model, ["nope"])


def test_shuffled_eval_loader_measures_every_model_on_the_same_batches(setup):
    """With ``eval_batches``, a shuffling eval loader used to hand each evaluation other batches, so a
    level-0 pruning (the dense model itself) scored differently from the dense row."""
    model, train_loader, _ = setup
    data = train_loader.dataset
    shuffled = make_loader(data, 32, shuffle=True, seed=0)
    next(iter(shuffled))  # a loader used before: its generator has moved on
    df = sweep(model, ["magnitude", "random"], [0.0, 0.5], eval_loader=shuffled, eval_batches=1, seed=4)
    fresh = make_loader(data, 32, shuffle=True, seed=4)  # the first batch of the loader seeded as the sweep
    expected = 100 * evaluate(model, fresh, max_batches=1)["accuracy"]
    assert df.top1_dense.iloc[0] == pytest.approx(expected)
    level0 = df[df.target == 0.0]
    assert (level0.sparsity == 0).all() and (level0.top1_pruned == level0.top1_dense).all()


def test_level_table_keeps_levels_that_round_alike(setup):
    """0.12 and 0.125 were both labelled "12%", two columns of one name in the level table."""
    model, _, test = setup
    df = sweep(model, ["magnitude"], [0.12, 0.125], eval_loader=test)
    table = level_table(df)
    assert list(table.columns) == ["dense", "12%", "12.5%"]
    for level, column in ((0.12, "12%"), (0.125, "12.5%")):
        assert table.loc["magnitude", column] == df[df.target == level].top1_pruned.item()


def test_level_table_refuses_to_average_several_sweeps(setup):
    """Two sweeps in one table (another model, or the same cells twice) used to be averaged into one cell."""
    model, _, test = setup
    df = sweep(model, ["magnitude"], [0.3], eval_loader=test)
    with pytest.raises(InputError, match="magnitude at level 0.3 appears 2 times"):
        level_table(pd.concat([df, df]))
    other = df.assign(model="another")
    with pytest.raises(InputError, match="2 models"):
        level_table(pd.concat([df.assign(model="first"), other]))


def test_statistics_equal_an_independent_paired_computation(setup):
    model, _, test = setup
    models, keep = _captured()
    df = sweep(
        model,
        ["magnitude", "random", "global"],
        [0.4, 0.7],
        eval_loader=test,
        reference="global",
        method_options={"global": {"method": "magnitude", "scope": "global"}},
        callback=keep,
        n_boot=300,
    )
    # the reference runs first; its own rows and the dense row carry no comparison
    assert list(df.method) == ["dense", "global", "global", "magnitude", "magnitude", "random", "random"]
    assert set(df.reference) == {"global"}
    assert df[df.method.isin(["dense", "global"])][["diff_pp", "p_value"]].isna().all().all()
    dense_pred = predict(model, test)
    dense_row = df[df.method == "dense"].iloc[0]
    assert dense_row.kl_to_dense == 0.0 and dense_row.certified > 0.99
    assert dense_row.ce == pytest.approx(evaluate(model, test)["loss"], rel=1e-5)
    for level in (0.4, 0.7):
        ref = sample_metrics(predict(models[("global", level)][0], test), dense_pred)
        for label in ("magnitude", "random"):
            row = df[(df.method == label) & (df.target == level)].iloc[0]
            mine = sample_metrics(predict(models[(label, level)][0], test), dense_pred)
            assert row.ce == pytest.approx(mine["ce"].mean(), rel=1e-9)
            assert row.kl_to_dense == pytest.approx(mine["kl_to_dense"].mean(), rel=1e-9)
            assert row.certified == pytest.approx(mine["certified"].mean())
            assert row.p_value == pytest.approx(mcnemar(mine["correct"], ref["correct"]).p_value, rel=1e-12)
            diff, lo, hi = paired_bootstrap(mine["correct"], ref["correct"], n_boot=300, seed=0)
            assert (row.diff_pp, row.ci_low_pp, row.ci_high_pp) == pytest.approx((100 * diff, 100 * lo, 100 * hi))
            assert row.diff_pp == pytest.approx(
                row.top1_pruned - df[(df.method == "global") & (df.target == level)].top1_pruned.iloc[0]
            )
            assert 0.0 <= row.certified <= 1.0 and row.kl_to_dense > 0
            dense_correct = sample_metrics(dense_pred, dense_pred)["correct"]
            drop, low, high = paired_bootstrap(dense_correct, mine["correct"], n_boot=300, seed=0)
            assert 100 * drop == pytest.approx(row.top1_dense - row.top1_pruned)
            assert (row.drop_low_pp, row.drop_high_pp) == pytest.approx((100 * low, 100 * high))
    # random pruning moves the logits more than magnitude pruning, so it certifies fewer samples
    at = df[df.target == 0.7].set_index("method")
    assert at.loc["random", "kl_to_dense"] > at.loc["magnitude", "kl_to_dense"]
    assert at.loc["random", "certified"] < at.loc["magnitude", "certified"]
    with pytest.raises(InputError, match="reference"):
        sweep(model, ["magnitude"], [0.5], eval_loader=test, reference="rmt")


@pytest.fixture
def calibrated_method():
    """A data-dependent method registered for one test: magnitude scores scaled by a factor drawn from
    its calibration inputs, so each calibration draw prunes differently."""

    @register_method("_calib_probe", requires_sparsity=True, needs_calibration=True)
    def probe(ctx, *, calibration=None):
        inputs = ctx.calibration if ctx.calibration is not None else calibration
        assert isinstance(inputs, torch.Tensor) and inputs.shape[0] == 32
        gen = torch.Generator().manual_seed(int(1e6 * float(inputs.abs().sum())) % 2**31)
        remove = removal_needed(ctx.units, ctx.budget)
        for unit, k in zip(ctx.units, layerwise_counts(ctx.units, remove)):
            noise = torch.rand(unit.matrix.shape, generator=gen).to(unit.matrix)
            remove_smallest_by = unit.matrix.abs() * (0.5 + noise)
            idx = torch.argsort(remove_smallest_by.reshape(-1))[:k]
            unit.matrix.view(-1)[idx] = 0
        return {}

    yield "_calib_probe"
    REGISTRY.pop("_calib_probe")


def test_calibration_seeds_give_a_spread_and_the_first_seed_is_the_row(setup, calibrated_method):
    model, train_loader, test = setup
    models, keep = _captured()
    with pytest.raises(InputError, match="calibration_loader"):
        sweep(model, [calibrated_method], [0.5], eval_loader=test)
    common = dict(eval_loader=test, calibration_loader=train_loader, calibration_samples=32, callback=keep)
    df = sweep(model, [calibrated_method, "magnitude"], [0.6], calibration_seeds=[5, 6, 7], **common)
    row = df[df.method == calibrated_method].iloc[0]
    assert row.calibration_seeds == 3
    assert row.top1_seed_min <= row.top1_pruned <= row.top1_seed_max
    assert row.top1_seed_max > row.top1_seed_min  # the draws differ, and so do the pruned models
    one = sweep(model, [calibrated_method], [0.6], calibration_seeds=[5], **common)
    assert one[one.method == calibrated_method].top1_pruned.iloc[0] == row.top1_pruned  # the row is seed 5's
    assert np.isnan(one[one.method == calibrated_method].top1_seed_min.iloc[0])
    assert df[df.method == "magnitude"].calibration_seeds.iloc[0] == 0  # data-free: run once
    assert np.isnan(df[df.method == "magnitude"].top1_seed_min.iloc[0])
    draws = [draw_calibration(train_loader.dataset, 32, s) for s in (5, 5, 6)]
    assert torch.equal(draws[0], draws[1]) and not torch.equal(draws[0], draws[2])


@pytest.mark.parametrize("centring", ["ma", "johnstone"])
def test_layer_spectra_honour_the_fit_config(edge_decides, centring):
    """layer_spectra used to take alpha and beta only; the centring decides a spike here."""
    from torch import nn

    from rmtlib.experiments.sweep import layer_spectra
    from rmtlib.spectral.fit import fit_mp

    w, paper, other = edge_decides(centring)
    model = nn.Sequential(nn.Linear(120, 300))
    with torch.no_grad():
        model[0].weight.copy_(w)
    fits = {c.edge_centring: layer_spectra(model, ["0"], fit_config=c)["0"] for c in (paper, other)}
    assert sorted(fit.n_spikes for fit in fits.values()) == [1, 2]
    for config in (paper, other):
        fit = fits[config.edge_centring]
        assert fit.fit_config == config and fit.sv_edge == fit_mp(w.float(), fit_config=config).sv_edge
