"""fedshield.data: real-file loaders, caching, partitions, root set, offline download path."""
from __future__ import annotations

import gzip
import hashlib
import os
import pickle
import re
import shutil
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch

from fedshield import cli, data
from fedshield.errors import FedshieldError

MNIST_TRAIN_HIST = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
MNIST_TEST_HIST = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


# ------------------------------------------------------------------ fixtures (load each split once)
@pytest.fixture(scope="module")
def mnist_train(data_root):
    return data.load_dataset("mnist", "train", data_root)


@pytest.fixture(scope="module")
def cifar10_exact(data_root):
    return {s: data.load_dataset("cifar10", s, data_root, cifar10_source="exact") for s in ("train", "test")}


@pytest.fixture(scope="module")
def cifar10_jpeg_u8(data_root):
    # decoded once per machine (then read from the cache); uint8 keeps the memory small
    return {s: data.load_dataset("cifar10", s, data_root, cifar10_source="jpeg", dtype=torch.uint8,
                                 progress=False) for s in ("train", "test")}


def _check_images(x, y, shape, n):
    assert x.dtype == torch.float32 and y.dtype == torch.int64
    assert tuple(x.shape) == (n, *shape) and tuple(y.shape) == (n,)
    assert float(x.min()) == 0.0 and float(x.max()) == 1.0
    # x = pixel / 255 exactly: scaling back gives integers
    sample = x[:500] * 255
    assert torch.allclose(sample, sample.round(), atol=1e-4)


# ------------------------------------------------------------------ real files
def test_mnist_counts_histograms_and_values(data_root, mnist_train):
    x, y = mnist_train
    _check_images(x, y, (1, 28, 28), 60000)
    assert torch.bincount(y, minlength=10).tolist() == MNIST_TRAIN_HIST
    xt, yt = data.load_dataset("mnist", "test", data_root)
    _check_images(xt, yt, (1, 28, 28), 10000)
    assert torch.bincount(yt, minlength=10).tolist() == MNIST_TEST_HIST
    # MNIST digits are white on black: the border is background, the centre carries ink
    assert float(x[:, :, 0, :].mean()) < 0.01 and float(x[:, :, 10:18, 10:18].mean()) > 0.3


def test_fmnist_counts_and_alias(data_root):
    x, y = data.load_dataset("fmnist", "test", data_root)
    _check_images(x, y, (1, 28, 28), 10000)
    assert torch.bincount(y).tolist() == [1000] * 10
    x2, y2 = data.load_dataset("Fashion-MNIST", "test", data_root)
    assert torch.equal(x, x2) and torch.equal(y, y2)
    assert data.load_dataset("fashion_mnist", "test", data_root, dtype=torch.uint8)[0].dtype == torch.uint8
    xtr, ytr = data.load_dataset("fmnist", "train", data_root, dtype=torch.uint8)
    assert tuple(xtr.shape) == (60000, 1, 28, 28) and torch.bincount(ytr).tolist() == [6000] * 10
    # not MNIST: different images
    xm, _ = data.load_dataset("mnist", "test", data_root)
    assert not torch.equal(x, xm)


def test_cifar10_exact_subset(data_root, cifar10_exact):
    x, y = cifar10_exact["train"]
    _check_images(x, y, (3, 32, 32), 5438)
    xt, yt = cifar10_exact["test"]
    _check_images(xt, yt, (3, 32, 32), 1017)
    assert torch.bincount(y, minlength=10).tolist() == [541, 564, 524, 529, 563, 523, 540, 548, 572, 534]
    with np.load(data_root / "cifar10" / "cifar10_exact_subset.npz") as z:
        ref = z["x_train"][:3]  # NHWC uint8
    assert torch.equal((x[:3] * 255).round().to(torch.uint8), torch.from_numpy(ref).permute(0, 3, 1, 2))


