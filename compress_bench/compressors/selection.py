"""Exact "largest k" selection with the spec's tie rule (section 0.4), batched over rows.

Two algorithms give the same mask:

* every row at once (the portable path, and CPU rows with ``d < LARGE_D``): ``torch.topk``
  finds the k-th largest value of every row, then ties at that value are resolved in index
  order, branch-free (a cumulative count of the tied entries), with no host sync;
* long rows on the CPU (``d >= LARGE_D``, one row at a time; a CPU fast path, see
  :mod:`.paths`): a bracket ``[lo, hi]`` around the k-th
  largest value is read off a fixed random sample of the row, one pass over the row counts the
  scores above ``hi`` and collects the (few) candidates inside the bracket, and the exact k-th
  value is found among the candidates only. If the bracket misses the k-th value (rare on any
  data; forced by some adversarial inputs) the row falls back to the small-row algorithm, so
  the result never depends on the sample, only the time does.

The sample positions come from a private generator with a fixed seed: selection is
deterministic and never draws from the workers' random streams.

NaN scores are not supported (the simulator never produces them): the mask is then unspecified
and may hold fewer than k entries; no error is raised.
"""

from __future__ import annotations

import math
from functools import lru_cache

import torch

from compress_bench.compressors.paths import cpu_fast

#: Rows at least this long use the sample-and-bracket algorithm (measured crossover on a
#: 2-core CPU: about 2^17 to 2^18).
LARGE_D = 1 << 17
#: Sample size of the bracket estimate, d / 16 clipped to [MIN_SAMPLE, MAX_SAMPLE] (positions
#: drawn with replacement).
MIN_SAMPLE = 1 << 12
MAX_SAMPLE = 1 << 16
#: Half-width of the bracket in binomial standard deviations of the sample rank; a correct
#: bracket misses with probability about 1e-6 per row (then the exact fallback runs).
BRACKET_Z = 5.0
_SAMPLE_SEED = 0x5E1EC7

# count_true reads a bool mask as int64 words, 8 bytes each holding 0 or 1; summing 255 words
# keeps every byte lane below 256, so the lane sums can be read back as bytes and added up.
_LANES = 8
_WORDS = 255
_CHUNK = _LANES * _WORDS


def count_true(mask: torch.Tensor) -> int:
    """Number of True entries of a 1-D bool tensor (exact; several times faster than
    ``mask.sum()`` on the CPU for long masks)."""
    n = mask.numel()
    if mask.device.type != "cpu" or n < 16 * _CHUNK or not mask.is_contiguous():
        return int(mask.sum())
    head = (-mask.storage_offset()) % _LANES  # int64 view needs an 8-byte aligned start
    body = (n - head) // _CHUNK * _CHUNK
    lanes = mask[head : head + body].view(torch.int64).view(-1, _WORDS).sum(dim=1)
    total = int(lanes.view(torch.uint8).sum())
    if head:
        total += int(mask[:head].sum())
    if head + body < n:
        total += int(mask[head + body :].sum())
    return total


def nonzero_1d(mask: torch.Tensor) -> torch.Tensor:
    """Indices (int64, ascending) of the True entries of a 1-D bool tensor; on the CPU the
    mask is scanned as int64 words, 8 entries at a time, which is about twice as fast as
    ``mask.nonzero()`` when True entries are sparse."""
    n = mask.numel()
    if mask.device.type != "cpu" or n < 16 * _CHUNK or not mask.is_contiguous():
        return mask.nonzero().view(-1)
    head = (-mask.storage_offset()) % _LANES
    body = (n - head) // _LANES * _LANES
    words = mask[head : head + body].view(torch.int64)
    hit = words.nonzero().view(-1)  # the words holding a True entry
    # their bytes, in memory order (entry 8 w + j is byte j of word w on any byte order)
    lanes = words[hit].view(torch.uint8).view(-1, _LANES).nonzero()
    positions = hit[lanes[:, 0]] * _LANES + (lanes[:, 1] + head)
    parts = [positions]
    if head:
        parts.insert(0, mask[:head].nonzero().view(-1))
    if head + body < n:
        parts.append(mask[head + body :].nonzero().view(-1) + (head + body))
    return torch.cat(parts) if len(parts) > 1 else positions


