"""On-device data pipeline (compress_bench.data.pipeline): shards, sampler, augmentation."""

from __future__ import annotations

import io

import pytest
import torch

from compress_bench.data.pipeline import (
    CIFAR10_MEAN,
    CIFAR10_STD,
    ImageData,
    WorkerSampler,
    normalise,
    random_crop_flip,
    shard,
)
from compress_bench.errors import ConfigError


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _images(n: int = 8, seed: int = 0) -> torch.Tensor:
    # Values 1..255 so that the zero padding is told apart from any pixel.
    return torch.randint(1, 256, (n, 3, 32, 32), generator=_gen(seed), dtype=torch.uint8)


# --- shards ---------------------------------------------------------------------------------


def test_iid_shards_are_disjoint_and_cover() -> None:
    labels = torch.arange(103) % 10
    shards = shard(labels, 4, "iid", _gen())
    assert shards.shape == (4, 25) and shards.dtype == torch.int64
    flat = shards.reshape(-1)
    assert len(torch.unique(flat)) == 100  # disjoint
    assert bool(((flat >= 0) & (flat < 103)).all())
    even = shard(torch.arange(100) % 10, 4, "iid", _gen())
    assert torch.equal(torch.sort(even.reshape(-1)).values, torch.arange(100))  # cover
    assert not torch.equal(even.reshape(-1), torch.arange(100))  # shuffled
    assert torch.equal(even, shard(torch.arange(100) % 10, 4, "iid", _gen()))  # reproducible


def test_label_sorted_shards() -> None:
    labels = torch.tensor([3, 1, 2, 1, 0, 3, 2, 0, 1, 2, 0])
    shards = shard(labels, 2, "label_sorted")
    assert shards.shape == (2, 5)
    flat = shards.reshape(-1)
    assert bool((labels[flat][1:] >= labels[flat][:-1]).all())  # sorted by label
    assert flat.tolist() == [4, 7, 10, 1, 3, 8, 2, 6, 9, 0]  # stable: file order in a class


@pytest.mark.parametrize(
    ("n_workers", "split"), [(0, "iid"), (12, "iid"), (2, "dirichlet"), (True, "iid")]
)
def test_bad_shard_arguments(n_workers, split) -> None:
    with pytest.raises(ConfigError):
        shard(torch.arange(11) % 3, n_workers, split, _gen())


# --- sampler --------------------------------------------------------------------------------


def test_sampler_batches_come_from_each_workers_shard() -> None:
    shards = shard(torch.arange(60) % 10, 3, "iid", _gen())
    sampler = WorkerSampler(shards, 4, _gen(1))
    batch = sampler.next()
    assert batch.shape == (3, 4) and batch.dtype == torch.int64
    for worker in range(3):
        assert set(batch[worker].tolist()) <= set(shards[worker].tolist())


def test_every_epoch_shows_each_image_once() -> None:
    shards = torch.arange(20).reshape(2, 10)
    sampler = WorkerSampler(shards, 5, _gen())
    epochs = []
    for _ in range(3):
        seen = torch.cat([sampler.next(), sampler.next()], dim=1)
        assert torch.equal(torch.sort(seen, dim=1).values, shards)
        epochs.append(seen)
    assert not torch.equal(epochs[0], epochs[1])  # reshuffled each epoch
    assert sampler.epoch == 3.0


def test_epoch_counting_across_a_boundary() -> None:
    sampler = WorkerSampler(torch.arange(10).reshape(1, 10), 4, _gen())
    assert sampler.epoch == 0.0
    seen = [sampler.next() for _ in range(5)]
    assert sampler.epoch == pytest.approx(2.0) and sampler.images_seen == 20
    first = torch.cat(seen, dim=1)[0]
    assert sorted(first[:10].tolist()) == list(range(10))  # batch 3 straddles epochs 0 and 1
    assert sorted(first[10:].tolist()) == list(range(10))
    sampler.next()
    assert sampler.epoch == pytest.approx(2.4)


def test_sampler_state_round_trip() -> None:
    shards = shard(torch.arange(50) % 10, 2, "iid", _gen())
    gen = _gen(7)
    sampler = WorkerSampler(shards, 6, gen)
    for _ in range(3):
        sampler.next()
    buffer = io.BytesIO()
    torch.save({"sampler": sampler.get_state(), "generator": gen.get_state()}, buffer)
    first = [sampler.next() for _ in range(9)]  # crosses two epoch boundaries
    epoch = sampler.epoch

    buffer.seek(0)
    saved = torch.load(buffer)
    gen.set_state(saved["generator"])
    sampler.set_state(saved["sampler"])
    again = [sampler.next() for _ in range(9)]
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))
    assert sampler.epoch == epoch