def test_cifar10_jpeg_pack_counts_and_original_order(data_root, cifar10_jpeg_u8, cifar10_exact):
    xtr, ytr = cifar10_jpeg_u8["train"]
    xte, yte = cifar10_jpeg_u8["test"]
    assert xtr.dtype == torch.uint8 and tuple(xtr.shape) == (50000, 3, 32, 32)
    assert tuple(xte.shape) == (10000, 3, 32, 32)
    assert torch.bincount(ytr).tolist() == [5000] * 10 and torch.bincount(yte).tolist() == [1000] * 10
    with np.load(data_root / "cifar10" / "cifar10_exact_subset.npz") as z:
        bi = z["train_batch_and_index"]
        y_all = torch.from_numpy(z["y_train_all_50000"].astype(np.int64))
    # the pack is put back into CIFAR-10's original order: labels agree with the original label list
    assert torch.equal(ytr, y_all)
    # the exact-pixel images sit at their original indices, JPEG error only (~5/255 on average)
    pos = torch.from_numpy((bi[:, 0] - 1) * 10000 + bi[:, 1])
    xe, ye = cifar10_exact["train"]
    assert torch.equal(ytr[pos], ye)
    err = (xtr[pos].float() / 255 - xe).abs().mean().item()
    assert err < 10 / 255
    # a negative control: pairing with other images (or a channel/axis mix-up) is far worse
    assert (xtr[pos].float() / 255 - xe.roll(1, 0)).abs().mean().item() > 4 * err
    assert (xtr[pos].float() / 255 - xe.flip(1)).abs().mean().item() > 2 * err
    assert (xtr[pos].float() / 255 - xe.transpose(2, 3)).abs().mean().item() > 2 * err
    xe_t, ye_t = cifar10_exact["test"]
    assert torch.equal(yte[:1017], ye_t)
    assert (xte[:1017].float() / 255 - xe_t).abs().mean().item() < 10 / 255


def test_cifar100_subset_fine_and_coarse(data_root):
    x, y = data.load_dataset("cifar100", "train", data_root)
    _check_images(x, y, (3, 32, 32), 1117)
    xt, yt = data.load_dataset("cifar-100", "test", data_root)
    _check_images(xt, yt, (3, 32, 32), 916)
    assert int(y.min()) >= 0 and int(y.max()) <= 99 and y.unique().numel() == 100
    _, yc = data.load_dataset("cifar100", "train", data_root, coarse=True)
    assert int(yc.max()) <= 19 and yc.unique().numel() == 20
    # every fine class belongs to exactly one coarse superclass
    pairs = torch.unique(torch.stack([y, yc], 1), dim=0)
    assert pairs.shape[0] == 100 and torch.equal(pairs[:, 0], torch.arange(100))
    names = data.class_names("cifar100", data_root)
    assert len(names) == 100 and names[0] == "apple"
    assert len(data.class_names("cifar100", data_root, coarse=True)) == 20
    assert data.class_names("cifar10")[3] == "cat" and len(data.class_names("fmnist")) == 10


def _write_cifar10_pickles(folder: Path, xe: torch.Tensor, ye: torch.Tensor, xt: torch.Tensor, yt: torch.Tensor):
    """The python-pickle layout of the CIFAR-10 distribution, filled with the given images."""
    folder.mkdir(parents=True)
    u8 = (xe * 255).round().to(torch.uint8).numpy()
    chunks = np.array_split(np.arange(len(u8)), 5)
    for i, c in enumerate(chunks, 1):
        with open(folder / f"data_batch_{i}", "wb") as f:
            pickle.dump({b"data": u8[c].reshape(len(c), -1), b"labels": ye[c].tolist()}, f)
    with open(folder / "test_batch", "wb") as f:
        pickle.dump({b"data": (xt * 255).round().to(torch.uint8).numpy().reshape(len(xt), -1),
                     b"labels": yt.tolist()}, f)


