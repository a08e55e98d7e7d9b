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

Some workers alone (``workers=``, :meth:`for_workers`: a torch.distributed rank's part): the
problem stores and multiplies only those workers' shards, padded to the whole problem's m_max
so that each worker's products have the whole problem's shapes, and gives their rows of the
whole problem's results bit for bit; ``n_workers`` is len(workers). Two details keep the bits:
one held worker of several is multiplied as a batch of two (:meth:`_bmm`), and the per-row
functions (sigmoid, softplus, the row sums: O(m) per worker against the products' O(m d))
run on a zero (n, m) tensor with the held rows in place (:meth:`_rowwise`). What depends on
every worker stays the whole problem's: L, f*, the ``fingerprint`` (and so the cached f*),
``constants()``'s L_max, the storage that ``auto`` picks; ``worker_smoothness`` is the held
workers' L_i. Minibatches keep the simulator's data order: every round draws the whole
problem's (n, m_max) keys from the one data-order stream and keeps the held workers' rows, so
every rank draws the same numbers (a stream per worker would spare the other workers' keys,
but would change the minibatches, hence the numbers, of every existing run).
"""

from __future__ import annotations

import hashlib
import warnings
from collections.abc import Callable, Sequence
from functools import partial

import numpy as np
import torch
import torch.nn.functional as F

from compress_bench.problems.base import Constants, Problem, Reference
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
        workers: Sequence[int] | None = None,
    ):
        """``shards``: every worker's rows; ``workers``: hold and evaluate only these
        workers (the module docstring), None: all of them."""
        self.name = name
        self.features = np.asarray(features, dtype=np.float64)
        self.labels = np.asarray(labels, dtype=np.float64)
        self.shards = [np.asarray(s) for s in shards]
        self.l2 = float(l2)
        self.d = self.features.shape[1]
        self.device = torch.device(device)
        self.dtype = dtype
        self.cache_dir = cache_dir
        #: the workers held (None: all); ``n_workers`` counts them, ``self.shards`` has all
        self.workers = self._check_workers(workers, len(self.shards))
        held = self.shards if self.workers is None else [self.shards[i] for i in self.workers]
        self.n_workers = len(held)
        self._m_max = max(len(s) for s in self.shards)
        signed, weights = self._padded(self.features, self.labels, held, self._m_max)
        self._signed_rows = torch.as_tensor(signed, dtype=dtype, device=self.device)
        self._row_weights = torch.as_tensor(weights, dtype=dtype, device=self.device)
        self._held = (
            None if self.workers is None else torch.tensor(self.workers, device=self.device)
        )
        self._x0 = torch.as_tensor(x0, dtype=dtype, device=self.device)
        self.storage = self._choose_storage(storage, *self._nonzeros(signed))
        if self.storage == "sparse":
            self._sparse_rows, self._sparse_cols = self._block_diagonal(self._signed_rows)
        self._smoothness: float | None = None
        self._worker_smoothness: torch.Tensor | None = None  # every worker's L_i
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
            (len(self.shards), self._m_max),
            generator=self._order,
            device=self.device,
            dtype=torch.float64,
        )
        if self._held is not None:  # every worker's keys drawn: the simulator's data order
            keys = keys[self._held]
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

    def for_workers(self, workers: Sequence[int]) -> LogisticRegression:
        """Workers ``workers`` (indices among all n) of this problem alone (module docstring):
        the same data, storage, constants, f*, layout and minibatch size, and a copy of the
        data-order stream at its current state."""
        part = self._rebuilt(self.device, self.dtype, self.cache_dir, workers)
        part._smoothness, part._worker_smoothness = self._smoothness, self._worker_smoothness
        part._reference, part._layout = self._reference, self._layout
        if self.minibatch:
            order = torch.Generator(device=self.device)
            order.set_state(self._order.get_state())
            part.use_minibatches(self.batch_size, order)
        return part

    @staticmethod
    def _check_workers(workers: Sequence[int] | None, n: int) -> tuple[int, ...] | None:
        if workers is None:
            return None
        held = tuple(int(i) for i in workers)
        if not held or len(set(held)) != len(held) or not all(0 <= i < n for i in held):
            raise ValueError(f"workers {held} must be distinct workers among 0..{n - 1}")
        return held

    def _require_whole(self, what: str) -> None:
        if self.workers is not None:
            raise ValueError(
                f"{what} needs every worker's shard; this problem holds workers "
                f"{self.workers} only (float64_twin() is the whole problem)"
            )

    def _nonzeros(self, signed: np.ndarray) -> tuple[int, int]:
        """Non-zeros and size of the whole problem's padded shards (``signed`` when it holds
        every worker), for ``storage=auto``."""
        if self.workers is None:
            return np.count_nonzero(signed), signed.size
        nonzeros = sum(
            np.count_nonzero(self.labels[rows, None] * self.features[rows]) for rows in self.shards
        )
        return nonzeros, len(self.shards) * self._m_max * self.d

    @staticmethod
    def _padded(features, labels, shards, m_max: int | None = None):
        m_max = max(len(s) for s in shards) if m_max is None else m_max
        signed = np.zeros((len(shards), m_max, features.shape[1]))
        weights = np.zeros((len(shards), m_max))
        for i, rows in enumerate(shards):
            signed[i, : len(rows)] = labels[rows, None] * features[rows]
            weights[i, : len(rows)] = 1.0 / len(rows)
        return signed, weights

    @staticmethod
    def _choose_storage(storage: str, nonzeros: int, size: int) -> str:
        if storage not in STORAGES:
            raise ValueError(f"storage must be one of {', '.join(STORAGES)}, got {storage!r}")
        if storage != "auto":
            return storage
        density = nonzeros / max(size, 1)
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
        """-b_j a_j^T x_i for every row j of worker i's shard (or minibatch), for the held
        workers: (n_workers, m)."""
        self.evaluations += 1
        if self._batch is not None:
            return -self._bmm(self._batch[0], X.unsqueeze(2)).squeeze(2)
        if self.storage == "sparse":
            flat = self._sparse_rows @ X.reshape(-1)
            return -flat.view(self._row_weights.shape)
        return -self._bmm(self._signed_rows, X.unsqueeze(2)).squeeze(2)

    def _bmm(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """torch.bmm(a, b), each worker's product computed as the whole problem computes it.
        torch sends a batch of one product to another BLAS routine than a batch of several
        (MKL's gemm, not its batched gemm: the last bits differ), so a part that holds one
        worker of several multiplies a batch of two copies of it (stride 0, no copy of the
        data; twice its arithmetic, still 2/n of the whole's) and keeps the first."""
        if a.shape[0] == 1 and len(self.shards) > 1:
            return torch.bmm(a.expand(2, -1, -1), b.expand(2, -1, -1))[:1]
        return torch.bmm(a, b)

    def _rowwise(self, t: torch.Tensor, fn: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
        """fn(t) for a row-by-row fn (sigmoid, softplus, a sum over each row), applied as the
        whole problem applies it: a part puts its rows in place in a zero (n, ...) tensor
        first and keeps its rows of the result. torch computes an element of a vectorised
        function with vector or scalar code (the last bits differ) by its place in the
        tensor (the tail of a vector loop is scalar), and may split a reduction by the
        tensor's shape."""
        if self._held is None:
            return fn(t)
        whole = t.new_zeros((len(self.shards), *t.shape[1:]))
        whole[self._held] = t
        return fn(whole)[self._held]

    def _weights(self) -> torch.Tensor:
        return self._row_weights if self._batch is None else self._batch[1]

    def _grad_from_margins(self, X: torch.Tensor, margins: torch.Tensor) -> torch.Tensor:
        coeff = self._weights() * self._rowwise(margins, torch.sigmoid)
        if self._batch is not None:
            data = self._bmm(coeff.unsqueeze(1), self._batch[0]).squeeze(1)
        elif self.storage == "sparse":
            data = (self._sparse_cols @ coeff.reshape(-1)).view(X.shape)
        else:
            data = self._bmm(coeff.unsqueeze(1), self._signed_rows).squeeze(1)
        return -data + self.l2 * X

    def loss_and_grad(self, X: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        margins = self._margins(X)
        ridge = 0.5 * self.l2 * self._rowwise(X * X, partial(torch.sum, dim=1))
        softplus = self._rowwise(margins, partial(F.softplus, threshold=_SOFTPLUS_THRESHOLD))
        losses = self._rowwise(self._weights() * softplus, partial(torch.sum, dim=1))
        return losses + ridge, self._grad_from_margins(X, margins)

    def grad(self, X: torch.Tensor) -> torch.Tensor:
        return self._grad_from_margins(X, self._margins(X))

    def full_loss_and_grad(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """f(x) and grad f(x) over all the data (never a minibatch): the reference solve's."""
        self._require_whole("full_loss_and_grad")
        losses, grads = self.shard_loss_and_grad(x.expand(self.n_workers, -1))
        return losses.mean(), grads.mean(dim=0)

    def hessian(self, x: torch.Tensor) -> torch.Tensor:
        """Hessian of f at x, (d, d): (1/n) sum_i (1/m_i) sum_j s_j(1-s_j) a_j a_j^T + lambda I."""
        self._require_whole("hessian")
        margins = -torch.einsum("nmd,d->nm", self._signed_rows, x)
        s = torch.sigmoid(margins)
        curv = self._row_weights * s * (1 - s) / self.n_workers
        H = torch.einsum("nm,nmd,nme->de", curv, self._signed_rows, self._signed_rows)
        return H + self.l2 * torch.eye(self.d, dtype=x.dtype, device=x.device)

    def initial_point(self) -> torch.Tensor:
        return self._x0.clone()

    # --- constants -------------------------------------------------------------------------

    def _gram_eigmax(self) -> torch.Tensor:
        """lambda_max(A_i^T A_i / m_i) per worker and of their average, in float64; every
        worker's, also when this problem holds some of them (from a one-off copy of all the
        shards, made as the whole problem makes it: the same numbers)."""
        rows, w = self._signed_rows, self._row_weights
        if self.workers is not None:
            signed, weights = self._padded(self.features, self.labels, self.shards, self._m_max)
            rows = torch.as_tensor(signed, dtype=self.dtype, device=self.device)
            w = torch.as_tensor(weights, dtype=self.dtype, device=self.device)
        rows, w = rows.to(torch.float64), w.to(torch.float64)
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
        """The held workers' L_i."""
        if self._worker_smoothness is None:
            self._constants()
        if self.workers is None:
            return self._worker_smoothness
        return self._worker_smoothness[list(self.workers)]

    def constants(self) -> Constants:
        """L and max_i L_i over every worker, whichever workers this problem holds."""
        if self._worker_smoothness is None:
            self._constants()
        return Constants(float(self.smoothness), float(self._worker_smoothness.max()))

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
        """The same problem in float64 on the CPU (used for the reference solution), with every
        worker's shard."""
        if self.workers is None and self.dtype == torch.float64 and self.device.type == "cpu":
            return self
        return self._rebuilt(torch.device("cpu"), torch.float64, None, None)

    def _rebuilt(self, device, dtype, cache_dir, workers) -> LogisticRegression:
        """This problem's data and storage on ``device`` in ``dtype``, for ``workers``."""
        return LogisticRegression(
            self.features,
            self.labels,
            self.shards,
            self.l2,
            self._x0.cpu().double().numpy(),
            self.name,
            device,
            dtype,
            cache_dir,
            storage=self.storage,
            workers=workers,
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