def top_k_mask(scores: torch.Tensor, k: int) -> torch.Tensor:
    """Boolean mask (n, d) of the k largest scores of each row; ties go to the smaller index.

    Exactly the rule of spec 0.4 (``np.lexsort((arange(d), -score))``, first ``min(k, d)``):
    every score above the k-th largest value v is kept, and the entries equal to v are taken in
    index order until the row has k. ``k <= 0`` selects nothing, ``k >= d`` everything. Any
    floating dtype, CPU or CUDA. On the CPU, rows with ``d >= LARGE_D`` use the
    sample-and-bracket algorithm (same result, O(d) passes instead of a full top-k); the
    portable path (:mod:`.paths`) never reads a value back to the host.
    """
    n, d = scores.shape
    if k <= 0:
        return torch.zeros_like(scores, dtype=torch.bool)
    if k >= d:
        return torch.ones_like(scores, dtype=torch.bool)
    fast = cpu_fast(scores)
    if not fast:
        return _top_k_mask_small(scores, k, early_exit=False)
    if d >= LARGE_D:
        if n == 1:
            return _top_k_row_large(scores[0], k).view(1, d)
        out = torch.empty(n, d, dtype=torch.bool, device=scores.device)
        for i in range(n):
            out[i] = _top_k_row_large(scores[i], k)
        return out
    return _top_k_mask_small(scores, k)


def _top_k_mask_small(scores: torch.Tensor, k: int, early_exit: bool = True) -> torch.Tensor:
    """``torch.topk`` finds the k-th largest value v of each row but returns an arbitrary
    subset of tied entries; so every score > v is kept, and the entries equal to v are taken in
    index order until the row has k. Needs ``0 < k < d``. ``early_exit`` (CPU) skips the tie
    passes when no tie straddles v, which a host sync decides; without it the tie rule runs
    on every row (the same mask)."""
    kth = torch.topk(scores, k, dim=1, sorted=False).values.amin(dim=1, keepdim=True)
    if early_exit:
        at_least = scores >= kth
        if bool((at_least.sum(dim=1) == k).all()):  # no tie straddles the threshold: done
            return at_least
    above = scores > kth
    tied = scores == kth
    room = k - above.sum(dim=1, keepdim=True)
    return above | (tied & (tied.cumsum(dim=1) <= room))


@lru_cache(maxsize=16)
def _sample_positions(d: int, size: int, device: torch.device) -> torch.Tensor:
    """``size`` positions in [0, d), drawn with replacement from a fixed-seed generator."""
    gen = torch.Generator().manual_seed(_SAMPLE_SEED)
    return torch.randint(0, d, (size,), generator=gen).to(device)


def _bracket(sample: torch.Tensor, k: int, d: int) -> tuple[float | None, float | None]:
    """Values ``(lo, hi)`` expected to hold the k-th largest of the row between them, read off
    the sorted sample at the ranks ``k m / d -+ Z sd``; None stands for -inf / +inf."""
    m = sample.numel()
    p = k / d
    centre = p * m
    half = BRACKET_Z * math.sqrt(m * p * (1.0 - p)) + 2.0
    i_hi = math.floor(centre - half)  # 0-based ranks in descending order
    i_lo = math.ceil(centre + half)
    # one top-k of the sample holds both ranks (half the time of two kthvalue calls): lo is
    # its smallest value, hi the one of descending rank i_hi among them (kthvalue counts the
    # smallest from 1)
    if i_lo < m:
        top = torch.topk(sample, i_lo + 1, sorted=False).values
        lo = float(top.min())
    else:
        top, lo = sample, None
    hi = float(torch.kthvalue(top, top.numel() - i_hi).values) if i_hi >= 0 else None
    return lo, hi


