"""Issue 9's acceptance on mushrooms, n = 20, iid (make test-slow): EF21 + TopK and DIANA +
RandK at lr=auto converge to the optimum where plain DCGD with the same operators stalls, and
EF14 + TopK lowers DCGD's floor at the same step."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from tests.conftest import run_main

pytestmark = pytest.mark.slow
SETTING = ["n_workers=20", "progress=false", "log_every=50"]


def metrics(args, tmp_path, monkeypatch, capfd, mushrooms_dir, name):
    run_dir = tmp_path / name
    code, _, err = run_main(
        [*SETTING, f"data_dir={mushrooms_dir}", *args, f"hydra.run.dir={run_dir}"],
        tmp_path,
        monkeypatch,
        capfd,
    )
    assert code == 0, err
    assert json.loads((run_dir / "summary.json").read_text())["status"] == "completed"
    return pd.read_csv(run_dir / "metrics.csv")


def test_ef21_top_k_reaches_1e_10(tmp_path, monkeypatch, capfd, mushrooms_dir):
    ef21 = metrics(["method=ef21", "rounds=8000"], tmp_path, monkeypatch, capfd, mushrooms_dir, "a")
    assert ef21["loss_gap"].min() < 1e-10
    dcgd = metrics(["method=dcgd", "rounds=8000"], tmp_path, monkeypatch, capfd, mushrooms_dir, "b")
    assert dcgd["grad_norm_rel"].iloc[-1] > 1e-2  # the TopK floor without error feedback


def test_diana_rand_k_reaches_1e_6(tmp_path, monkeypatch, capfd, mushrooms_dir):
    args = ["compressor=rand_k", "tol=1e-6", "rounds=8000"]
    diana = metrics(["method=diana", *args], tmp_path, monkeypatch, capfd, mushrooms_dir, "a")
    assert diana["grad_norm_rel"].iloc[-1] <= 1e-6
    dcgd = metrics(["method=dcgd", *args], tmp_path, monkeypatch, capfd, mushrooms_dir, "b")
    assert dcgd["grad_norm_rel"].min() > 1e-3  # RandK's variance floor


def test_ef14_lowers_the_top_k_floor_at_the_same_step(tmp_path, monkeypatch, capfd, mushrooms_dir):
    args = ["lr=0.37", "rounds=4000"]
    ef = metrics(["method=ef", *args], tmp_path, monkeypatch, capfd, mushrooms_dir, "a")
    dcgd = metrics(["method=dcgd", *args], tmp_path, monkeypatch, capfd, mushrooms_dir, "b")
    assert ef["grad_norm_rel"].iloc[-1] < 0.5 * dcgd["grad_norm_rel"].iloc[-1]