def test_sampler_resumes_in_a_fresh_object() -> None:
    shards = shard(torch.arange(40) % 10, 4, "iid", _gen())
    gen = _gen(3)
    sampler = WorkerSampler(shards, 3, gen)
    for _ in range(5):
        sampler.next()
    state, gen_state = sampler.get_state(), gen.get_state()
    expected = torch.stack([sampler.next() for _ in range(7)])

    other_gen = _gen(99)
    resumed = WorkerSampler(shards, 3, other_gen)  # draws its own first order, then restores
    other_gen.set_state(gen_state)
    resumed.set_state(state)
    assert torch.equal(torch.stack([resumed.next() for _ in range(7)]), expected)
    assert resumed.epoch == sampler.epoch
    with pytest.raises(ValueError, match="shards"):
        WorkerSampler(shards[:2], 3, _gen()).set_state(state)


# --- augmentation ---------------------------------------------------------------------------


def test_crop_is_a_slice_of_the_padded_image_and_flip_is_torch_flip() -> None:
    images = _images(16)
    out = random_crop_flip(images, _gen(5), padding=4)
    assert out.shape == images.shape and out.dtype == torch.uint8
    replay = _gen(5)  # the documented order of draws: dy, dx, coins
    dy = torch.randint(0, 9, (16,), generator=replay)
    dx = torch.randint(0, 9, (16,), generator=replay)
    coins = torch.randint(0, 2, (16,), generator=replay)
    padded = torch.nn.functional.pad(images, (4, 4, 4, 4))
    for b in range(16):
        crop = padded[b, :, dy[b] : dy[b] + 32, dx[b] : dx[b] + 32]
        assert torch.equal(out[b], torch.flip(crop, dims=[-1]) if coins[b] else crop)
    assert 0 < int(coins.sum()) < 16 and len(set(dy.tolist())) > 1


def test_flip_alone_and_identity() -> None:
    images = _images(12)
    assert torch.equal(random_crop_flip(images, _gen(), padding=0, flip=False), images)
    out = random_crop_flip(images, _gen(2), padding=0)
    flipped = [torch.equal(o, torch.flip(i, dims=[-1])) for o, i in zip(out, images, strict=True)]
    kept = [torch.equal(o, i) for o, i in zip(out, images, strict=True)]
    assert all(f or k for f, k in zip(flipped, kept, strict=True))
    assert any(flipped) and any(kept)


def test_augmentation_is_deterministic_for_a_generator_state() -> None:
    images = _images(32)
    a = random_crop_flip(images, _gen(11))
    assert torch.equal(a, random_crop_flip(images, _gen(11)))
    assert not torch.equal(a, random_crop_flip(images, _gen(12)))


def test_normalise_matches_the_formula() -> None:
    images = _images(4)
    x = normalise(images, CIFAR10_MEAN, CIFAR10_STD)
    assert x.dtype == torch.float32 and x.shape == images.shape
    mean = torch.tensor(CIFAR10_MEAN, dtype=torch.float64).reshape(1, 3, 1, 1)
    std = torch.tensor(CIFAR10_STD, dtype=torch.float64).reshape(1, 3, 1, 1)
    expected = (images.double() / 255 - mean) / std
    assert torch.allclose(x.double(), expected, rtol=0, atol=2e-6)


def test_image_data_batches() -> None:
    images, labels = _images(20), torch.arange(20) % 10
    cifar = ImageData.cifar10(images, labels)
    indices = torch.tensor([[0, 5, 7], [1, 2, 19]])
    x, y = cifar.batch(indices, _gen(4))
    assert x.shape == (2, 3, 3, 32, 32) and x.dtype == torch.float32
    assert torch.equal(y, labels[indices])
    augmented = random_crop_flip(images[indices.reshape(-1)], _gen(4))
    assert torch.equal(x.reshape(6, 3, 32, 32), normalise(augmented, CIFAR10_MEAN, CIFAR10_STD))
    with pytest.raises(ValueError, match="generator"):
        cifar.batch(indices)

    digits = ImageData.mnist(torch.randint(0, 256, (10, 1, 28, 28), dtype=torch.uint8), labels[:10])
    x, y = digits.batch(torch.tensor([[3, 4]]))  # normalisation only: no generator needed
    assert x.shape == (1, 2, 1, 28, 28)
    assert torch.allclose(x[0], (digits.images[3:5].float() / 255 - 0.1307) / 0.3081, atol=1e-5)
    with pytest.raises(ValueError):
        ImageData(images.float(), labels, CIFAR10_MEAN, CIFAR10_STD)
