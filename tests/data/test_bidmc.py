"""ssm.data.bidmc: the BIDMC arrays as the S4 code reads them, on stand-ins written by
ssm.data.fixtures."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ssm.data import fixtures
from ssm.data.bidmc import BIDMC
from ssm.data.lra.base import LRAFormatError

from helpers import HALF_ULP32, ROUNDOFF

L = 200  # steps per stand-in window (the real ones have 4000)


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    root = tmp_path_factory.mktemp("bidmc")
    fixtures.write_bidmc(root, n_train=20, n_val=6, n_test=8, length=L)
    fixtures.write_bidmc(root, targets=("HR",), n_train=10, n_val=4, n_test=4, length=L, reshuffle=False, seed=1)
    return root


@pytest.mark.parametrize("target", ["HR", "RR", "SpO2"])
def test_reads_the_arrays_as_stored(root, target):
    directory = root / "bidmc" / target / "reshuffle"
    names = {"train": ("trainx", "trainy"), "val": ("validx", "validy"), "test": ("testx", "testy")}
    for split, (xs, ys) in names.items():
        ds = BIDMC(split, root=root, target=target)
        x_all, y_all = np.load(directory / f"{xs}.npy"), np.load(directory / f"{ys}.npy")
        assert len(ds) == len(y_all) and ds.length == L and ds.channels == 2
        x, y = ds[len(ds) - 1]
        assert x.shape == (L, 2) and x.dtype == torch.float32 and y.dtype == torch.float32 and y.shape == ()
        # each value rounded once to float32
        assert torch.allclose(x, torch.from_numpy(x_all[-1]).float(), rtol=HALF_ULP32, atol=0)
        assert float(y) == pytest.approx(y_all[-1], rel=HALF_ULP32, abs=0)


def test_original_split_and_target_choice(root):
    assert len(BIDMC("train", root=root, target="HR", reshuffle=False)) == 10
    with pytest.raises(FileNotFoundError, match="bidmc/RR/original/trainx.npy"):
        BIDMC("train", root=root, target="RR", reshuffle=False)
    with pytest.raises(ValueError, match="`target` must be one of 'HR', 'RR', 'SpO2'"):
        BIDMC("train", root=root, target="BP")


def test_normalize_target_uses_the_training_split(root):
    train_y = np.load(root / "bidmc" / "RR" / "reshuffle" / "trainy.npy")
    test_y = np.load(root / "bidmc" / "RR" / "reshuffle" / "testy.npy")
    train = BIDMC("train", root=root, target="RR", normalize_target=True)
    test = BIDMC("test", root=root, target="RR", normalize_target=True)
    assert (test.target_mean, test.target_std) == pytest.approx((train_y.mean(), train_y.std()), rel=ROUNDOFF[torch.float64])
    assert float(train.y.mean()) == pytest.approx(0, abs=ROUNDOFF[torch.float32]) and float(train.y.std()) == pytest.approx(1, abs=ROUNDOFF[torch.float32])
    assert float(test[2][1]) * test.target_std + test.target_mean == pytest.approx(test_y[2], rel=ROUNDOFF[torch.float32])
    raw = BIDMC("test", root=root, target="RR")
    assert (raw.target_mean, raw.target_std) == (0.0, 1.0) and float(raw[2][1]) == pytest.approx(test_y[2], rel=HALF_ULP32, abs=0)


def test_bad_arrays_name_the_file(tmp_path):
    fixtures.write_bidmc(tmp_path, targets=("SpO2",), n_train=4, n_val=2, n_test=2, length=20)
    directory = tmp_path / "bidmc" / "SpO2" / "reshuffle"
    x = np.load(directory / "testx.npy")
    x[1, 5, 0] = np.nan
    np.save(directory / "testx.npy", x)
    with pytest.raises(LRAFormatError, match="testx.npy: window 1 has NaN"):
        BIDMC("test", root=tmp_path, target="SpO2")
    np.save(directory / "testx.npy", x[:, :, 0])
    with pytest.raises(LRAFormatError, match=r"testx.npy: expected a numeric array of shape \(N, L, C\)"):
        BIDMC("test", root=tmp_path, target="SpO2")
    np.save(directory / "testx.npy", np.zeros((3, 20, 2)))
    with pytest.raises(LRAFormatError, match="testy.npy: 2 targets for the 3 windows"):
        BIDMC("test", root=tmp_path, target="SpO2")
    np.save(directory / "testy.npy", np.array([{"a": 1}] * 3, dtype=object))
    with pytest.raises(LRAFormatError, match="testy.npy: not a plain numeric .npy array"):
        BIDMC("test", root=tmp_path, target="SpO2")


def test_stand_in_targets_drive_the_signals(root):
    ds = BIDMC("train", root=root, target="HR")
    levels = [float(ds[i][0][:, 1].mean()) for i in range(len(ds))]
    assert np.corrcoef(levels, ds.y)[0, 1] > 0.9
    assert ds.y.min() >= 55 and ds.y.max() <= 125  # in beats per minute, as the real targets
