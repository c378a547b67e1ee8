import json
import re
from dataclasses import fields
from pathlib import Path

import pytest
import torch
from torch import nn

import rmtlib
from rmtlib.errors import InputError
from rmtlib.nn.count import count_params
from rmtlib.pruning import PruneResult, PruneSummary, prune


def _fc() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(64, 96), nn.ReLU(), nn.Linear(96, 48), nn.ReLU(), nn.Linear(48, 10))


def test_prune_returns_a_result_whose_summary_is_the_counts_of_its_model():
    model = _fc()
    result = prune(model, "rmt_oneshot", sparsity=0.4)
    assert isinstance(result, PruneResult) and rmtlib.PruneResult is PruneResult
    before, after = count_params(model), count_params(result.model)
    s = result.summary
    assert (s.method, s.target_sparsity, s.seed, s.fit_config) == ("rmt_oneshot", 0.4, 0, rmtlib.FitConfig())
    assert (s.params_dense, s.nonzero_before) == (before["dense"], before["nonzero"])
    assert (s.stored_after, s.nonzero_after) == (after["stored"], after["nonzero"])
    assert s.reached_sparsity == 1.0 - after["nonzero"] / before["dense"]
    assert isinstance(s.reached_sparsity, float) and all(
        type(v) is int for v in (s.params_dense, s.nonzero_before, s.stored_after, s.nonzero_after)
    )
    # the table's rows are the model's layers, counted here from the returned model
    nonzero = [int(torch.count_nonzero(result.model[i].weight)) for i in (0, 2, 4)]
    assert list(result.layers["layer"]) == ["0", "2", "4"] and list(result.layers["nonzero_after"]) == nonzero
    assert set(s.outputs) == {"z", "scale"} and s.options == {}


def test_the_methods_outputs_and_options_are_kept_apart_from_the_runs_fields():
    result = prune(_fc(), "rmt", cycles=2, regularization="none")
    s = result.summary
    assert s.target_sparsity is None and s.options == {"cycles": 2, "regularization": "none"}
    assert s.outputs["cycles"] == len(s.outputs["cycle_log"]) == 2
    assert s.outputs["cycle_log"][-1]["nonzero"] == s.nonzero_after == count_params(result.model)["nonzero"]
    # random returns the run's seed too: the summary holds it once, as the field
    rnd = prune(_fc(), "random", sparsity=0.3, seed=7).summary
    assert rnd.seed == 7 and "seed" not in rnd.outputs


def test_to_dict_is_flat_json_and_from_dict_inverts_it():
    s = prune(_fc(), "rmt", cycles=2, regularization="none").summary
    d = s.to_dict()
    names = [f.name for f in fields(PruneSummary) if f.name != "outputs"]
    assert list(d) == [*s.outputs, *names]  # the method's outputs first, then the run's fields
    assert all(d[name] == getattr(s, name) for name in names if name != "fit_config")
    assert d["fit_config"] == s.fit_config.to_dict()  # the fit settings as one JSON-ready dict
    assert all(d[key] == value for key, value in s.outputs.items())
    back = json.loads(json.dumps(d))
    assert back == d
    assert PruneSummary.from_dict(back) == s
    with pytest.raises(InputError, match="missing method, reached_sparsity"):
        PruneSummary.from_dict({k: v for k, v in d.items() if k not in ("method", "reached_sparsity")})
    # a summary written before fit_config held the loose alpha, beta and edge_centring
    loose = {k: v for k, v in back.items() if k != "fit_config"} | {
        "alpha": 0.25,
        "beta": 0.8,
        "edge_centring": "paper",
    }
    assert PruneSummary.from_dict(loose) == s


def test_to_dict_lets_the_runs_fields_win_a_shared_key():
    s = PruneSummary("m", 0.5, 0.5, 10, 10, 10, 5, seed=3, fit_config=rmtlib.FitConfig())
    s = PruneSummary(**{**s.__dict__, "outputs": {"seed": 9, "z": 1.0}})
    assert s.to_dict()["seed"] == 3 and s.to_dict()["z"] == 1.0


def test_repr_is_one_short_line_without_the_model():
    result = prune(_fc(), "magnitude", sparsity=0.5)
    s = result.summary
    assert repr(result) == (
        f"PruneResult(method='magnitude', target_sparsity=0.5, reached_sparsity={s.reached_sparsity:.4f}, layers=3)"
    )
    stopped = prune(_fc(), "rmt_lowrank")
    assert "target_sparsity=None" in repr(stopped) and "Linear" not in repr(stopped)


def test_the_summary_is_frozen():
    s = prune(_fc(), "magnitude", sparsity=0.5).summary
    with pytest.raises(AttributeError):
        s.method = "other"  # type: ignore[misc]


def test_no_dataframe_attrs_left_in_the_library():
    """The summary lives in PruneSummary, not in pandas' experimental DataFrame attrs."""
    root = Path(rmtlib.__file__).parent
    hits = [
        f"{path.relative_to(root)}:{n}"
        for path in sorted(root.rglob("*.py"))
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if re.search(r"[.]attrs\b", line)
    ]
    assert hits == []