def _top_k_row_large(row: torch.Tensor, k: int, sample_size: int | None = None) -> torch.Tensor:
    """The top-k mask (d,) of one row, ``0 < k < d``, by sample, bracket and candidates.

    Exact for any d and sample size (tests use small ones to force bracket misses)."""
    d = row.numel()
    row = row.contiguous()
    if sample_size is None:
        sample_size = min(max(d // 16, MIN_SAMPLE), MAX_SAMPLE)
    positions = _sample_positions(d, sample_size, row.device)
    lo, hi = _bracket(row.take(positions), k, d)
    if hi is None:  # k so small that the bracket is open upwards
        mask = torch.zeros(d, dtype=torch.bool, device=row.device)
        n_above = 0
    else:
        mask = row > hi
        n_above = count_true(mask)
        if n_above >= k:  # the k-th largest is above hi
            return _top_k_mask_small(row.view(1, d), k).view(d)
    in_bracket = ~mask if lo is None else torch.logical_xor(row >= lo, mask)  # lo <= s <= hi
    candidates = nonzero_1d(in_bracket)  # in index order
    r = k - n_above  # rank of the k-th largest among the candidates
    if r > candidates.numel():  # the k-th largest is below lo
        return _top_k_mask_small(row.view(1, d), k).view(d)
    values = row[candidates]
    kth = torch.kthvalue(values, values.numel() - r + 1).values  # r-th largest
    above = values > kth
    mask[candidates[above]] = True
    tied = candidates[values == kth]  # in index order: the smaller indices win
    mask[tied[: r - count_true(above)]] = True
    return mask


def uniform_subset_mask(d: int, k: int, generator: torch.Generator) -> torch.Tensor:
    """(d,) bool mask of a uniformly random k-subset of ``range(d)`` (without replacement),
    drawn from ``generator`` only (on the generator's device); deterministic given its state.

    O(d / 8) random draws instead of d: every entry is first kept independently with
    probability ``level / 256 <= k / d`` (one random byte per entry, eight per 64-bit draw);
    the size of that set is then corrected to exactly k by adding (or removing) a uniformly
    random subset of the missing (surplus) size, chosen among the distinct hits of uniform
    index draws. Exact: every step commutes with relabelling the coordinates, and the final
    size is always k, so every k-subset is equally likely. For ``k > d / 2`` the complement is
    drawn. ``k <= 0``: empty; ``k >= d``: everything (no draw in either case).
    """
    device = generator.device
    if k <= 0:
        return torch.zeros(d, dtype=torch.bool, device=device)
    if k >= d:
        return torch.ones(d, dtype=torch.bool, device=device)
    if 2 * k > d:
        return ~uniform_subset_mask(d, d - k, generator)
    level = (256 * k) // d  # P(byte < level) = level / 256 <= k / d
    if level == 0:
        mask = torch.zeros(d, dtype=torch.bool, device=device)
        size = 0
    else:
        words = torch.empty((d + 7) // 8, dtype=torch.int64, device=device)
        words.random_(-(2**63), None, generator=generator)  # all 64 bits uniform
        mask = words.view(torch.uint8)[:d] < level
        size = count_true(mask)
    if size != k:
        _flip_uniform_subset(mask, size, k, generator)
    return mask


def _flip_uniform_subset(mask: torch.Tensor, size: int, k: int, generator: torch.Generator):
    """Bring the uniformly random set ``mask`` (``size`` entries) to exactly k entries in place:
    set ``k - size`` entries drawn uniformly among the unset ones, or clear ``size - k``
    drawn uniformly among the set ones.

    Uniform index draws that land in the pool (unset or set entries) are accumulated as a set
    until it holds enough entries; a uniformly random subset of it of the needed size is then
    flipped (a uniform subset of a uniformly random set is a uniform subset of the pool)."""
    d = mask.numel()
    add = size < k
    need = abs(k - size)
    pool_size = d - size if add else size
    pool = torch.empty(0, dtype=torch.int64, device=mask.device)
    while pool.numel() < need:
        missing = need - pool.numel()
        n_draws = math.ceil(1.25 * missing * d / pool_size) + 64
        draws = torch.randint(0, d, (n_draws,), generator=generator, device=mask.device)
        hits = draws[mask[draws] != add]
        pool = torch.unique(torch.cat([pool, hits]))
    order = torch.randperm(pool.numel(), generator=generator, device=mask.device)
    mask[pool[order[:need]]] = add
