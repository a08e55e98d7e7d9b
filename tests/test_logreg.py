"""Logistic regression (spec section 25): values, gradients, constants, splits, f*."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from scipy.optimize import minimize
from scipy.special import expit

from compress_bench.errors import ConfigError
from compress_bench.problems import build_problem
from compress_bench.problems.logreg import LogisticRegression, synthetic_logreg_data
from compress_bench.problems.reference import cached_reference
from compress_bench.problems.splits import split_indices


def make(features, labels, n=1, split="contiguous", l2=0.1, seed=0, **kw):
    shards = split_indices(np.asarray(labels), n, split, seed)
    return LogisticRegression(features, labels, shards, l2, np.zeros(features.shape[1]), "t", **kw)


def numpy_objective(features, labels, shards, l2):
    """An independent float64 NumPy implementation of f (spec 25), for cross-checks."""

    def f(x):
        total, grad = 0.0, np.zeros_like(x)
        for rows in shards:
            z = labels[rows] * (features[rows] @ x)
            total += np.mean(np.logaddexp(0, -z)) + 0.5 * l2 * x @ x
            grad += -(features[rows].T @ (labels[rows] * expit(-z))) / len(rows) + l2 * x
        return total / len(shards), grad / len(shards)

    return f


SPEC_A = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
SPEC_B = np.array([1.0, -1.0, 1.0])


def test_spec_worked_example():
    p = make(SPEC_A, SPEC_B)
    loss, grad = p.full_loss_and_grad(torch.zeros(2, dtype=torch.float64))
    assert float(loss) == pytest.approx(math.log(2), abs=1e-10)
    np.testing.assert_allclose(grad.numpy(), [-1 / 3, 0.0], atol=1e-12)
    assert p.smoothness == pytest.approx(0.35, abs=1e-12)
    loss, grad = p.full_loss_and_grad(torch.tensor([1.0, -1.0], dtype=torch.float64))
    assert float(loss) == pytest.approx(0.5398901852, abs=1e-9)
    np.testing.assert_allclose(grad.numpy(), [-0.1563138071, -0.1770195262], atol=1e-9)


def test_gradient_matches_central_differences():
    features, labels = synthetic_logreg_data(120, 6, seed=3, label_noise=0.5)
    p = make(features, labels, n=4, split="iid")
    gen = np.random.default_rng(1)
    for _ in range(5):
        x = torch.from_numpy(gen.standard_normal(6))
        _, grad = p.full_loss_and_grad(x)
        h = 1e-6
        fd = np.array(
            [
                (
                    float(p.full_loss_and_grad(x + h * e)[0])
                    - float(p.full_loss_and_grad(x - h * e)[0])
                )
                / (2 * h)
                for e in torch.eye(6, dtype=torch.float64)
            ]
        )
        np.testing.assert_allclose(grad.numpy(), fd, rtol=1e-6, atol=1e-9)


def test_batched_workers_equal_independent_numpy_objective_with_unequal_shards():
    features, labels = synthetic_logreg_data(103, 5, seed=4, label_noise=0.3)
    shards = split_indices(labels, 7, "iid", 0)  # 103 = 7 * 14 + 5: unequal shards
    p = LogisticRegression(features, labels, shards, 0.2, np.zeros(5), "t")
    f = numpy_objective(features, labels, shards, 0.2)
    x = np.linspace(-1, 1, 5)
    loss, grad = p.full_loss_and_grad(torch.from_numpy(x))
    ref_loss, ref_grad = f(x)
    assert float(loss) == pytest.approx(ref_loss, rel=1e-13)
    np.testing.assert_allclose(grad.numpy(), ref_grad, rtol=1e-12, atol=1e-15)
    # each worker at its own point
    X = torch.from_numpy(np.random.default_rng(0).standard_normal((7, 5)))
    losses, grads = p.loss_and_grad(X)
    for i, rows in enumerate(shards):
        li, gi = numpy_objective(features, labels, [rows], 0.2)(X[i].numpy())
        assert float(losses[i]) == pytest.approx(li, rel=1e-13)
        np.testing.assert_allclose(grads[i].numpy(), gi, rtol=1e-12, atol=1e-15)


def test_smoothness_bounds_gradient_differences():
    features, labels = synthetic_logreg_data(200, 8, seed=5, label_noise=0.5)
    p = make(features, labels, n=3, split="iid")
    gen = np.random.default_rng(2)
    worst = 0.0
    for _ in range(1000):
        x, y = (torch.from_numpy(3 * gen.standard_normal(8)) for _ in range(2))
        gx, gy = p.full_loss_and_grad(x)[1], p.full_loss_and_grad(y)[1]
        worst = max(worst, float((gx - gy).norm() / (x - y).norm()))
    assert worst <= p.smoothness * (1 + 1e-12)
    # L is the exact curvature bound: at x = 0 every sigmoid'(0) = 1/4, so the Hessian's top
    # eigenvalue equals L there.
    H = p.hessian(torch.zeros(8, dtype=torch.float64))
    assert float(torch.linalg.eigvalsh(H)[-1]) == pytest.approx(p.smoothness, rel=1e-12)


@pytest.mark.parametrize("split", ["iid", "label_sorted", "contiguous", "file_order"])
@pytest.mark.parametrize("n", [1, 3, 7])
def test_splits_partition_the_samples(split, n):
    labels = np.array([1.0, -1.0] * 25 + [1.0] * 3)
    shards = split_indices(labels, n, split, seed=11)
    assert len(shards) == n
    np.testing.assert_array_equal(np.sort(np.concatenate(shards)), np.arange(len(labels)))
    if split in ("iid", "label_sorted", "contiguous"):
        sizes = [len(s) for s in shards]
        assert max(sizes) - min(sizes) <= 1 and sizes == sorted(sizes, reverse=True)
    if split == "file_order":
        assert [len(s) for s in shards[:-1]] == [len(labels) // n] * (n - 1)


def test_label_sorted_split_is_heterogeneous_and_iid_is_seeded():
    labels = np.array([1.0, -1.0] * 50)
    shards = split_indices(labels, 2, "label_sorted", seed=0)
    assert set(labels[shards[0]]) == {-1.0} and set(labels[shards[1]]) == {1.0}
    a, b = split_indices(labels, 4, "iid", 0), split_indices(labels, 4, "iid", 0)
    c = split_indices(labels, 4, "iid", 1)
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert not all(np.array_equal(x, y) for x, y in zip(a, c, strict=True))
    np.testing.assert_array_equal(
        a[0], np.array_split(np.random.default_rng(0).permutation(100), 4)[0]
    )


def test_more_workers_than_samples_is_a_config_error():
    with pytest.raises(ConfigError, match="more than the 3 samples"):
        split_indices(SPEC_B, 4, "iid", 0)


def test_reference_matches_scipy_lbfgs_on_an_independent_objective(tmp_path):
    features, labels = synthetic_logreg_data(300, 10, seed=6, label_noise=0.5)
    shards = split_indices(labels, 3, "iid", 0)
    p = LogisticRegression(features, labels, shards, 0.05, np.zeros(10), "t", cache_dir=tmp_path)
    ref = p.reference()
    assert ref.grad_norm <= 1e-10
    f = numpy_objective(features, labels, shards, 0.05)
    scipy_result = minimize(
        f, np.zeros(10), jac=True, method="L-BFGS-B", options={"gtol": 1e-12, "ftol": 0}
    )
    assert ref.fstar == pytest.approx(scipy_result.fun, abs=1e-12)
    assert ref.fstar <= scipy_result.fun + 1e-15
    np.testing.assert_allclose(ref.xstar, scipy_result.x, atol=1e-6)
    # the second problem object reads the cache instead of solving again
    cached = list(tmp_path.glob("reference-*.json"))
    assert len(cached) == 1
    again = LogisticRegression(
        features, labels, shards, 0.05, np.zeros(10), "t", cache_dir=tmp_path
    )
    assert cached_reference(again, tmp_path) == ref


def test_mushrooms_constants(mushrooms_dir, monkeypatch, tmp_path):
    monkeypatch.setenv("COMPRESS_BENCH_CACHE", str(tmp_path))
    cfg = OmegaConf.create(
        {"name": "mushrooms", "l2": 0.1, "split": "iid", "split_seed": None, "init": "zeros"}
    )
    p = build_problem(cfg, 1, 0, torch.device("cpu"), torch.float64, mushrooms_dir)
    assert (p.d, p.n_workers) == (112, 1)
    assert p.smoothness - 0.1 == pytest.approx(2.586214, abs=5e-7)
    ref = p.reference()
    assert ref.grad_norm <= 1e-10
    assert list(tmp_path.joinpath("reference").glob("reference-*.json"))  # the user's cache
    assert not list(mushrooms_dir.joinpath("mushrooms").glob("reference-*"))  # not the data
    loss, grad = p.full_loss_and_grad(torch.tensor(ref.xstar, dtype=torch.float64))
    assert float(loss) == pytest.approx(ref.fstar, abs=1e-15)


def test_random_init_is_seeded():
    cfg = OmegaConf.create(
        {
            "name": "synthetic_logreg",
            "l2": 0.1,
            "split": "iid",
            "split_seed": None,
            "init": "random",
            "n_samples": 50,
            "dim": 4,
            "data_seed": 0,
            "label_noise": 0.5,
        }
    )

    def x0(seed):
        return build_problem(cfg, 2, seed, "cpu", torch.float64).initial_point()

    assert torch.equal(x0(0), x0(0)) and not torch.equal(x0(0), x0(1))
    assert float(x0(0).norm()) > 0


@pytest.mark.parametrize("n", [1, 5])
def test_sparse_and_dense_storage_agree(n):
    features, labels = synthetic_logreg_data(97, 9, seed=8, label_noise=0.5)
    features[np.abs(features) < 1.5] = 0.0  # about 87% zeros
    shards = split_indices(labels, n, "iid", 0)
    dense, sparse = (
        LogisticRegression(features, labels, shards, 0.1, np.zeros(9), "t", storage=s)
        for s in ("dense", "sparse")
    )
    assert LogisticRegression(features, labels, shards, 0.1, np.zeros(9), "t").storage == "sparse"
    X = torch.from_numpy(np.random.default_rng(0).standard_normal((n, 9)))
    for a, b in zip(dense.loss_and_grad(X), sparse.loss_and_grad(X), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-13, atol=1e-15)
    torch.testing.assert_close(dense.grad(X), sparse.grad(X), rtol=1e-13, atol=1e-15)
    assert dense.smoothness == pytest.approx(sparse.smoothness, rel=1e-14)
