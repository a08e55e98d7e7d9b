"""Worker random streams (compress_bench.rng): seeding, independence from n, the raw-bits
stream natural compression draws from, and saving/restoring stream positions."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import stats

from compress_bench.rng import WorkerRNG

WIDTHS = [(1, torch.int32), (23, torch.int32), (52, torch.int64)]


@pytest.mark.parametrize(("bits", "dtype"), WIDTHS)
@pytest.mark.parametrize("d", [0, 1, 7, 64])
def test_random_bits_shape_dtype_range(bits, dtype, d):
    r = WorkerRNG(0, 3).random_bits(d, bits)
    assert r.shape == (3, d) and r.dtype == dtype and r.is_contiguous()
    if d:
        assert r.min() >= 0 and r.max() < 2**bits


def test_random_bits_rows_do_not_depend_on_the_number_of_workers():
    one = WorkerRNG(5, 1).random_bits(33, 23)
    four = WorkerRNG(5, 4).random_bits(33, 23)
    assert torch.equal(four[:1], one)
    assert not torch.equal(four[0], four[1])
    assert torch.equal(WorkerRNG(5, 4).random_bits(33, 23), four)  # seeded
    assert not torch.equal(WorkerRNG(6, 4).random_bits(33, 23), four)


def test_random_bits_every_bit_is_a_fair_coin_and_values_are_uniform(draws=200_000):
    r = WorkerRNG(1, 1).random_bits(draws, 23)[0].numpy()
    ones = ((r[:, None] >> np.arange(23)) & 1).sum(axis=0)
    # each of the 23 bits is 1 with probability 1/2 (5 sigma)
    assert (np.abs(ones - draws / 2) <= 5 * np.sqrt(draws / 4)).all()
    counts = np.bincount(r >> 19, minlength=16)  # top 4 bits: 16 equal cells
    assert stats.chisquare(counts).pvalue > 1e-4
    # distinct values as the birthday problem predicts (about 2,400 repeats; a short cycle or a
    # coarse generator would repeat far more)
    n_values = 2**23
    expected = n_values * -np.expm1(draws * np.log1p(-1 / n_values))
    assert abs(len(np.unique(r)) - expected) <= 5 * np.sqrt(draws - expected)


def test_random_bits_consecutive_draws_continue_the_stream():
    rng = WorkerRNG(2, 2)
    first, second = rng.random_bits(10, 52), rng.random_bits(10, 52)
    assert not torch.equal(first, second)
    both = WorkerRNG(2, 2).random_bits(20, 52)
    assert torch.equal(both, torch.cat([first, second], dim=1))


def test_state_round_trip_restores_both_kinds_of_stream():
    rng = WorkerRNG(3, 2)
    rng.uniform(5), rng.random_bits(5, 23)
    state = rng.get_state()
    expected = (rng.uniform(9), rng.random_bits(9, 23))
    rng.uniform(100), rng.random_bits(100, 52)
    rng.set_state(state)
    assert torch.equal(rng.uniform(9), expected[0])
    assert torch.equal(rng.random_bits(9, 23), expected[1])


@pytest.mark.parametrize("bits", [0, 64])
def test_random_bits_rejects_widths_it_cannot_hold(bits):
    with pytest.raises(ValueError, match="bits must be in"):
        WorkerRNG(0, 1).random_bits(4, bits)


def test_tensor_gaussians_are_per_worker_round_and_tensor():
    """Worker i's draws for (round, tensor) are the same whichever workers are built and
    whichever tensors share the call (block i T + t), differ between tensors and rounds, and
    need no saved position (fresh each call)."""
    import numpy as np

    from compress_bench.rng import Streams

    full = Streams(5, 3).tensor_gaussians(2, (4,), 3, 2)
    assert full.shape == (3, 3, 2)
    assert np.array_equal(Streams(5, [1]).tensor_gaussians(2, (4,), 3, 2)[0], full[1])
    assert np.array_equal(Streams(5, 3).tensor_gaussians(2, (4,), 3, 2), full)
    both = Streams(5, 3).tensor_gaussians(2, (7, 4), 3, 2)  # tensors 7 and 4 in one call
    assert np.array_equal(both[1::2], full)
    assert not np.array_equal(Streams(5, 3).tensor_gaussians(2, (5,), 3, 2), full)
    assert not np.array_equal(Streams(5, 3).tensor_gaussians(3, (4,), 3, 2), full)
