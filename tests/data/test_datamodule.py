"""DataModules: round trips for every format and worker count, splits, batch reads, loaders, state."""

from __future__ import annotations

import lightning as L
import numpy as np
import pytest
import torch
from datafiles import FORMATS, file_datamodule_kwargs, write
from lightning.pytorch.callbacks import ModelCheckpoint

from nl_lightning.data import ArrayDataModule, FileDataModule, Normalize, datamodule
from nl_lightning.data.readers import MemoryReader
from nl_lightning.errors import ConfigError


def _collect(loader) -> tuple[np.ndarray, np.ndarray]:
    batches = list(loader)
    return np.concatenate([b["x"].numpy() for b in batches]), np.concatenate([b["y"].numpy() for b in batches])


@pytest.mark.filterwarnings("ignore:.*compressed")
@pytest.mark.parametrize("num_workers", [0, pytest.param(2, marks=pytest.mark.slow)])  # 2: worker processes
@pytest.mark.parametrize("fmt", FORMATS)
def test_round_trip_through_the_datamodule(fmt, num_workers, arrays, tmp_path):
    x, y = arrays
    spec = write(fmt, tmp_path, x, y)
    dm = FileDataModule(**file_datamodule_kwargs(spec), val_fraction=0.25, batch_size=7, num_workers=num_workers)
    dm.setup("fit")
    for loader in (dm.train_dataloader(), dm.val_dataloader()):
        got_x, got_y = _collect(loader)
        index = got_x[:, 0, 0].astype(int)  # x[i, 0, 0] == i: the row each sample came from
        np.testing.assert_array_equal(got_x, x[index])
        np.testing.assert_array_equal(got_y, y[index])
        assert got_y.dtype == np.int64 and got_x.dtype == np.float32
    train, val = dm.datasets["train"].rows, dm.datasets["val"].rows
    got_x, got_y = _collect(dm.val_dataloader())  # sequential: exactly the val rows, in order
    np.testing.assert_array_equal(got_x, x[val])
    np.testing.assert_array_equal(got_y, y[val])
    seen = np.sort(_collect(dm.train_dataloader())[0][:, 0, 0].astype(int))  # shuffled: each train row once
    np.testing.assert_array_equal(seen, train)
    assert len(val) == 10 and sorted(train.tolist() + val.tolist()) == list(range(40))
    picked = dm.datasets["train"].__getitems__([5, 2, 29, 2])  # unsorted, repeated: sampler order kept
    np.testing.assert_array_equal(picked["x"].numpy(), x[train[[5, 2, 29, 2]]])
    np.testing.assert_array_equal(picked["y"].numpy(), y[train[[5, 2, 29, 2]]])


@pytest.mark.parametrize("source", ["numpy", "tensor"])
def test_array_datamodule_round_trip(source, arrays):
    x, y = arrays
    convert = torch.from_numpy if source == "tensor" else np.asarray
    dm = ArrayDataModule(x_train=convert(x), y_train=convert(y), x_test=convert(x[:5]), y_test=convert(y[:5]))
    dm.setup("fit")
    got_x, got_y = _collect(dm.train_dataloader())
    index = got_x[:, 0, 0].astype(int)
    np.testing.assert_array_equal(got_x, x[index])
    np.testing.assert_array_equal(got_y, y[index])
    dm.setup("test")
    np.testing.assert_array_equal(_collect(dm.test_dataloader())[0], x[:5])


def test_splits_are_seeded_disjoint_and_complete(arrays):
    x, y = arrays

    def rows(seed):
        dm = ArrayDataModule(x_train=x, y_train=y, val_fraction=0.2, test_fraction=0.1, seed=seed)
        dm.setup()
        return {s: set(dm.datasets[s].rows.tolist()) for s in ("train", "val", "test")}

    a, b, c = rows(0), rows(0), rows(1)
    assert a == b and a != c
    assert [len(a[s]) for s in ("train", "val", "test")] == [28, 8, 4]
    assert set().union(*a.values()) == set(range(40)) and not (a["train"] & a["val"] or a["train"] & a["test"])


