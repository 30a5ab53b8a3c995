"""Transforms: what they compute, reproducibility under a seed, and their errors."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

from nl_lightning.data import ArrayDataModule, Compose, Normalize, RandomNoise, RandomScale
from nl_lightning.data.stats import RunningMoments, feature_moments


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("transform", [RandomNoise(0.5), RandomScale(0.5, 2.0), Compose([RandomScale(), RandomNoise()])])
def test_random_transforms_are_reproducible_under_a_seed(transform):
    x = torch.randn(8, 5, 3)
    a, b, c = transform(x, _gen(1)), transform(x, _gen(1)), transform(x, _gen(2))
    torch.testing.assert_close(a, b)
    assert not torch.equal(a, c) and not torch.equal(a, x)


def test_random_noise_statistics():
    x = torch.zeros(2000, 50)
    noise = RandomNoise(std=0.3)(x, _gen())
    assert abs(noise.std().item() - 0.3) < 0.01 and abs(noise.mean().item()) < 0.01


def test_random_scale_is_one_factor_per_sample_within_range():
    x = torch.ones(100, 4, 3)
    out = RandomScale(0.8, 1.2)(x, _gen())
    per_sample = out.reshape(100, -1)
    assert torch.all(per_sample == per_sample[:, :1])
    assert per_sample.min() >= 0.8 and per_sample.max() <= 1.2


def test_normalize_matches_numpy_and_round_trips_state():
    x = np.random.default_rng(0).normal(3.0, 2.0, size=(64, 7, 5)).astype(np.float32)
    mean, std = feature_moments(np.array_split(x, 5))  # streaming, uneven chunks
    np.testing.assert_allclose(mean, x.reshape(-1, 5).mean(0), rtol=1e-6)
    np.testing.assert_allclose(std, x.reshape(-1, 5).std(0), rtol=1e-6)
    norm = Normalize()
    norm.set_stats(mean, std)
    out = norm(torch.from_numpy(x))
    np.testing.assert_allclose(out.numpy(), (x - x.reshape(-1, 5).mean(0)) / x.reshape(-1, 5).std(0), atol=1e-5)
    restored = Normalize()
    restored.load_state_dict(pickle.loads(pickle.dumps(norm.state_dict())))
    torch.testing.assert_close(restored(torch.from_numpy(x)), out)
    assert repr(restored) == repr(norm) != repr(Normalize([0.0] * 5, [1.0] * 5))


def test_running_moments_merge_is_stable_for_large_offsets():
    rng = np.random.default_rng(1)
    x = 1e6 + rng.standard_normal((10_000, 2))
    moments = RunningMoments()
    for chunk in np.array_split(x, 37):
        moments.update(chunk)
    np.testing.assert_allclose(moments.std, x.std(0), rtol=1e-8)


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: RandomNoise(-1.0), "RandomNoise std must be >= 0; got -1.0"),
        (lambda: RandomScale(2.0, 1.0), "RandomScale needs low <= high; got low=2.0, high=1.0"),
        (lambda: Normalize(mean=[0.0]), "Normalize needs both mean and std"),
        (lambda: Normalize([0.0, 1.0], [1.0]), "mean and std must be 1-D of equal length"),
    ],
)
def test_bad_transform_arguments(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_transforms_refuse_token_ids():
    with pytest.raises(TypeError, match="RandomNoise needs floating-point features; got torch.int64"):
        RandomNoise()(torch.zeros(2, 3, dtype=torch.long))


def test_normalize_without_stats():
    with pytest.raises(RuntimeError, match="Normalize has no statistics: fit on training data first"):
        Normalize()(torch.zeros(2, 3))


def _augmented_epoch(x, transform_on, seed, num_workers=0):
    dm = ArrayDataModule(x_train=x, transforms=[RandomNoise(0.1), RandomScale()], transform_on=transform_on,
                         seed=seed, shuffle=False, batch_size=8, num_workers=num_workers)
    dm.setup("fit")
    dm.trainer = _Training()  # on_after_batch_transfer augments only while training
    batches = [dm.on_after_batch_transfer(b, 0) for b in dm.train_dataloader()]
    return torch.cat([b["x"] for b in batches])


@pytest.mark.parametrize("transform_on", ["sample", "batch"])
def test_datamodule_augmentation_is_reproducible_under_a_seed(transform_on):
    x = np.ones((32, 3), dtype=np.float32)
    a, b, c = (_augmented_epoch(x, transform_on, s) for s in (0, 0, 1))
    torch.testing.assert_close(a, b)
    assert not torch.equal(a, c) and not torch.equal(a, torch.from_numpy(x))


class _Training:
    training, global_rank = True, 0


@pytest.mark.slow
def test_sample_transforms_in_workers_are_reproducible():
    torch.manual_seed(0)  # the DataLoader draws worker seeds from torch's RNG (seed_everything sets it)
    x = np.ones((32, 3), dtype=np.float32)
    a = _augmented_epoch(x, "sample", 0, num_workers=2)
    torch.manual_seed(0)
    b = _augmented_epoch(x, "sample", 0, num_workers=2)
    torch.testing.assert_close(a, b)
    assert not torch.equal(a, torch.from_numpy(x))
