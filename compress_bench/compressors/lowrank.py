"""Low-rank compressors: rank-r randomized SVD (spec 17) and PowerSGD (spec 18).

Both view a tensor of shape ``(s_0, s_1, ...)`` as the matrix ``M`` of shape
``(s_0, prod_{j>=1} s_j)`` (row-major: a conv kernel ``(out, in, kh, kw)`` is
``(out, in kh kw)``) and send two factors instead of ``M``: ``32 r_eff (m + c)`` bits instead of
``32 m c``. A tensor with ``ndim <= 1`` (a bias, a norm layer, logistic regression's x unless
``problem.matrix_shape`` is set) is sent dense and unchanged (32 bits per entry, spec 18): the
operator is then the identity. The shape comes from the layout, through
:meth:`Compressor.for_tensor` (``granularity=layer``) or :meth:`Compressor.for_vector` (the
whole vector seen as the problem's one tensor); built from a ratio alone the operator has no
shape and is the identity.

Batching. The maths (``lowrank_math.py``) acts on ``(..., m, c)`` batches, so every row of the
input (a worker, or, in a stacked ``layerwise`` call, a worker's copy of one of T tensors of
one shape) is one matrix of one ``matmul``/``qr``/``svd`` call. Random draws (rsvd's test
matrix, a fresh PowerSGD ``Q``) come from a fresh generator per (worker, round, tensor)
(``Streams.tensor_gaussians``), so a stacked call draws what one call per tensor draws, and a
checkpoint needs no stream position for them (the operators are ``stackable``, see Tags).

Messages. A low-rank message decodes to the (n, d) reconstruction (the simulator's fast path);
its wire format has the support ``factors`` (no indices: the receiver knows m, c, r): per
worker ``left`` (m x r) then ``right`` (c x r), float32, with values = ``left @ right^T``
(row-major), carried in ``Message.factors``.

No quantizer: a quantizer after a low-rank operator would round the reconstruction, not the
factors that travel; :class:`~compress_bench.compressors.chain.Chain` refuses the pair for a
matrix-shaped tensor.

References: Halko, Martinsson, Tropp (2011), "Finding structure with randomness"; Vogels,
Karimireddy, Jaggi (2019), "PowerSGD" (and its reference code, epfml/powersgd); METHODS.md
sections 17 and 18.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any, ClassVar

import torch

from compress_bench.compressors.base import (
    FLOAT_BITS,
    Compressor,
    Message,
    RoundContext,
    check_batch,
)
from compress_bench.compressors.lowrank_math import (
    ORTHOGONALIZATIONS,
    orthogonalize,
    power_sgd_collective,
    power_sgd_plan,
    randomized_svd,
    sketch_width,
)
from compress_bench.compressors.registry import register_compressor
from compress_bench.rng import Streams

FORMS = ("collective", "per_worker")


def _check_int(value: Any, name: str, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    return value


def _row_blocks(R: int, ctx: RoundContext | None) -> tuple[int, tuple]:
    """(n, tensors) of an input of R rows: row ``i T + t`` holds worker i's tensor
    ``tensors[t]`` (``ctx.group`` in a stacked call, else one tensor)."""
    tensors = ctx.tensors if ctx is not None else (0,)
    if R % len(tensors):
        raise ValueError(f"{R} rows do not split into the {len(tensors)} tensors of the call")
    return R // len(tensors), tensors


def fresh_gaussians(
    rng: Streams, ctx: RoundContext | None, R: int, rows: int, cols: int, like: torch.Tensor
) -> torch.Tensor:
    """(R, rows, cols) i.i.d. N(0, 1): row ``i T + t`` from worker i's generator for tensor
    ``tensors[t]`` in this round (``Streams.tensor_gaussians``), drawn on the host and copied
    to ``like``'s device in one copy (pinned and asynchronous on CUDA), so the kernels of a
    call do not grow with the tensors of a stacked group."""
    n, tensors = _row_blocks(R, ctx)
    if n != len(rng.workers):
        raise ValueError(f"{R} rows for {len(tensors)} tensors: the streams hold {n} workers?")
    round_index = ctx.round_index if ctx is not None else 0
    host = torch.from_numpy(rng.tensor_gaussians(round_index, tensors, rows, cols))
    if like.device.type == "cuda":
        host = host.pin_memory()
    return host.to(device=like.device, dtype=like.dtype, non_blocking=True)


class _LowRank(Compressor):
    """Shared machinery: the tensor's matrix view, the dense fallback, the message."""

    support: ClassVar[str] = "factors"
    stackable: ClassVar[bool] = True
    deterministic: ClassVar[bool] = False
    unbiased: ClassVar[bool] = False

    def __init__(self, *, ratio: float | None = None, rank: int = 2, shape=None):
        self.ratio = ratio  # ignored: the rank sets the size
        self.rank = _check_int(rank, "rank", 1)
        self.shape = None if shape is None else tuple(int(s) for s in shape)

    @classmethod
    def for_tensor(cls, shape: tuple[int, ...], ratio: float, **params: Any) -> Compressor:
        return cls(ratio=ratio, shape=shape, **params)

    @classmethod
    def for_vector(cls, shape: tuple[int, ...], ratio: float, **params: Any) -> Compressor:
        return cls(ratio=ratio, shape=shape, **params)

    def plan(self, d: int) -> tuple[int, int, int] | None:
        """(m, c, r_eff) when a tensor of d entries is sent as factors, None when dense."""
        if self.shape is None or len(self.shape) < 2:
            return None
        if math.prod(self.shape) != d:
            raise ValueError(
                f"tensor shape {self.shape} has {math.prod(self.shape)} entries, not {d}"
            )
        return self._plan()

    def _plan(self) -> tuple[int, int, int] | None:
        raise NotImplementedError

    def wire_support(self) -> str:
        return "dense" if self.shape is None or self._plan() is None else "factors"

    def sent_count(self, d: int) -> int:
        plan = self.plan(d)
        return d if plan is None else plan[2] * (plan[0] + plan[1])

    def expected_bits(self, d: int) -> int:
        return FLOAT_BITS * self.sent_count(d)

    def contraction(self, d: int) -> float:
        """The nominal delta = min(m, c)/r of the exact truncated SVD (spec 17, 18, 23: the
        step-size rules use it for rsvd and PowerSGD; neither has a uniform delta), 1 when
        the tensor is sent dense."""
        plan = self.plan(d)
        return 1.0 if plan is None else min(plan[0], plan[1]) / plan[2]

    @staticmethod
    def factor_message(left: torch.Tensor, right: torch.Tensor, R: int, d: int) -> Message:
        """The message sending ``left`` (R, m, r) and ``right`` (R, c, r): values
        ``left @ right^T`` row-major, ``r (m + c)`` float32 values per row."""
        values = (left @ right.mT).reshape(R, d)
        m, r = left.shape[-2], left.shape[-1]
        c = right.shape[-2]
        return Message.of_fixed_size(values, r * (m + c), 0, factors=(left, right))


