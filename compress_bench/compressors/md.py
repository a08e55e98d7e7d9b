"""The thesis's importance-based family: coordinates chosen by an importance vector w.

Every operator first runs the importance solver (``importance.py``, spec section 12) for all
workers at once, then selects k = floor(ratio d) coordinates of each worker's input x:

  md_stochastic        S drawn by successive sampling without replacement, prob. prop. to w
  md_greedy            S = the k largest w_i
  md_greedy_weighted   S = the k largest w_i, values weighted by w
  md_weighted_greedy   S = the k largest |w_i x_i|, values weighted by w

Defaults follow the thesis code (spec 27.2): no d/k factor, and the weighted operators scale
the selected weights to sum to ratio * d (unfloored). Variants: ``scale="dk"`` multiplies the
unweighted forms by d/k; ``weights="integer_k"`` scales the selected weights to sum to the
integer k (the thesis ResNet18 notebook); ``weights="slides"`` uses the weight (d/k) w_i.
Bits: k (32 + ceil(log2 d)) per worker per round (the server does not know w, so indices
travel); the solver costs ``importance.steps`` local gradient evaluations per worker per round
and no bits.
Reference: Khafizov, "Adaptive compression in distributed optimization", BSc thesis (MIPT,
2024); METHODS.md sections 12-16.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch

from compress_bench.compressors.base import (
    FLOAT_BITS,
    Compressor,
    Message,
    RoundContext,
    check_ratio,
    check_scale,
    index_bits,
    k_of,
)
from compress_bench.compressors.importance import ImportanceSolver
from compress_bench.compressors.registry import register_compressor
from compress_bench.compressors.selection import top_k_mask
from compress_bench.rng import Streams

WEIGHTINGS = ("code", "integer_k", "slides")
# Keys of zero-weight coordinates in successive sampling: below every log w + Gumbel of a
# positive weight (log w >= -745 in float64, Gumbel noise >= -4), random among themselves.
_FILL_KEY = -1.0e4


def successive_sampling_mask(w: torch.Tensor, k: int, u: torch.Tensor) -> torch.Tensor:
    """k indices per row drawn one after another without replacement, each with probability
    proportional to w among those left (``rng.choice(d, k, replace=False, p=w)`` semantics).

    Gumbel-top-k: the k largest log w_i + G_i with G_i = -log(-log u_i) i.i.d. Gumbel are
    distributed exactly as successive sampling. Rows with fewer than k positive weights take
    all of them and fill up with a uniform random subset of the rest (spec 13, CHOICE).
    """
    tiny = torch.finfo(u.dtype).tiny
    gumbel = -torch.log(-torch.log(u.clamp(min=tiny)))
    keys = torch.where(w > 0, torch.log(w) + gumbel, _FILL_KEY + u)
    return top_k_mask(keys, k)


def weighted_values(
    G: torch.Tensor, w: torch.Tensor, kept: torch.Tensor, k: int, ratio: float, weights: str
) -> torch.Tensor:
    """w-weighted values on the kept set: (ratio d) w_i / sum_S w_j (code), k w_i / sum_S w_j
    (integer_k: the thesis ResNet18 notebook, spec 12 thesis_resnet) or (d/k) w_i (slides)."""
    d = G.shape[1]
    w_kept = torch.where(kept, w, torch.zeros((), dtype=w.dtype, device=w.device))
    if weights in ("code", "integer_k"):
        # the floor only matters when every kept weight underflowed to 0 (then all are 0)
        total = w_kept.sum(dim=1, keepdim=True).clamp_min(torch.finfo(w.dtype).tiny)
        # the convex thesis code sums the weights to the unfloored ratio d; its ResNet18
        # notebook to the integer k of the tensor (ceil(ratio numel) there)
        scale = ratio * d if weights == "code" else float(k)
        factor = scale * w_kept / total
    else:
        factor = (d / k) * w_kept
    return factor * G


class _ImportanceCompressor(Compressor):
    """Shared machinery: the solver, its per-worker log-weights as state, the message."""

    unbiased: ClassVar[bool] = False
    deterministic: ClassVar[bool] = True
    needs_objective: ClassVar[bool] = True  # the importance solver evaluates f_i

    def __init__(self, *, ratio: float, importance: dict[str, Any] | None = None):
        self.ratio = check_ratio(ratio)
        self.solver = ImportanceSolver(**dict(importance or {}))

    def init_state(self, n_workers: int, d: int, device: torch.device, dtype: torch.dtype):
        return {"log_weights": None}

    def _k(self, d: int) -> int:
        return k_of(self, d)

    def importance(
        self, G: torch.Tensor, state: Any, ctx: RoundContext, rng: Streams | None = None
    ) -> torch.Tensor:
        """The log-weights z, (n, d), w = softmax(z): the solver's on the rounds it runs
        (``importance.every``), the last ones in between, or those of a joint solve."""
        if ctx is not None and ctx.log_weights is not None:
            return ctx.log_weights
        previous = state["log_weights"]
        if ctx is not None and not self.solver.due(previous, ctx.round_index):
            return previous
        if ctx is None or ctx.objective is None or ctx.x is None or ctx.lr is None:
            raise ValueError(f"{self.name} needs the round's objective, x and lr (RoundContext)")
        return self.solver.solve(previous, ctx.x, G, ctx.lr, ctx.objective, rng)

    def compress(
        self, G: torch.Tensor, state: Any, rng: Streams, ctx: RoundContext
    ) -> tuple[Message, Any]:
        z = self.importance(G, state, ctx, rng)
        w = torch.softmax(z, dim=1)
        d = G.shape[1]
        k = self._k(d)
        kept = self.select(G, w, k, rng)
        values = self.values(G, w, kept)
        values = torch.where(kept, values, torch.zeros((), dtype=G.dtype, device=G.device))
        if k == d:
            return Message.dense(values), {"log_weights": z}
        # every selection rule keeps exactly k per row: a fixed size, counted on the host
        message = Message.of_fixed_size(values, k, k * index_bits(d), kept=kept)
        return message, {"log_weights": z}

    def select(self, G: torch.Tensor, w: torch.Tensor, k: int, rng: Streams) -> torch.Tensor:
        raise NotImplementedError

    def values(self, G: torch.Tensor, w: torch.Tensor, kept: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def sent_count(self, d: int) -> int:
        return self._k(d)

    def expected_bits(self, d: int) -> int:
        k = self._k(d)
        return FLOAT_BITS * d if k == d else k * (FLOAT_BITS + index_bits(d))


class _Unweighted(_ImportanceCompressor):
    def __init__(self, *, ratio: float, scale: str = "none", importance=None):
        super().__init__(ratio=ratio, importance=importance)
        self.scale = check_scale(scale)

    def values(self, G, w, kept):
        d = G.shape[1]
        k = self._k(d)
        return G * (d / k) if self.scale == "dk" and k < d else G

    def lr_factor(self, d: int) -> float:
        return self._k(d) / d if self.scale == "dk" else 1.0


class _Weighted(_ImportanceCompressor):
    def __init__(self, *, ratio: float, weights: str = "code", importance=None):
        super().__init__(ratio=ratio, importance=importance)
        if weights not in WEIGHTINGS:
            raise ValueError(f"weights must be 'code', 'integer_k' or 'slides', got {weights!r}")
        self.weights = weights

    def values(self, G, w, kept):
        return weighted_values(G, w, kept, self._k(G.shape[1]), self.ratio, self.weights)

    def lr_factor(self, d: int) -> float:
        # the slides' weights shrink the update by about 1/k (w on the simplex): spec 20
        return self._k(d) / d if self.weights == "slides" else 1.0


@register_compressor
class MDStochastic(_Unweighted):
    """MD Stochastic (spec 13): S of size k by successive sampling without replacement with
    probabilities proportional to w (Gumbel-top-k); C(x) = sum_{i in S} x_i e_i (``scale="dk"``:
    times d/k). Given w, the unscaled form is in B1(pi_min, 1), B2(pi_min, 1), B3(1/pi_min) with
    pi_i = P(i in S); no uniform constant. Bits: k (32 + ceil(log2 d))."""

    name: ClassVar[str] = "md_stochastic"
    label: ClassVar[str] = "MD Stochastic"
    colour: ClassVar[str | None] = "#9467bd"
    deterministic: ClassVar[bool] = False

    def select(self, G, w, k, rng):
        return successive_sampling_mask(w, k, rng.uniform(G.shape[1], dtype=w.dtype))


@register_compressor
class MDGreedy(_Unweighted):
    """MD Greedy (spec 14): S = the k largest w_i (ties to the smaller index);
    C(x) = sum_{i in S} x_i e_i (``scale="dk"``: times d/k). A mask chosen without looking at |x|:
    no class constant. Deterministic given w. Bits: k (32 + ceil(log2 d))."""

    name: ClassVar[str] = "md_greedy"
    label: ClassVar[str] = "MD Greedy"
    colour: ClassVar[str | None] = "#2ca02c"

    def select(self, G, w, k, rng):
        return top_k_mask(w, k)


@register_compressor
class MDGreedyWeighted(_Weighted):
    """MD Greedy Weighted (spec 15): S = the k largest w_i;
    C(x) = sum_{i in S} (ratio d w_i / sum_{j in S} w_j) x_i e_i (``weights="code"``, default),
    with k in place of ratio d (``weights="integer_k"``, the thesis ResNet18 notebook) or
    (d/k) sum_{i in S} w_i x_i e_i (``weights="slides"``). No class constant.
    Bits: k (32 + ceil(log2 d))."""

    name: ClassVar[str] = "md_greedy_weighted"
    label: ClassVar[str] = "MD Greedy Weighted"
    colour: ClassVar[str | None] = "#e6ab02"

    def select(self, G, w, k, rng):
        return top_k_mask(w, k)


@register_compressor
class MDWeightedGreedy(_Weighted):
    """MD Weighted Greedy (spec 16; the thesis's preferred operator): S = the k largest
    |w_i x_i|; values weighted as MD Greedy Weighted. Given w with w_min > 0 the slides form is in
    B2(w_min^2 / w_max, (d/k) w_max). Bits: k (32 + ceil(log2 d))."""

    name: ClassVar[str] = "md_weighted_greedy"
    label: ClassVar[str] = "MD Weighted Greedy"
    colour: ClassVar[str | None] = "#c51b7d"

    def select(self, G, w, k, rng):
        return top_k_mask((w * G).abs(), k)