def test_cifar10_torchvision_pickles_preferred(tmp_path, cifar10_exact):
    xe, ye = cifar10_exact["train"]
    xt, yt = cifar10_exact["test"]
    n = 300
    _write_cifar10_pickles(tmp_path / "cifar10" / "cifar-10-batches-py", xe[:n], ye[:n], xt[:50], yt[:50])
    x, y = data.load_dataset("cifar10", "train", tmp_path)  # auto -> pickles
    assert torch.equal(x, xe[:n]) and torch.equal(y, ye[:n])
    x, y = data.load_dataset("cifar10", "test", tmp_path, cifar10_source="pickle")
    assert torch.equal(x, xt[:50]) and torch.equal(y, yt[:50])
    # torchvision's own root layout: cifar-10-batches-py directly under the data directory
    other = tmp_path / "tv"
    shutil.copytree(tmp_path / "cifar10" / "cifar-10-batches-py", other / "cifar-10-batches-py")
    assert torch.equal(data.load_dataset("cifar10", "test", other)[0], xt[:50])
    # the decoded arrays were cached under the (writable) data directory
    assert any((tmp_path / "_cache").glob("cifar10-pickle-train-*.x.npy"))


def test_cifar10_jpeg_without_label_file_is_class_grouped(tmp_path, data_root, cifar10_jpeg_u8):
    (tmp_path / "cifar10").mkdir()
    (tmp_path / "cifar10" / "cifar10_jpeg.npz").symlink_to(data_root / "cifar10" / "cifar10_jpeg.npz")
    x, y = data.load_dataset("cifar10", "test", tmp_path, dtype=torch.uint8, progress=False)
    assert torch.equal(y, torch.arange(10).repeat_interleave(1000))  # the pack's own order
    with np.load(data_root / "cifar10" / "cifar10_jpeg.npz") as z:
        within = torch.from_numpy(z["test_index_within_class"].astype(np.int64))
    xo, yo = cifar10_jpeg_u8["test"]
    for c in (0, 7):  # image j of class c is the within[j]-th class-c image of the original order
        orig = torch.nonzero(yo == c).flatten()
        sel = torch.nonzero(y == c).flatten()
        assert torch.equal(x[sel], xo[orig[within[sel]]])


def test_cifar100_pickles(tmp_path, data_root):
    x, yf = data.load_dataset("cifar100", "test", data_root)
    _, yc = data.load_dataset("cifar100", "test", data_root, coarse=True)
    d = tmp_path / "cifar100" / "cifar-100-python"
    d.mkdir(parents=True)
    u8 = (x * 255).round().to(torch.uint8).numpy().reshape(len(x), -1)
    for split in ("train", "test"):
        with open(d / split, "wb") as f:
            pickle.dump({b"data": u8, b"fine_labels": yf.tolist(), b"coarse_labels": yc.tolist()}, f)
    x2, y2 = data.load_dataset("cifar100", "train", tmp_path)  # auto -> pickles
    assert torch.equal(x2, x) and torch.equal(y2, yf)
    assert torch.equal(data.load_dataset("cifar100", "test", tmp_path, coarse=True)[1], yc)
    with pytest.raises(FedshieldError, match="cifar100_exact_subset.npz"):
        data.load_dataset("cifar100", "test", tmp_path, cifar100_source="exact")


def test_mnist_torchvision_layout_uncompressed(tmp_path, data_root):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for f in ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        with gzip.open(data_root / "mnist" / f"{f}.gz") as src, open(raw / f, "wb") as dst:
            shutil.copyfileobj(src, dst)
    x, y = data.load_dataset("mnist", "test", tmp_path)
    xr, yr = data.load_dataset("mnist", "test", data_root)
    assert torch.equal(x, xr) and torch.equal(y, yr)


