"""l2-regularised logistic regression, batched over workers (spec section 25).

f_i(x) = (1/m_i) sum_{j in D_i} log(1 + exp(-b_j a_j^T x)) + (lambda/2) ||x||^2,
f(x)   = (1/n) sum_i f_i(x),
grad f_i(x) = -(1/m_i) sum_j b_j sigma(-b_j a_j^T x) a_j + lambda x.

The shards are stored as one zero-padded tensor ``Z`` of shape (n, m_max, d) whose rows are
b_j a_j, with per-row weights 1/m_i (0 on padding), so all n local losses and gradients are
two batched matrix products.

Minibatches (``batch_size`` = b, :meth:`use_minibatches`): each round :meth:`next_batches`
draws, for every worker, b distinct rows of its shard uniformly at random (b-nice sampling,
independent across rounds and workers, from the problem's data-order stream), and the oracle
(``loss_and_grad``, ``grad``: the method's gradients and the importance solver's) then sums
over those rows with weights 1/b: an unbiased estimate of grad f_i, so DCGD becomes
distributed compressed SGD. The metrics (loss, loss gap, gradient norm at x^k) come from
:meth:`shard_loss_and_grad`, over all the data and uncounted in ``grad_evals``; f* and the
constants always use all the data (:meth:`full_loss_and_grad`).
"""

from __future__ import annotations

import hashlib
import warnings

import numpy as np
import torch
import torch.nn.functional as F

from compress_bench.problems.base import Problem, Reference
from compress_bench.problems.reference import cached_reference

# softplus(t) = log(1 + e^t); above this threshold torch returns t itself. At 50 the neglected
# log1p(e^-50) ~ 2e-22 is below float64 resolution, so the loss is exact to the last digit.
_SOFTPLUS_THRESHOLD = 50.0
STORAGES = ("auto", "dense", "sparse")
# Below this share of non-zeros a CSR matrix-vector product beats the dense one (mushrooms:
# 0.19, about 1.8x faster on CPU); "auto" switches there.
SPARSE_DENSITY = 0.3


