"""``kernels=portable``: a CPU run takes the accelerators' sync-free code paths
(compressors/paths.py) and writes the same metrics as the CPU's fast paths."""

from __future__ import annotations

import csv

import pytest

from compress_bench.compressors import layerwise, paths
from tests.conftest import run_main

MNIST = (
    "experiment=mnist_ef_smoke",
    "compressor=top_k",
    "quantizer=power_of_two",
    "rounds=20",
    "log_every=10",
    "progress=false",
)
TIMED = ("images_per_second", "wall_time")


def _run(kernels, tmp_path, monkeypatch, capfd) -> tuple[list[dict], set[bool]]:
    seen: set[bool] = set()

    def spy(t):
        fast = paths.cpu_fast(t)
        seen.add(fast)
        return fast

    # layerwise asks once per round whether to stack its tensors by shape
    monkeypatch.setattr(layerwise, "cpu_fast", spy)
    run_dir = tmp_path / kernels
    code, _, err = run_main(
        [*MNIST, f"kernels={kernels}", f"hydra.run.dir={run_dir}"], tmp_path, monkeypatch, capfd
    )
    assert code == 0, err
    with open(run_dir / "metrics.csv") as f:
        rows = [{k: v for k, v in row.items() if k not in TIMED} for row in csv.DictReader(f)]
    return rows, seen


def test_portable_kernels_give_the_fast_paths_numbers(tmp_path, monkeypatch, capfd):
    auto, seen_auto = _run("auto", tmp_path, monkeypatch, capfd)
    portable, seen_portable = _run("portable", tmp_path, monkeypatch, capfd)
    assert seen_auto == {True} and seen_portable == {False}
    assert len(auto) >= 2 and auto == portable


def test_an_unknown_kernel_choice_is_one_line(tmp_path, monkeypatch, capfd):
    code, _, err = run_main([*MNIST, "kernels=gpu"], tmp_path, monkeypatch, capfd)
    assert code == 2 and len(err.strip().splitlines()) == 1 and "kernels" in err, err
    assert "Traceback" not in err


@pytest.mark.parametrize("enabled", [True, False])
def test_portable_is_a_scoped_switch(enabled):
    import torch

    t = torch.zeros(1)
    with paths.portable(enabled):
        assert paths.cpu_fast(t) is not enabled
    assert paths.cpu_fast(t)
