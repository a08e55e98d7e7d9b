"""Exact "largest k" selection with the spec's tie rule (section 0.4), batched over rows."""

from __future__ import annotations

import torch


def top_k_mask(scores: torch.Tensor, k: int) -> torch.Tensor:
    """Boolean mask (n, d) of the k largest scores of each row; ties go to the smaller index.

    ``torch.topk`` finds the k-th largest value v of each row but returns an arbitrary subset
    of tied entries; so every score > v is kept, and the entries equal to v are taken in index
    order until the row has k. O(d) work per row beyond the topk itself.
    """
    n, d = scores.shape
    if k <= 0:
        return torch.zeros_like(scores, dtype=torch.bool)
    if k >= d:
        return torch.ones_like(scores, dtype=torch.bool)
    kth = torch.topk(scores, k, dim=1, sorted=False).values.amin(dim=1, keepdim=True)
    at_least = scores >= kth
    if bool((at_least.sum(dim=1) == k).all()):  # no tie straddles the threshold: done
        return at_least
    above = scores > kth
    tied = scores == kth
    room = k - above.sum(dim=1, keepdim=True)
    return above | (tied & (tied.cumsum(dim=1) <= room))