@register_compressor
class RandomizedSVD(_LowRank):
    """Rank-r randomized SVD of each matrix-shaped tensor (spec 17; Halko, Martinsson, Tropp
    2011, the range finder with subspace iteration).

    ``Omega`` (c x l, ``l = min(r + oversampling, m, c)``) i.i.d. N(0, 1) from the worker's
    generator for the tensor and round (not torch.svd_lowrank, which draws from the global
    RNG); ``Q = qr(M Omega).Q``; ``power_iterations`` times ``Q = qr(M qr(M^T Q).Q).Q``;
    ``B = Q^T M = U~ Sigma V^T``; ``C(M) = (Q U~)_r Sigma_r V_r^T``. Keys ``compressor.rank``,
    ``compressor.oversampling`` (default 5) and ``compressor.power_iterations`` (default 1;
    with 0 the error reached 1.58x the Eckart-Young optimum where 1 stayed within 1.02x,
    spec 17). ``r >= min(m, c)`` or a vector: sent dense, unchanged.

    Bits: ``32 r_eff (m + c)`` per matrix (``U_r Sigma_r`` and ``V_r``). Class: no uniform
    delta (the randomized range has HMT's average-case bounds); the nominal
    ``delta = min(m, c)/r`` of the exact truncated SVD serves the step-size rules (spec 17).
    """

    name: ClassVar[str] = "rsvd"
    label: ClassVar[str] = "RSVD"
    colour: ClassVar[str | None] = "#8c564b"

    def __init__(
        self,
        *,
        ratio: float | None = None,
        rank: int = 2,
        oversampling: int = 5,
        power_iterations: int = 1,
        shape=None,
    ):
        super().__init__(ratio=ratio, rank=rank, shape=shape)
        self.oversampling = _check_int(oversampling, "oversampling", 0)
        self.power_iterations = _check_int(power_iterations, "power_iterations", 0)

    def _plan(self) -> tuple[int, int, int] | None:
        m, c = self.shape[0], math.prod(self.shape[1:])
        if self.rank >= min(m, c):
            return None
        return m, c, min(self.rank, sketch_width(m, c, self.rank, self.oversampling))

    def compress(
        self, G: torch.Tensor, state: Any, rng: Streams, ctx: RoundContext
    ) -> tuple[Message, Any]:
        R, d = check_batch(G)
        plan = self.plan(d)
        if plan is None:
            return Message.dense(G.clone()), state
        m, c, _ = plan
        ell = sketch_width(m, c, self.rank, self.oversampling)
        omega = fresh_gaussians(rng, ctx, R, c, ell, G)
        out = randomized_svd(
            G.reshape(R, m, c),
            self.rank,
            oversampling=self.oversampling,
            power_iterations=self.power_iterations,
            omega=omega,
        )
        return self.factor_message(out.left, out.right, R, d), state

    def __repr__(self) -> str:
        return (
            f"RandomizedSVD(rank={self.rank}, oversampling={self.oversampling}, "
            f"power_iterations={self.power_iterations}, shape={self.shape})"
        )