def test_separate_sources_concatenated_files_and_predict_without_targets(arrays, tmp_path):
    x, y = arrays
    first, second = write("hdf5", tmp_path, x[:20], y[:20], "a"), write("hdf5", tmp_path, x[20:], y[20:], "b")
    val = write("hdf5", tmp_path, x[:6], y[:6], "val")
    pred = write("parquet", tmp_path, x[:9], None, "pred")
    dm = FileDataModule(train_path=[first["path"], second["path"]], val_path=val["path"], features="/group/x",
                        targets="/group/y", shuffle=False, batch_size=16)
    dm.setup("fit")
    np.testing.assert_array_equal(_collect(dm.train_dataloader())[0], x)
    np.testing.assert_array_equal(_collect(dm.val_dataloader())[1], y[:6])
    dm = FileDataModule(predict_path=pred["path"], feature_shape=[3, 4], parquet_cache_mb=0.5)
    dm.setup("predict")
    batch = next(iter(dm.predict_dataloader()))
    assert set(batch) == {"x", "row_id"}  # no "y" without targets
    np.testing.assert_array_equal(batch["x"].numpy(), x[:9])
    assert dm.open_split("predict")[0]._groups.get().budget == 2**19  # the Parquet cache setting reaches the reader


class CountingReader(MemoryReader):
    calls: list[list[int]] = []

    def read_batch(self, rows):
        CountingReader.calls.append(rows.tolist())
        return super().read_batch(rows)


def test_one_sorted_reader_call_per_batch(arrays):
    x, y = arrays
    dm = ArrayDataModule(x_train=x, y_train=y, batch_size=8, validate=False)
    dm.open_split = lambda split: (CountingReader(x), None) if split == "train" else None
    dm.setup("fit")
    CountingReader.calls = []
    batches = list(dm.train_dataloader())
    assert len(CountingReader.calls) == len(batches) == 5
    assert all(rows == sorted(rows) for rows in CountingReader.calls)
    assert CountingReader.calls != [list(range(i, i + 8)) for i in range(0, 40, 8)]  # shuffled


def test_loader_settings_reach_the_dataloader(arrays):
    x, y = arrays
    dm = ArrayDataModule(x_train=x, y_train=y, batch_size=5, num_workers=2, pin_memory=False,
                         persistent_workers=False, prefetch_factor=3, drop_last=True)
    loader = dm.train_dataloader()
    assert (loader.batch_sampler.batch_size, loader.num_workers, loader.pin_memory) == (5, 2, False)
    assert (loader.persistent_workers, loader.prefetch_factor, loader.batch_sampler.drop_last) == (False, 3, True)
    assert isinstance(loader.batch_sampler.sampler, torch.utils.data.RandomSampler)
    assert len(loader) == 8  # 40 rows, drop_last
    defaults = ArrayDataModule(x_train=x, num_workers=1)
    assert defaults.persistent_workers is True and defaults.pin_memory == torch.cuda.is_available()
    assert ArrayDataModule(x_train=x).val_dataloader() == []  # no val data: validation is skipped


def test_default_batches_per_message_and_prefetch_fit_their_budgets(arrays, monkeypatch):
    """Unset, ``batches_per_message`` is MESSAGE_BYTES of batches, rounded (1 to 16), and
    ``prefetch_factor`` as many such messages as fit in PREFETCH_BYTES (2 to 8)."""
    x, y = arrays  # a batch of 5: 5 x (48 feature + 8 target + 8 row_id bytes) = 320 bytes

    def loader(**kwargs):
        return ArrayDataModule(x_train=x, y_train=y, batch_size=5, num_workers=2, **kwargs).train_dataloader()

    got = loader()  # tiny batches: 16 per message, 16 x 320 bytes = 5 KiB: 8 messages ahead
    assert (got.batches_per_message, got.prefetch_factor) == (16, 8)
    got = loader(prefetch_factor=3, batches_per_message=2)
    assert (got.batches_per_message, got.prefetch_factor) == (2, 3)
    monkeypatch.setattr(datamodule, "MESSAGE_BYTES", 320 * 3)
    monkeypatch.setattr(datamodule, "PREFETCH_BYTES", 320 * 3 * 5)
    assert (loader().batches_per_message, loader().prefetch_factor) == (3, 5)
    monkeypatch.setattr(datamodule, "MESSAGE_BYTES", 320 * 3 - 161)  # 2.497 batches
    assert (loader().batches_per_message, loader().prefetch_factor) == (2, 7)  # 4,800 // 640
    monkeypatch.setattr(datamodule, "MESSAGE_BYTES", 320 * 3 - 159)  # 2.503 batches
    assert loader().batches_per_message == 3
    monkeypatch.setattr(datamodule, "MESSAGE_BYTES", 100)
    monkeypatch.setattr(datamodule, "PREFETCH_BYTES", 100)
    assert (loader().batches_per_message, loader().prefetch_factor) == (1, 2)
    no_workers = ArrayDataModule(x_train=x, batch_size=5).train_dataloader()
    assert no_workers.prefetch_factor is None and no_workers.batches_per_message == 1
    with pytest.raises(ConfigError, match="batches_per_message=2 needs num_workers > 0"):
        ArrayDataModule(x_train=x, batch_size=5, batches_per_message=2)