def test_corrupt_idx_files(tmp_path):
    d = tmp_path / "mnist"
    d.mkdir()
    (d / "t10k-images-idx3-ubyte").write_bytes(b"\x00\x00\x09\x03" + b"\x00" * 20)
    (d / "t10k-labels-idx1-ubyte").write_bytes(b"\x00\x00\x08\x01\x00\x00\x00\x05" + b"\x01" * 5)
    with pytest.raises(FedshieldError, match="bad magic"):
        data.load_dataset("mnist", "test", tmp_path)
    hdr = b"\x00\x00\x08\x03" + np.array([5, 28, 28], ">i4").tobytes()
    (d / "t10k-images-idx3-ubyte").write_bytes(hdr + b"\x00" * 100)
    with pytest.raises(FedshieldError, match="truncated"):
        data.load_dataset("mnist", "test", tmp_path)
    (d / "t10k-images-idx3-ubyte").write_bytes(hdr + bytes(range(256)) * 15 + bytes(5 * 784 - 3840))
    x, y = data.load_dataset("mnist", "test", tmp_path)
    assert tuple(x.shape) == (5, 1, 28, 28) and y.tolist() == [1] * 5
    # row-major 28x28 images: pixel (r, c) of image i is byte 784 i + 28 r + c of the payload
    assert float(x[0, 0, 1, 2]) == pytest.approx(30 / 255)
    assert float(x[1, 0, 0, 0]) == pytest.approx((784 % 256) / 255)


# ------------------------------------------------------------------ errors, data dir, cache
@pytest.mark.parametrize("name,expected", [
    ("mnist", "train-images-idx3-ubyte.gz"), ("fmnist", "train-images-idx3-ubyte.gz"),
    ("cifar10", "cifar10_jpeg.npz"), ("cifar100", "cifar100_exact_subset.npz")])
def test_missing_file_error_names_file_place_and_remedy(tmp_path, name, expected):
    with pytest.raises(FedshieldError) as e:
        data.load_dataset(name, "train", tmp_path)
    msg = str(e.value)
    assert expected in msg and str(tmp_path) in msg
    assert f"fedshield data download {name} --data-dir {tmp_path}" in msg
    assert "FEDSHIELD_DATA" in msg


def test_missing_selected_cifar10_source(tmp_path):
    with pytest.raises(FedshieldError, match="cifar10_exact_subset.npz"):
        data.load_dataset("cifar10", "test", tmp_path, cifar10_source="exact")
    with pytest.raises(FedshieldError, match="cifar-10-batches-py"):
        data.load_dataset("cifar10", "test", tmp_path, cifar10_source="pickle")


@pytest.mark.parametrize("kwargs,match", [
    (dict(name="svhn"), "unknown dataset"), (dict(name="mnist", split="val"), "split"),
    (dict(name="cifar10", cifar10_source="png"), "cifar10_source"),
    (dict(name="cifar100", cifar100_source="jpeg"), "cifar100_source"),
    (dict(name="mnist", dtype=torch.int32), "dtype")])
def test_bad_arguments(tmp_path, kwargs, match):
    with pytest.raises(FedshieldError, match=match):
        data.load_dataset(data_dir=tmp_path, **kwargs)