@register_compressor
class PowerSGD(_LowRank):
    """PowerSGD, rank r, one power iteration per round (spec 18; Vogels, Karimireddy, Jaggi
    2019; reference code epfml/powersgd).

    ``form=per_worker`` (for EF21 and DCGD, the proposal's form): worker i keeps its own
    ``Q_i``; ``P^ = orth(M Q_i)``, ``C(M) = P^ (M^T P^)^T``, then ``Q_i <- M^T P^``.
    ``form=collective`` (the paper's): ``Q`` is shared; ``P = mean_w M_w Q`` and
    ``Q_new = mean_w M_w^T P^`` are averaged across the workers inside the round through the
    communicator's ``all_reduce_mean``; worker w's decoded contribution is ``P^ P^T M_w`` (their
    mean is the paper's ``Delta = P^ Q_new^T``), so the generic error-feedback wrapper keeps the
    local error ``M_w - P^ P^T M_w`` (spec 18: the reference code's ``M_w - Delta`` gives the same
    model trajectory). ``method=ef compressor=power_sgd`` is the paper's algorithm.

    CHOICE switches, defaults the paper code's (spec 18): ``orthogonalization`` gram_schmidt
    (eps 1e-8; a zero column stays zero, so C(0) = 0) or qr; ``warm_start`` true (Q carried
    over, not re-orthogonalised; false draws a fresh Gaussian Q every round, which EF21 needs:
    warm-started, its residual is orthogonal to the carried subspace and it stalls, spec 18);
    ``min_compression_rate`` 0 (a tensor is compressed only if ``(m + c) r rate < m c``);
    ``start_round`` 0 (earlier rounds send every tensor dense). The initial Q: worker i's
    generator for the tensor (per_worker), the stream all workers share for the tensor
    (collective).

    Bits: ``32 r_eff (m + c)`` per compressed matrix, 32 per entry otherwise. Class: a
    projection (non-expansive, no uniform delta); nominal ``delta = min(m, c)/r``.
    """

    name: ClassVar[str] = "power_sgd"
    label: ClassVar[str] = "PowerSGD"
    colour: ClassVar[str | None] = "#e377c2"

    def __init__(
        self,
        *,
        ratio: float | None = None,
        rank: int = 2,
        form: str = "collective",
        orthogonalization: str = "gram_schmidt",
        warm_start: bool = True,
        min_compression_rate: float = 0,
        start_round: int = 0,
        shape=None,
    ):
        super().__init__(ratio=ratio, rank=rank, shape=shape)
        if form not in FORMS:
            raise ValueError(f"form must be one of {', '.join(FORMS)}, got {form!r}")
        if orthogonalization not in ORTHOGONALIZATIONS:
            raise ValueError(
                f"orthogonalization must be one of {', '.join(ORTHOGONALIZATIONS)}, "
                f"got {orthogonalization!r}"
            )
        if not isinstance(warm_start, bool):
            raise ValueError(f"warm_start must be true or false, got {warm_start!r}")
        if isinstance(min_compression_rate, bool) or not min_compression_rate >= 0:
            raise ValueError(f"min_compression_rate must be >= 0, got {min_compression_rate!r}")
        self.form = form
        self.orthogonalization = orthogonalization
        self.warm_start = warm_start
        self.min_compression_rate = float(min_compression_rate)
        self.start_round = _check_int(start_round, "start_round", 0)

    @property
    def collective(self) -> bool:  # type: ignore[override]
        return self.form == "collective"

    def _plan(self) -> tuple[int, int, int] | None:
        return power_sgd_plan(self.shape, self.rank, self.min_compression_rate)

    def init_state(self, n_workers: int, d: int, device: torch.device, dtype: torch.dtype):
        """``{"q": (n, c, r_eff), "drawn": False}``: Q is drawn in the first round that
        compresses (from the streams, which ``init_state`` does not see), so the state keeps
        one structure from the start (a method that sends its first round uncompressed, as
        EF21 does, checkpoints the same structure before and after)."""
        plan = self.plan(d)
        if plan is None:
            return None
        m, c, r = plan
        q = torch.zeros(n_workers, c, r, device=device, dtype=dtype)
        return {"q": q, "drawn": False}

    def _initial_q(self, rng: Streams, ctx, R: int, c: int, r: int, like: torch.Tensor):
        round_index = ctx.round_index if ctx is not None else 0
        if self.form == "per_worker":
            return fresh_gaussians(rng, ctx, R, c, r, like)
        n, tensors = _row_blocks(R, ctx)
        words = () if self.warm_start else (round_index,)
        shared = [
            torch.randn(
                c,
                r,
                generator=rng.all_workers_generator(t, *words),
                dtype=like.dtype,
                device=like.device,
            )
            for t in tensors
        ]
        return torch.stack(shared).repeat(n, 1, 1)  # row i T + t: tensor t's shared Q

    def compress(
        self, G: torch.Tensor, state: Any, rng: Streams, ctx: RoundContext, comm: Any = None
    ) -> tuple[Message, Any]:
        R, d = check_batch(G)
        plan = self.plan(d)
        round_index = ctx.round_index if ctx is not None else 0
        if plan is None:
            return Message.dense(G.clone()), state
        m, c, r = plan
        Q = state["q"]
        if not state["drawn"] or not self.warm_start:
            Q = self._initial_q(rng, ctx, R, c, r, G)
        if round_index < self.start_round:  # sent dense; Q kept for the first compressed round
            return Message.dense(G.clone()), {"q": Q, "drawn": True}
        M = G.reshape(R, m, c)
        if self.form == "per_worker":
            P_hat = orthogonalize(M @ Q, self.orthogonalization)
            Q_new = M.mT @ P_hat
            return self.factor_message(P_hat, Q_new, R, d), {"q": Q_new, "drawn": True}
        if comm is None:
            from compress_bench.comm import SimulatedCommunicator

            comm = SimulatedCommunicator()
        if getattr(comm, "all_gather_rows", None) is not None and not (ctx and ctx.group):
            return self._averaged_round(M, Q, comm, R, d)
        out = power_sgd_collective(
            M, Q, comm.all_reduce_mean, orthogonalization=self.orthogonalization
        )
        local_q = M.mT @ out.p_hat  # worker w's contribution P^ (M_w^T P^)^T = M_w - e_w
        state = {"q": out.q_new.contiguous(), "drawn": True}
        return self.factor_message(out.p_hat, local_q, R, d), state

    def _averaged_round(self, M: torch.Tensor, Q: torch.Tensor, comm: Any, R: int, d: int):
        """The collective round with a communicator that gathers rows (the DDP hook's):
        ``P`` by ``all_reduce_mean`` as in :func:`power_sgd_collective`, then every worker's
        ``M_w^T P^`` by one ``all_gather_rows``, from which ``Q_new`` (their mean) and the
        message's mean ``mean_w P^ (M_w^T P^)^T`` are computed here, with the simulator's
        operations (its numbers, bit for bit). The message then carries that mean
        (``Message.averaged``): the factors travel once, in the round, not again at the
        aggregation."""
        P_hat = orthogonalize(comm.all_reduce_mean(M @ Q), self.orthogonalization)
        local_q = M.mT @ P_hat
        every_q = comm.all_gather_rows(local_q)  # (n, c, r): every worker's, in worker order
        q_new = every_q.mean(dim=0, keepdim=True).expand_as(local_q)
        left = P_hat[:1].expand(every_q.shape[0], -1, -1).contiguous()
        averaged = (left @ every_q.mT).reshape(every_q.shape[0], d).mean(dim=0)
        message = replace(self.factor_message(P_hat, local_q, R, d), averaged=averaged)
        return message, {"q": q_new.contiguous(), "drawn": True}

    def __repr__(self) -> str:
        return (
            f"PowerSGD(rank={self.rank}, form={self.form!r}, "
            f"orthogonalization={self.orthogonalization!r}, warm_start={self.warm_start}, "
            f"min_compression_rate={self.min_compression_rate}, "
            f"start_round={self.start_round}, shape={self.shape})"
        )
