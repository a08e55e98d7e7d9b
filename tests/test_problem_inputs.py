"""Inputs of the neural problems that are refused before a round runs: a minibatch larger than
a worker's shard (it would repeat images), and CIFAR-10 with no training batch (it used to look
for, and try to download, files it does not need)."""

from __future__ import annotations

import pytest
import torch

from compress_bench.config import compose_config
from compress_bench.errors import ConfigError
from compress_bench.problems import build_problem
from compress_bench.runner import plain_config
from tests.conftest import SHARED_DATASETS


def _build(tmp_data, *overrides: str):
    cfg = plain_config(compose_config(*overrides))  # enums as strings, as a run sees them
    return build_problem(
        cfg.problem, cfg.n_workers, cfg.seed, torch.device("cpu"), torch.float32, str(tmp_data)
    )


@pytest.mark.skipif(
    not (SHARED_DATASETS / "mnist").is_dir(), reason="the MNIST files are not in the data folder"
)
def test_a_minibatch_larger_than_a_shard_is_refused():
    with pytest.raises(ConfigError) as err:
        _build(
            SHARED_DATASETS,
            "problem=mnist",
            "n_workers=4",
            "problem.train_limit=400",
            "problem.batch_size=101",
        )
    text = str(err.value)
    assert "problem.batch_size=101" in text and "100 images" in text, text
    assert "\n" not in text


@pytest.mark.skipif(
    not (SHARED_DATASETS / "mnist").is_dir(), reason="the MNIST files are not in the data folder"
)
def test_a_minibatch_of_the_whole_shard_is_accepted():
    problem = _build(
        SHARED_DATASETS,
        "problem=mnist",
        "n_workers=4",
        "problem.train_limit=400",
        "problem.batch_size=100",
    )
    assert problem.sampler.next().shape == (4, 100)


def test_cifar10_without_training_batches_is_refused_before_any_file(tmp_path, monkeypatch):
    """An empty data folder, downloads allowed: the refusal comes first, no download starts."""
    from compress_bench.data import cifar10

    def no_download(*args, **kwargs):
        raise AssertionError("a download was attempted")

    monkeypatch.setattr(cifar10, "_download", no_download)
    monkeypatch.delenv("COMPRESS_BENCH_OFFLINE", raising=False)
    with pytest.raises(ConfigError, match="problem.train_batches is empty"):
        _build(tmp_path, "problem=cifar10_resnet18", "problem.train_batches=[]")
