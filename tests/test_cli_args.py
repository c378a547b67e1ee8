"""Shared CLI parsing: KEY=VALUE pairs, sparsity lists, output checks, atomic CSV/JSON."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from rmtlib.cli.args import (
    check_output_dir,
    check_output_file,
    key_values,
    names,
    non_negative_int,
    positive_counts,
    sparsity_levels,
    write_csv_atomic,
    write_json_atomic,
)
from rmtlib.errors import InputError


def test_key_values_parses_json_and_keeps_strings():
    got = key_values(["rho=0.08", "reg-steps=0", "scope=global", "sizes=[1, 2]", "flag=true"], "--option")
    assert got == {"rho": 0.08, "reg_steps": 0, "scope": "global", "sizes": [1, 2], "flag": True}
    for bad in ("noequals", "=3"):
        with pytest.raises(InputError, match="--option expects KEY=VALUE"):
            key_values([bad], "--option")


def test_sparsity_levels_and_names():
    assert sparsity_levels("0.3, 0.5,0.7") == [0.3, 0.5, 0.7]
    assert sparsity_levels("0") == [0.0]
    for bad in ("1.0", "-0.1", "0.3,x", ", ,"):
        with pytest.raises(argparse.ArgumentTypeError):
            sparsity_levels(bad)
    assert non_negative_int("0") == 0 and non_negative_int("8") == 8
    for bad in ("-1", "2.5", "x"):
        with pytest.raises(argparse.ArgumentTypeError):
            non_negative_int(bad)
    assert names("rmt, magnitude") == ["rmt", "magnitude"]
    with pytest.raises(argparse.ArgumentTypeError):
        names(" , ")


def test_check_output_file(tmp_path: Path):
    check_output_file(None, "--out")
    check_output_file(str(tmp_path / "new" / "deeper" / "x.csv"), "--out")  # folders are created later
    (tmp_path / "f").write_text("")
    with pytest.raises(InputError, match="--out: .* is a folder"):
        check_output_file(str(tmp_path), "--out")
    with pytest.raises(InputError, match="--plot: .* is a file"):
        check_output_file(str(tmp_path / "f" / "x.png"), "--plot")


def test_check_output_dir_and_positive_counts(tmp_path: Path):
    check_output_dir(None, "--plots")
    check_output_dir(str(tmp_path / "new" / "deeper"), "--plots")
    (tmp_path / "f").write_text("")
    for bad in (tmp_path / "f", tmp_path / "f" / "sub"):
        with pytest.raises(InputError, match="--save-dir: .* is a file"):
            check_output_dir(str(bad), "--save-dir")
    positive_counts((None, "--a"), (1, "--b"))
    with pytest.raises(InputError, match="--batch-size must be >= 1, got 0"):
        positive_counts((3, "--a"), (0, "--batch-size"))


def test_atomic_csv_and_json_round_trip(tmp_path: Path):
    table = pd.DataFrame({"a": [1, 2], "b": [0.5, np.nan]})
    write_csv_atomic(table, tmp_path / "t.csv")
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "t.csv"), table)
    write_json_atomic({"x": np.float32(0.25), "n": 3}, tmp_path / "o" / "r.json")
    assert json.loads((tmp_path / "o" / "r.json").read_text()) == {"x": 0.25, "n": 3}


def test_ctrl_c_is_one_line_and_exit_130(monkeypatch, capsys):
    import rmtlib.cli.main

    def interrupted(argv=None):
        raise KeyboardInterrupt

    monkeypatch.setattr(rmtlib.cli.main, "main", interrupted)
    assert rmtlib.cli.main.console() == 130
    err = capsys.readouterr().err
    assert "interrupted" in err and "Traceback" not in err


def test_calibration_spec_and_default():
    from rmtlib.cli.args import calibration_spec, default_calibration

    assert calibration_spec("mnist:256") == ("mnist", 256)
    assert calibration_spec("mnist") == ("mnist", 256)
    assert calibration_spec("imagefolder:/data/in:128") == ("imagefolder:/data/in", 128)
    assert calibration_spec("fashion-mnist:/x") == ("fashion-mnist:/x", 256)
    with pytest.raises(argparse.ArgumentTypeError):
        calibration_spec("mnist:0")
    assert default_calibration(None, ["magnitude"], "mnist_vit", None) is None
    assert default_calibration(None, ["sparsegpt"], "mnist_vit", None) == ("mnist", 256)
    assert default_calibration(None, ["wanda"], "fc:8-4", "synthetic") == ("synthetic", 256)
    with pytest.raises(InputError, match="--calibration DATA"):
        default_calibration(None, ["wanda"], "fc:8-4", None)
