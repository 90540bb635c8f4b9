"""ssm.data.images: sCIFAR (RGB, 3 channels) from the CIFAR-10 python batches and sMNIST/psMNIST
from the idx files, on stand-ins written by ssm.data.fixtures."""

from __future__ import annotations

import gzip
import pickle

import numpy as np
import pytest
import torch

from ssm.data import fixtures
from ssm.data.images import (
    SequentialCIFAR,
    SequentialMNIST,
    bit_reversal_permutation,
    random_permutation,
)
from ssm.data.lra import Image
from ssm.data.lra.base import LRAFormatError

from helpers import ROUNDOFF


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    root = tmp_path_factory.mktemp("images")
    fixtures.write_cifar(root / "cifar-10-batches-py", n_per_batch=20)
    fixtures.write_mnist(root / "MNIST" / "raw", n_train=50, n_test=20)
    fixtures.write_mnist(root / "gz" / "MNIST" / "raw", n_train=50, n_test=20, gz=True)
    return root


def _batch(root, name):
    with open(root / "cifar-10-batches-py" / name, "rb") as f:
        return pickle.load(f, encoding="bytes")


def test_scifar_is_rgb_in_row_major_order_normalised_per_channel(root):
    test = SequentialCIFAR("test", root=root)
    raw = _batch(root, "test_batch")
    planes = np.asarray(raw[b"data"][3], dtype=np.float64).reshape(3, 32, 32)  # image 3: (C, H, W)
    x, y = test[3]
    assert x.shape == (1024, 3) and x.dtype == torch.float32 and int(y) == raw[b"labels"][3]
    mean, std = (0.4914, 0.4822, 0.4465), (0.247, 0.243, 0.261)
    for row, col in ((0, 0), (0, 31), (5, 17), (31, 31)):
        for c in range(3):
            want = (planes[c, row, col] / 255 - mean[c]) / std[c]
            assert float(x[32 * row + col, c]) == pytest.approx(want, rel=0, abs=ROUNDOFF[torch.float32])  # float32


def test_scifar_splits_match_lra_image_and_caches_apart(root):
    for split in ("train", "val", "test"):
        rgb, gray = SequentialCIFAR(split, root=root), Image(split, root=root)
        assert len(rgb) == len(gray) and (len(rgb) == 20 if split == "test" else True)
        labels = [int(rgb[i][1]) for i in range(len(rgb))]
        assert labels == [int(gray[i][1]) for i in range(len(gray))]  # the same images in the same order
    assert len(SequentialCIFAR("val", root=root)) == int(0.1 * 100)
    assert Image("test", root=root)[0][0].shape == (1024, 1)  # LRA Image still gray beside the RGB cache
    assert {p.name for p in (root / ".ssm_cache").iterdir()} >= {"image", "scifar"}
    assert SequentialCIFAR.labels[0] == "airplane" and len(SequentialCIFAR.labels) == 10


@pytest.mark.parametrize("sub", ["", "gz"])
def test_mnist_reads_idx_files_row_major_in_unit_range(root, sub):
    base = root / sub if sub else root
    test = SequentialMNIST("test", root=base)
    name = "t10k-images-idx3-ubyte"
    raw = (gzip.open if sub else open)(base / "MNIST" / "raw" / (name + (".gz" if sub else "")), "rb").read()
    pixels = np.frombuffer(raw, dtype=np.uint8, offset=16).reshape(-1, 784)
    x, y = test[7]
    assert x.shape == (784, 1) and x.dtype == torch.float32
    assert torch.equal(x[:, 0], torch.from_numpy(pixels[7].astype(np.float32) / 255))
    assert len(SequentialMNIST("val", root=base)) == 5 and len(SequentialMNIST("train", root=base)) == 45
    assert 0 <= int(y) <= 9 and test.permutation is None


@pytest.mark.parametrize("permutation", ["random", "bitreversal"])
def test_psmnist_applies_one_fixed_permutation(root, permutation):
    plain = SequentialMNIST("val", root=root)
    perm = SequentialMNIST("val", root=root, permutation=permutation, permutation_seed=92916)
    order = perm.permutation
    assert sorted(order.tolist()) == list(range(784)) and not np.array_equal(order, np.arange(784))
    for i in (0, 3):
        assert torch.equal(perm[i][0], plain[i][0][torch.from_numpy(order)]) and perm[i][1] == plain[i][1]
    test = SequentialMNIST("test", root=root, permutation=permutation, permutation_seed=92916)
    assert np.array_equal(test.permutation, order)  # every split, the same order


def test_permutations():
    assert bit_reversal_permutation(8).tolist() == [0, 4, 2, 6, 1, 5, 3, 7]
    br = bit_reversal_permutation(784)  # 10 bits, indices >= 784 left out, order kept
    assert br[:8].tolist() == [0, 512, 256, 768, 128, 640, 384, 64] and sorted(br.tolist()) == list(range(784))
    a, b = random_permutation(784, 92916), random_permutation(784, 92917)
    assert sorted(a.tolist()) == list(range(784)) and np.array_equal(a, random_permutation(784, 92916))
    assert not np.array_equal(a, b)
    with pytest.raises(ValueError, match="`n` must be a positive int"):
        bit_reversal_permutation(0)


def test_bad_mnist_files_name_the_file(tmp_path):
    raw = tmp_path / "MNIST" / "raw"
    fixtures.write_mnist(raw, n_train=10, n_test=5)
    images = raw / "t10k-images-idx3-ubyte"
    data = images.read_bytes()
    images.write_bytes(b"\x00\x00\x08\x01" + data[4:])
    with pytest.raises(LRAFormatError, match="t10k-images-idx3-ubyte.*magic number 0x00000801, expected 0x00000803"):
        SequentialMNIST("test", root=tmp_path)
    images.write_bytes(data[:-10])
    with pytest.raises(LRAFormatError, match="the file holds 3910"):
        SequentialMNIST("test", root=tmp_path)
    images.write_bytes(data)
    labels = raw / "t10k-labels-idx1-ubyte"
    lab = bytearray(labels.read_bytes())
    lab[8] = 12
    labels.write_bytes(bytes(lab))
    with pytest.raises(LRAFormatError, match="label 0 is 12, not a digit"):
        SequentialMNIST("test", root=tmp_path)
    with pytest.raises(FileNotFoundError, match=r"missing .*train-images-idx3-ubyte \(or train-images-idx3-ubyte.gz\)"):
        SequentialMNIST("train", root=tmp_path / "elsewhere")
    with pytest.raises(ValueError, match="`permutation` must be one of 'random', 'bitreversal'"):
        SequentialMNIST("test", root=tmp_path, permutation="shuffle")


def test_stand_ins_carry_the_class(root):
    cifar = SequentialCIFAR("train", root=root)
    colour = {}
    for i in range(len(cifar)):
        x, y = cifar[i]
        colour.setdefault(int(y), []).append(x.mean(0))
    means = torch.stack([torch.stack(colour[c]).mean(0) for c in sorted(colour)])  # (classes, 3)
    assert torch.cdist(means, means).add(torch.eye(len(means)) * 99).min() > 0.3  # distinct class colours
    mnist = SequentialMNIST("train", root=root)
    ink = [(float(mnist[i][0].mean()), int(mnist[i][1])) for i in range(len(mnist))]
    assert np.corrcoef(*zip(*ink))[0, 1] > 0.9  # more ink for higher digits