class LogisticRegression(Problem):
    def __init__(
        self,
        features: np.ndarray,
        labels: np.ndarray,
        shards: list[np.ndarray],
        l2: float,
        x0: np.ndarray,
        name: str,
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float64,
        cache_dir=None,
        storage: str = "auto",
    ):
        self.name = name
        self.features = np.asarray(features, dtype=np.float64)
        self.labels = np.asarray(labels, dtype=np.float64)
        self.shards = [np.asarray(s) for s in shards]
        self.l2 = float(l2)
        self.d = self.features.shape[1]
        self.n_workers = len(self.shards)
        self.device = torch.device(device)
        self.dtype = dtype
        self.cache_dir = cache_dir
        signed, weights = self._padded(self.features, self.labels, self.shards)
        self._signed_rows = torch.as_tensor(signed, dtype=dtype, device=self.device)
        self._row_weights = torch.as_tensor(weights, dtype=dtype, device=self.device)
        self._x0 = torch.as_tensor(x0, dtype=dtype, device=self.device)
        self.storage = self._choose_storage(storage, signed)
        if self.storage == "sparse":
            self._sparse_rows, self._sparse_cols = self._block_diagonal(self._signed_rows)
        self._smoothness: float | None = None
        self._worker_smoothness: torch.Tensor | None = None
        self._reference: Reference | None = None
        self.batch_size: int | None = None
        self._order: torch.Generator | None = None
        self._batch: tuple[torch.Tensor, torch.Tensor] | None = None  # rows (n, b, d), weights

    # --- minibatches -----------------------------------------------------------------------

    def use_minibatches(self, batch_size: int, generator: torch.Generator) -> None:
        """Sum over ``batch_size`` random rows per worker and round (see the module doc);
        the rows are drawn from ``generator`` (on the problem's device)."""
        smallest = min(len(s) for s in self.shards)
        if not 1 <= batch_size <= smallest:
            raise ValueError(
                f"problem.batch_size={batch_size} must be between 1 and the smallest shard's "
                f"{smallest} rows"
            )
        self.batch_size, self._order = int(batch_size), generator

    @property
    def minibatch(self) -> bool:
        return self.batch_size is not None

    def next_batches(self) -> None:
        """Every worker's rows of this round: the b largest of uniform keys over its shard
        (padding keyed below every row), i.e. a uniform b-subset."""
        keys = torch.rand(
            self._row_weights.shape, generator=self._order, device=self.device, dtype=torch.float64
        )
        keys = torch.where(self._row_weights > 0, keys, -1.0)
        positions = keys.topk(self.batch_size, dim=1).indices.sort(dim=1).values
        rows = torch.gather(self._signed_rows, 1, positions.unsqueeze(2).expand(-1, -1, self.d))
        weights = torch.full(
            positions.shape, 1.0 / self.batch_size, dtype=self.dtype, device=self.device
        )
        self._batch = (rows, weights)

    def shard_loss_and_grad(self, X: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Every worker's loss and gradient over its whole shard, whatever the minibatches;
        not counted as an oracle call (it serves the metrics and f*)."""
        batch, self._batch = self._batch, None
        calls = self.evaluations
        try:
            return self.loss_and_grad(X)
        finally:
            self._batch, self.evaluations = batch, calls

    def get_data_state(self) -> dict:
        return {"order": self._order.get_state()} if self.minibatch else {}

    def set_data_state(self, state: dict) -> None:
        if self.minibatch:
            self._order.set_state(state["order"])
            self._batch = None

    @staticmethod
    def _padded(features, labels, shards):
        m_max = max(len(s) for s in shards)
        signed = np.zeros((len(shards), m_max, features.shape[1]))
        weights = np.zeros((len(shards), m_max))
        for i, rows in enumerate(shards):
            signed[i, : len(rows)] = labels[rows, None] * features[rows]
            weights[i, : len(rows)] = 1.0 / len(rows)
        return signed, weights

    @staticmethod
    def _choose_storage(storage: str, signed: np.ndarray) -> str:
        if storage not in STORAGES:
            raise ValueError(f"storage must be one of {', '.join(STORAGES)}, got {storage!r}")
        if storage != "auto":
            return storage
        density = np.count_nonzero(signed) / max(signed.size, 1)
        return "sparse" if density <= SPARSE_DENSITY else "dense"

    @staticmethod
    def _block_diagonal(signed: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The shards as one block-diagonal CSR matrix of shape (n m_max, n d), and its
        transpose: worker i's rows meet only worker i's d columns, so one sparse
        matrix-vector product evaluates every worker at its own point."""
        n, m_max, d = signed.shape
        worker, row, col = signed.nonzero(as_tuple=True)
        values = signed[worker, row, col]
        indices = torch.stack([worker * m_max + row, worker * d + col])
        shape = (n * m_max, n * d)
        coo = torch.sparse_coo_tensor(indices, values, shape, check_invariants=True).coalesce()
        with warnings.catch_warnings():  # "CSR support is in beta": we use only CSR @ vector
            warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
            return coo.to_sparse_csr(), coo.t().coalesce().to_sparse_csr()

    # --- oracle ----------------------------------------------------------------------------

    def _margins(self, X: torch.Tensor) -> torch.Tensor:
        """-b_j a_j^T x_i for every row j of worker i's shard (or minibatch): (n, m)."""
        self.evaluations += 1
        if self._batch is not None:
            return -torch.bmm(self._batch[0], X.unsqueeze(2)).squeeze(2)
        if self.storage == "sparse":
            flat = self._sparse_rows @ X.reshape(-1)
            return -flat.view(self._row_weights.shape)
        return -torch.bmm(self._signed_rows, X.unsqueeze(2)).squeeze(2)

    def _weights(self) -> torch.Tensor:
        return self._row_weights if self._batch is None else self._batch[1]

    def _grad_from_margins(self, X: torch.Tensor, margins: torch.Tensor) -> torch.Tensor:
        coeff = self._weights() * torch.sigmoid(margins)
        if self._batch is not None:
            data = torch.bmm(coeff.unsqueeze(1), self._batch[0]).squeeze(1)
        elif self.storage == "sparse":
            data = (self._sparse_cols @ coeff.reshape(-1)).view(X.shape)
        else:
            data = torch.bmm(coeff.unsqueeze(1), self._signed_rows).squeeze(1)
        return -data + self.l2 * X

    def loss_and_grad(self, X: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        margins = self._margins(X)
        ridge = 0.5 * self.l2 * (X * X).sum(dim=1)
        losses = (self._weights() * F.softplus(margins, threshold=_SOFTPLUS_THRESHOLD)).sum(1)
        return losses + ridge, self._grad_from_margins(X, margins)

    def grad(self, X: torch.Tensor) -> torch.Tensor:
        return self._grad_from_margins(X, self._margins(X))

    def full_loss_and_grad(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """f(x) and grad f(x) over all the data (never a minibatch): the reference solve's."""
        losses, grads = self.shard_loss_and_grad(x.expand(self.n_workers, -1))
        return losses.mean(), grads.mean(dim=0)

    def hessian(self, x: torch.Tensor) -> torch.Tensor:
        """Hessian of f at x, (d, d): (1/n) sum_i (1/m_i) sum_j s_j(1-s_j) a_j a_j^T + lambda I."""
        margins = -torch.einsum("nmd,d->nm", self._signed_rows, x)
        s = torch.sigmoid(margins)
        curv = self._row_weights * s * (1 - s) / self.n_workers
        H = torch.einsum("nm,nmd,nme->de", curv, self._signed_rows, self._signed_rows)
        return H + self.l2 * torch.eye(self.d, dtype=x.dtype, device=x.device)

    def initial_point(self) -> torch.Tensor:
        return self._x0.clone()

    # --- constants -------------------------------------------------------------------------

    def _gram_eigmax(self) -> torch.Tensor:
        """lambda_max(A_i^T A_i / m_i) per worker and of their average, in float64."""
        rows = self._signed_rows.to(torch.float64)
        w = self._row_weights.to(torch.float64)
        grams = torch.einsum("nm,nmd,nme->nde", w, rows, rows)  # A_i^T A_i / m_i
        per_worker = torch.linalg.eigvalsh(grams)[:, -1]
        overall = torch.linalg.eigvalsh(grams.mean(0))[-1]
        return per_worker, overall

    def _constants(self) -> None:
        per_worker, overall = self._gram_eigmax()
        # The logistic loss has curvature at most 1/4, hence the factor.
        self._worker_smoothness = (per_worker / 4 + self.l2).cpu()
        self._smoothness = float(overall / 4 + self.l2)

    @property
    def smoothness(self) -> float:
        if self._smoothness is None:
            self._constants()
        return self._smoothness

    @property
    def worker_smoothness(self) -> torch.Tensor:
        if self._worker_smoothness is None:
            self._constants()
        return self._worker_smoothness

    @property
    def strong_convexity(self) -> float:
        return self.l2

    # --- reference solution ----------------------------------------------------------------

    def fingerprint(self) -> str:
        """A hash of everything f depends on: data, shards, lambda."""
        h = hashlib.sha256()
        h.update(np.ascontiguousarray(self.features).tobytes())
        h.update(np.ascontiguousarray(self.labels).tobytes())
        for rows in self.shards:
            h.update(np.ascontiguousarray(rows, dtype=np.int64).tobytes())
            h.update(b"|")
        h.update(repr(self.l2).encode())
        return h.hexdigest()[:32]

    def float64_twin(self) -> LogisticRegression:
        """The same problem in float64 on the CPU (used for the reference solution)."""
        if self.dtype == torch.float64 and self.device.type == "cpu":
            return self
        return LogisticRegression(
            self.features,
            self.labels,
            self.shards,
            self.l2,
            self._x0.cpu().double().numpy(),
            self.name,
            storage=self.storage,
        )

    def reference(self) -> Reference:
        if self._reference is None:
            self._reference = cached_reference(self, self.cache_dir)
        return self._reference


def synthetic_logreg_data(
    n_samples: int, dim: int, seed: int, label_noise: float
) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian features, labels sign(a^T x_true + noise) in {-1, +1}; fully determined by seed."""
    rng = np.random.default_rng(seed)
    features = rng.standard_normal((n_samples, dim))
    x_true = rng.standard_normal(dim)
    score = features @ x_true / np.sqrt(dim) + label_noise * rng.standard_normal(n_samples)
    return features, np.where(score >= 0, 1.0, -1.0)