def test_data_dir_precedence(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("FEDSHIELD_DATA", raising=False)
    assert data.data_dir() == (tmp_path / "data").resolve()
    monkeypatch.setenv("FEDSHIELD_DATA", str(tmp_path / "env"))
    assert data.data_dir() == (tmp_path / "env").resolve()
    assert data.data_dir(tmp_path / "explicit") == (tmp_path / "explicit").resolve()
    assert data.data_dir("rel") == (tmp_path / "rel").resolve()
    # load_dataset honours the environment variable
    with pytest.raises(FedshieldError, match=re.escape(str(tmp_path / "env"))):
        data.load_dataset("mnist")


def test_cache_written_once_then_used(tmp_path, data_root, monkeypatch):
    d = tmp_path / "d" / "mnist"
    d.mkdir(parents=True)
    for f in ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        shutil.copy(data_root / "mnist" / f, d / f)
    x1, y1 = data.load_dataset("mnist", "test", d.parent)
    assert len(list((d.parent / "_cache").glob("mnist-test-*.npy"))) == 2
    monkeypatch.setattr(data, "_read_idx", lambda p: (_ for _ in ()).throw(AssertionError("decoded again")))
    x2, y2 = data.load_dataset("mnist", "test", d.parent)
    assert torch.equal(x1, x2) and torch.equal(y1, y2)
    x2[0] += 1  # returned tensors are the caller's to modify: a new load is unaffected
    assert torch.equal(data.load_dataset("mnist", "test", d.parent)[0], x1)


def test_read_only_data_dir_caches_elsewhere(tmp_path, data_root, monkeypatch):
    ro = tmp_path / "ro"
    (ro / "mnist").mkdir(parents=True)
    for f in ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        shutil.copy(data_root / "mnist" / f, ro / "mnist" / f)
    os.chmod(ro, 0o555)
    try:
        monkeypatch.setenv("FEDSHIELD_DATA_CACHE", str(tmp_path / "dc"))
        assert data.cache_root(ro) == (tmp_path / "dc").resolve()
        data.load_dataset("mnist", "test", ro)
        assert not (ro / "_cache").exists()
        assert len(list((tmp_path / "dc").glob("mnist-test-*.npy"))) == 2
        monkeypatch.delenv("FEDSHIELD_DATA_CACHE")
        monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
        assert data.cache_root(ro) == (tmp_path / "xdg" / "fedshield" / "data").resolve()
        # a writable data directory caches next to the data
        assert data.cache_root(tmp_path) == (tmp_path / "_cache").resolve()
    finally:
        os.chmod(ro, 0o755)


# ------------------------------------------------------------------ non-IID partition
def _check_noniid(parts, y, n_clients, cpc, kmax, exclude=None):
    assert len(parts) == n_clients
    allidx = torch.cat(parts)
    assert allidx.dtype == torch.int64
    assert allidx.unique().numel() == allidx.numel(), "a sample went to two clients"
    if exclude is not None:
        assert not torch.isin(allidx, exclude).any()
    counts = []
    for p in parts:
        assert torch.equal(p, p.sort().values)
        cls, cnt = torch.unique(y[p], return_counts=True)
        assert cls.numel() == cpc
        assert int(cnt.min()) >= 1 and int(cnt.max()) <= kmax
        counts.append(cnt)
    return torch.cat(counts)


def test_noniid_paper_partition_mnist(mnist_train):
    _, y = mnist_train
    root = data.root_set(y, 100, seed=3)
    parts = data.partition_noniid(y, **data.PAPER_PARTITION["mnist"], seed=0, exclude=root)
    cnt = _check_noniid(parts, y, 100, 2, 10, exclude=root)
    # counts ~ U{1..10}: 200 draws, mean 5.5 (sd of the mean 0.2), both ends reached
    assert abs(cnt.float().mean().item() - 5.5) < 1.0
    assert int(cnt.min()) == 1 and int(cnt.max()) == 10
    # classes drawn uniformly: all 10 used, each by 20 clients on average
    per_class = torch.bincount(torch.stack([y[p].unique() for p in parts]).flatten(), minlength=10)
    assert int(per_class.min()) >= 5 and int(per_class.max()) <= 40
    # deterministic in the seed, different for another seed
    again = data.partition_noniid(y, **data.PAPER_PARTITION["mnist"], seed=0, exclude=root)
    assert all(torch.equal(a, b) for a, b in zip(parts, again))
    other = data.partition_noniid(y, **data.PAPER_PARTITION["mnist"], seed=1, exclude=root)
    assert not all(torch.equal(a, b) for a, b in zip(parts, other))


def test_noniid_cifar10_paper_sizes_and_exclude_forms():
    y = torch.arange(50000) % 10
    excl = torch.arange(0, 50000, 7)
    parts = data.partition_noniid(y, **data.PAPER_PARTITION["cifar10"], seed=5, exclude=excl)
    cnt = _check_noniid(parts, y, 1000, 2, 20, exclude=excl)
    assert abs(cnt.float().mean().item() - 10.5) < 0.6
    mask = torch.zeros(50000, dtype=torch.bool)
    mask[excl] = True
    same = data.partition_noniid(y, **data.PAPER_PARTITION["cifar10"], seed=5, exclude=mask)
    assert all(torch.equal(a, b) for a, b in zip(parts, same))
    as_list = data.partition_noniid(y, **data.PAPER_PARTITION["cifar10"], seed=5, exclude=[excl[:100], excl[100:]])
    assert all(torch.equal(a, b) for a, b in zip(parts, as_list))


def test_noniid_general_parameters_and_exhaustion():
    y = torch.arange(600) % 6  # 100 per class
    parts = data.partition_noniid(y, 20, classes_per_client=3, max_per_class=4, seed=2)
    _check_noniid(parts, y, 20, 3, 4)
    # a fully used class is never drawn once its samples are excluded
    excl = torch.nonzero(y == 0).flatten()
    parts = data.partition_noniid(y, 30, classes_per_client=5, max_per_class=2, seed=0, exclude=excl)
    _check_noniid(parts, y, 30, 5, 2, exclude=excl)
    with pytest.raises(FedshieldError, match="only 5 classes"):
        data.partition_noniid(y, 3, classes_per_client=6, exclude=excl)
    with pytest.raises(FedshieldError, match="cannot supply"):
        data.partition_noniid(y, 100, max_per_class=10)
    with pytest.raises(FedshieldError, match="n_clients"):
        data.partition_noniid(y, 0)
    with pytest.raises(FedshieldError, match="labels"):
        data.partition_noniid(y.float(), 2)
    with pytest.raises(FedshieldError, match="outside"):
        data.partition_noniid(y, 2, exclude=torch.tensor([600]))
    # seed=None draws fresh randomness
    a = data.partition_noniid(y, 20, seed=None)
    b = data.partition_noniid(y, 20, seed=None)
    assert not all(torch.equal(u, v) for u, v in zip(a, b))


def test_iid_partition():
    y = torch.arange(1000) % 10
    excl = torch.arange(100)
    parts = data.partition_iid(y, 30, samples_per_client=25, seed=0, exclude=excl)
    allidx = torch.cat(parts)
    assert len(parts) == 30 and all(p.numel() == 25 for p in parts)
    assert allidx.unique().numel() == 750 and not torch.isin(allidx, excl).any()
    # IID: label mix follows the data (each class ~75 of 750)
    assert torch.bincount(y[allidx], minlength=10).min() > 40
    again = data.partition_iid(y, 30, samples_per_client=25, seed=0, exclude=excl)
    assert all(torch.equal(a, b) for a, b in zip(parts, again))
    assert not torch.equal(torch.cat(data.partition_iid(y, 30, samples_per_client=25, seed=1, exclude=excl)), allidx)
    with pytest.raises(FedshieldError, match="cannot supply"):
        data.partition_iid(y, 10, samples_per_client=91, exclude=excl)


# ------------------------------------------------------------------ root set
def test_root_set_disjoint_uniform_deterministic(mnist_train):
    _, y = mnist_train
    parts = data.partition_noniid(y, 100, seed=0)
    r = data.root_set(y, 100, exclude=parts, seed=0)
    assert r.numel() == 100 and r.unique().numel() == 100
    assert not torch.isin(r, torch.cat(parts)).any()
    assert torch.equal(r, data.root_set(y, 100, exclude=parts, seed=0))
    assert not torch.equal(r, data.root_set(y, 100, exclude=parts, seed=1))
    assert y[r].unique().numel() >= 8  # a uniform sample of 100 MNIST digits covers (nearly) all classes


@pytest.mark.parametrize("bias,expect_bias_count", [(0.1, 10), (0.5, 50), (0.29, 29), (0.125, 13), (1.0, 100), (0.0, 0)])
def test_root_set_bias_fractions(mnist_train, bias, expect_bias_count):
    _, y = mnist_train
    parts = data.partition_noniid(y, 100, seed=0)
    r = data.root_set(y, 100, exclude=parts, bias=bias, bias_class=3, seed=7)
    assert r.numel() == 100 and r.unique().numel() == 100
    assert not torch.isin(r, torch.cat(parts)).any()
    hist = torch.bincount(y[r], minlength=10)
    assert int(hist[3]) == expect_bias_count
    others = torch.cat([hist[:3], hist[4:]])
    rest = 100 - expect_bias_count
    assert int(others.sum()) == rest
    assert int(others.max()) - int(others.min()) <= 1  # spread evenly over the other classes
    if bias == 0.1:
        assert hist.tolist() == [10] * 10  # 1 / num_classes: class-balanced


def test_root_set_errors():
    y = torch.arange(200) % 4
    with pytest.raises(FedshieldError, match="bias"):
        data.root_set(y, 10, bias=1.5)
    with pytest.raises(FedshieldError, match="bias_class"):
        data.root_set(y, 10, bias=0.5, bias_class=7)
    with pytest.raises(FedshieldError, match="class 1"):
        data.root_set(y, 80, bias=0.7, bias_class=1)  # 56 of class 1, only 50 exist
    with pytest.raises(FedshieldError, match="outside exclude"):
        data.root_set(y, 150, exclude=torch.arange(100))


# ------------------------------------------------------------------ download (offline: file:// mirrors)
def test_download_from_mirror_verifies_checksums(tmp_path, data_root):
    bad = tmp_path / "bad"
    bad.mkdir()
    for f in data.RESOURCES["mnist"]["files"]:
        (bad / f).write_bytes(b"not the file")
    target = tmp_path / "dl"
    data.download("mnist", target, mirrors=[(tmp_path / "nowhere").as_uri() + "/", bad.as_uri() + "/",
                                            (data_root / "mnist").as_uri() + "/"], progress=False)
    for f, (algo, digest) in data.RESOURCES["mnist"]["files"].items():
        assert hashlib.new(algo, (target / "mnist" / f).read_bytes()).hexdigest() == digest
    assert torch.equal(data.load_dataset("mnist", "test", target)[1], data.load_dataset("mnist", "test", data_root)[1])
    with pytest.raises(FedshieldError, match="sha256 mismatch"):
        data.download(["fashion-mnist"], target, mirrors=[bad.as_uri() + "/"], progress=False)
    assert not list((target / "fashion-mnist").glob("*.gz"))  # nothing unverified is left behind
    assert not list((target / "fashion-mnist").glob("*.part"))


def test_download_cifar_archive_extracts_and_cli(tmp_path, monkeypatch, cifar10_exact, capsys):
    xe, ye = cifar10_exact["train"]
    xt, yt = cifar10_exact["test"]
    src = tmp_path / "src"
    _write_cifar10_pickles(src / "cifar-10-batches-py", xe[:100], ye[:100], xt[:20], yt[:20])
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    with tarfile.open(mirror / "cifar-10-python.tar.gz", "w:gz") as tar:
        tar.add(src / "cifar-10-batches-py", arcname="cifar-10-batches-py")
    md5 = hashlib.md5((mirror / "cifar-10-python.tar.gz").read_bytes()).hexdigest()
    res = dict(data.RESOURCES["cifar10"], files={"cifar-10-python.tar.gz": ("md5", md5)})
    monkeypatch.setitem(data.RESOURCES, "cifar10", res)
    rc = cli.main(["data", "download", "cifar10", "--data-dir", str(tmp_path / "dl"), "--mirror", mirror.as_uri()])
    assert rc == 0
    x, y = data.load_dataset("cifar10", "test", tmp_path / "dl")
    assert torch.equal(x, xt[:20]) and torch.equal(y, yt[:20])
    capsys.readouterr()
    rc = cli.main(["data", "download", "svhn", "--data-dir", str(tmp_path / "dl")])
    err = capsys.readouterr().err
    assert rc == 2 and "unknown dataset" in err and len(err.strip().splitlines()) == 1