@pytest.mark.parametrize("transform_on", ["sample", "batch"])
def test_normalize_applies_training_stats_to_every_split(transform_on, arrays):
    x, y = arrays
    dm = ArrayDataModule(x_train=x, y_train=y, val_fraction=0.25, normalize=True, transform_on=transform_on,
                         shuffle=False, batch_size=64)
    dm.setup("fit")
    train_x = x[dm.datasets["train"].rows].reshape(-1, 4)
    mean, std = train_x.mean(0), train_x.std(0)
    batch = dm.on_after_batch_transfer(next(iter(dm.val_dataloader())), 0)
    expected = (x[dm.datasets["val"].rows] - mean) / std
    np.testing.assert_allclose(batch["x"].numpy(), expected, rtol=1e-4, atol=1e-5)


class TinyModel(L.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(12, 3)

    def training_step(self, batch, batch_idx):
        return torch.nn.functional.cross_entropy(self.layer(batch["x"].flatten(1)), batch["y"])

    def validation_step(self, batch, batch_idx):
        self.log("val_loss", torch.nn.functional.cross_entropy(self.layer(batch["x"].flatten(1)), batch["y"]))

    def predict_step(self, batch, batch_idx):
        return batch["x"][:, 0, 0]

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def test_trainer_predict_sees_every_row_in_order(arrays, tmp_path, quiet_trainer):
    x, _ = arrays
    spec = write("parquet", tmp_path, x, None)
    dm = FileDataModule(predict_path=spec["path"], feature_shape=[3, 4], batch_size=16)
    predictions = L.Trainer(**quiet_trainer).predict(TinyModel(), dm)
    np.testing.assert_array_equal(torch.cat(predictions).numpy(), x[:, 0, 0])


@pytest.mark.filterwarnings("ignore:Be aware that when using `ckpt_path`")
def test_normalize_stats_survive_checkpoint_save_and_load(arrays, tmp_path, quiet_trainer):
    x, y = arrays
    x = x * 3 + 5
    spec = write("hdf5", tmp_path, x, y)
    kwargs = dict(file_datamodule_kwargs(spec), val_fraction=0.25, normalize=True, batch_size=8)
    dm = FileDataModule(**kwargs)
    checkpoint = ModelCheckpoint(dirpath=tmp_path / "ckpt", filename="last")
    trainer = L.Trainer(**{**quiet_trainer, "enable_checkpointing": True}, max_epochs=1, limit_train_batches=2,
                        callbacks=[checkpoint])
    trainer.fit(TinyModel(), dm)
    ckpt_path = tmp_path / "ckpt" / "last.ckpt"
    assert ckpt_path.exists()

    train_x = x[dm.datasets["train"].rows].reshape(-1, 4).astype(np.float64)
    saved = torch.load(ckpt_path, weights_only=True)["FileDataModule"]["normalize"]
    np.testing.assert_allclose(saved["mean"].numpy(), train_x.mean(0), rtol=1e-10)
    np.testing.assert_allclose(saved["std"].numpy(), train_x.std(0), rtol=1e-10)

    fresh = FileDataModule(**{**kwargs, "train_path": None, "val_fraction": 0.0, "val_path": spec["path"]})
    assert not fresh.normalizer.fitted
    L.Trainer(**quiet_trainer, limit_val_batches=1).validate(TinyModel(), fresh, ckpt_path=str(ckpt_path))
    torch.testing.assert_close(fresh.normalizer.mean, saved["mean"])  # restored, not recomputed from val
    served = Normalize.from_checkpoint(ckpt_path)  # what a server would apply
    torch.testing.assert_close(served.std, saved["std"])
    other = FileDataModule(**kwargs)
    other.load_state_dict(torch.load(ckpt_path, weights_only=True)["FileDataModule"])
    torch.testing.assert_close(other.state_dict()["normalize"]["std"], saved["std"])
