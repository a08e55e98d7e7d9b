"""The thesis_cifar presets against spec 12's variant thesis_resnet (the thesis ResNet18/CIFAR-10
notebook): every operator of the sweep unscaled (RandK too: its own default is d/k), per tensor,
followed by power-of-two rounding, and thesis_cifar_offline's schedule on the offline data."""

from __future__ import annotations

import math

import pytest

from compress_bench.compressors import build_compressor
from compress_bench.config import compose_config
from compress_bench.runner import plain_config

EXPERIMENTS = ["thesis_cifar", "thesis_cifar_smoke", "thesis_cifar_offline"]
OPERATORS = [
    "rand_k",
    "top_k",
    "md_greedy",
    "md_greedy_weighted",
    "md_weighted_greedy",
    "md_stochastic",
]


def composed(*overrides: str):
    """The config a run of ``overrides`` reads (plain_config: enums as strings, the md_*
    operators' ``importance: ${importance}`` resolved), as build_run sees it."""
    return plain_config(compose_config(*overrides))


@pytest.mark.parametrize("operator", OPERATORS)
@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_operator_is_the_notebooks(experiment, operator):
    cfg = composed(f"experiment={experiment}", f"compressor={operator}")
    c = cfg.compressor
    assert c.name == operator
    # no d/k factor on any operator: RandK samples without replacement, unscaled (spec 12);
    # TopK, MD Greedy and MD Stochastic unscaled; the weighted ones' kept weights sum to the
    # integer k_l of each tensor (the notebook), not to the convex code's ratio * numel
    if operator in ("rand_k", "top_k", "md_greedy", "md_stochastic"):
        assert c.scale == "none"
    else:
        assert "scale" not in c and c.weights == "integer_k"
    if operator.startswith("md_"):
        assert c.importance.variant == "thesis_resnet"
    assert cfg.importance.variant == "thesis_resnet"
    assert (cfg.importance.steps, cfg.importance.lr, cfg.importance.entropy) == (
        2 if experiment == "thesis_cifar_smoke" else 200,
        2.0,
        0.1,
    )
    assert cfg.importance.init == "random" and cfg.importance.warm_start
    q = cfg.quantizer
    assert (q.name, q.rounding, q.clip_exponent_at_zero) == ("power_of_two", "log2", True)
    assert (cfg.granularity, cfg.ratio, cfg.n_workers) == ("layer", 0.2, 1)
    assert (cfg.problem.name, cfg.method.name, cfg.dtype) == ("cifar10_resnet18", "dcgd", "float32")
    opt = cfg.optimizer
    assert (opt.name, cfg.lr, opt.momentum, opt.weight_decay) == ("sgd", 0.001, 0.9, 5e-4)


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_rand_k_is_built_unscaled(experiment):
    """The operator the run builds for one tensor (build_operator's call): k = ceil(0.2 numel)
    kept coordinates (spec 0.8) and, without the d/k factor, a biased operator."""
    cfg = composed(f"experiment={experiment}", "compressor=rand_k")
    op = build_compressor(cfg.compressor, ratio=cfg.ratio, shape=(64, 3, 3, 3))
    assert op.scale == "none" and not op.unbiased
    assert op._k(64 * 27) == math.ceil(0.2 * 64 * 27)


def test_rand_k_keeps_its_unbiased_default_in_other_experiments():
    assert composed("experiment=mnist_ef", "compressor=rand_k").compressor.scale == "dk"


@pytest.mark.parametrize("operator", ["md_greedy_weighted", "md_weighted_greedy"])
def test_weighted_operators_keep_the_code_weighting_in_other_experiments(operator):
    assert composed("experiment=thesis_logreg", f"compressor={operator}").compressor.weights == (
        "code"
    )
    assert composed(f"compressor={operator}").compressor.weights == "code"


def test_the_sweep_is_the_six_operators():
    for experiment in ("thesis_cifar", "thesis_cifar_offline"):
        cfg = compose_config(f"experiment={experiment}", hydra_node=True)
        assert cfg.hydra.sweeper.params.compressor.split(",") == OPERATORS


def test_the_full_figure_trains_20_epochs_of_the_50000_images():
    cfg = composed("experiment=thesis_cifar")
    assert list(cfg.problem.train_batches) == [1, 2, 3, 4, 5] and cfg.problem.test_file is None
    per_epoch = 50_000 // cfg.problem.batch_size
    assert (cfg.problem.batch_size, per_epoch, cfg.rounds) == (128, 390, 20 * 390)
    assert cfg.eval_every == cfg.log_every == cfg.importance.every == per_epoch
    assert cfg.importance.scope == "tensor"


def test_the_offline_figure_trains_20_epochs_of_the_10000_offline_images():
    cfg = composed("experiment=thesis_cifar_offline")
    p = cfg.problem
    assert list(p.train_batches) == [1]  # data_batch_1.bin: 10,000 images
    assert p.test_file == "test_subset/test_batch_first1000.bin"
    assert p.train_limit is None and p.test_limit is None
    per_epoch = 10_000 // p.batch_size
    assert (p.batch_size, per_epoch, cfg.rounds) == (128, 78, 20 * 78)
    assert cfg.eval_every == cfg.log_every == cfg.checkpoint_every == per_epoch
    assert cfg.importance.every == per_epoch and cfg.importance.scope == "joint"
    assert cfg.device == "cuda"
