"""Datasets, the paper's non-IID partition and the root set.

Datasets
--------
``load_dataset(name, split)`` returns ``(x, y)``: ``x`` float32 ``[N, C, H, W]`` with values in
``[0, 1]`` (``uint8 / 255``, no normalisation), ``y`` int64 ``[N]``.

========== ============================================================ =================
name       files looked for under the data directory                    images
========== ============================================================ =================
mnist      ``mnist/`` or ``MNIST/raw/``: the four idx files (``.gz`` or  60,000 + 10,000
           uncompressed)
fmnist     ``fashion-mnist/`` or ``FashionMNIST/raw/``: the same names   60,000 + 10,000
cifar10    ``cifar10/cifar-10-batches-py/`` or ``cifar-10-batches-py/``  50,000 + 10,000
           (torchvision's pickles), ``cifar10/cifar10_jpeg.npz`` (all
           images, JPEG re-encoded), ``cifar10/cifar10_exact_subset.npz``
cifar100   ``cifar100/cifar-100-python/`` or ``cifar-100-python/``,      50,000 + 10,000
           else ``cifar100/cifar100_exact_subset.npz``                   or 1,117 + 916
========== ============================================================ =================

CIFAR-10 sources (``cifar10_source``): ``"pickle"`` the original pixels; ``"jpeg"`` the complete
set after a JPEG round trip (``tests/test_data.py`` bounds its error), put back into the original CIFAR-10
order when the exact-subset file (which holds all original labels) is next to it, otherwise
grouped by class; ``"exact"`` the original pixels of a 5,438 + 1,017 image subset; ``"auto"``
the pickles when present, else the JPEG pack.

The data directory is: explicit argument > ``$FEDSHIELD_DATA`` > ``./data``. Decoded arrays are
cached once as ``uint8`` ``.npy`` files (a cached split loads much faster than it decodes, and
faster still with ``dtype=torch.uint8``, which skips the float32 conversion) in
``$FEDSHIELD_DATA_CACHE`` when set, else ``<data dir>/_cache/`` when the data directory is
writable, else ``$XDG_CACHE_HOME/fedshield/data`` (default ``~/.cache/fedshield/data``).
The cache key covers the source files' paths, sizes and mtimes; bump ``_CACHE_VERSION`` when the
decoding changes. ``fedshield data download mnist fmnist cifar10 --data-dir DIR`` fetches
the official files (checksums verified); ``fedshield data prepare cifar10`` decodes and
caches (both are :mod:`fedshield.commands.data`, which calls :func:`download` and
:func:`load_dataset`). The CIFAR pickles are read with :mod:`pickle`: use only the official
(checksummed) files.

Partitions
----------
:func:`partition_noniid` is the paper's partition (Section 6A): each of ``n`` clients gets
``classes_per_client`` (2) distinct random classes and, for each, ``U{1..k}`` samples of that
class; :func:`partition_iid` draws equal random shares. :func:`root_set` draws the server's small
public root set (100 images) from the training split outside every client's data, optionally
biased towards one class (Table III[C]). All are deterministic in ``seed`` (``None``: OS entropy).
"""
from __future__ import annotations

import gzip
import hashlib
import io
import json
import math
import os
import pickle
import tarfile
import tempfile
import urllib.error
import urllib.request
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import torch
from torch import Tensor
from tqdm.auto import tqdm

from .errors import FedshieldError
from .utils import make_generator

__all__ = [
    "DATASETS", "NUM_CLASSES", "PAPER_PARTITION", "CIFAR10_SOURCES", "data_dir", "cache_root",
    "canonical_name", "load_dataset", "class_names", "partition_noniid", "partition_iid",
    "root_set", "download",
]

DATASETS = ("mnist", "fmnist", "cifar10", "cifar100")
NUM_CLASSES = {"mnist": 10, "fmnist": 10, "cifar10": 10, "cifar100": 100}
CIFAR10_SOURCES = ("auto", "pickle", "jpeg", "exact")
CIFAR100_SOURCES = ("auto", "pickle", "exact")

#: The paper's partition parameters (Section 6A): ``partition_noniid(y, **PAPER_PARTITION[name])``.
PAPER_PARTITION = {
    "mnist": dict(n_clients=100, classes_per_client=2, max_per_class=10),
    "fmnist": dict(n_clients=100, classes_per_client=2, max_per_class=10),
    "cifar10": dict(n_clients=1000, classes_per_client=2, max_per_class=20),
}

_ALIASES = {
    "mnist": "mnist",
    "fmnist": "fmnist", "fashion-mnist": "fmnist", "fashion_mnist": "fmnist", "fashionmnist": "fmnist",
    "cifar10": "cifar10", "cifar-10": "cifar10", "cifar_10": "cifar10",
    "cifar100": "cifar100", "cifar-100": "cifar100", "cifar_100": "cifar100",
}

_FMNIST_NAMES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                 "Sneaker", "Bag", "Ankle boot")
_CIFAR10_NAMES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
                  "truck")

_IDX_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
_IDX_DIRS = {"mnist": ("mnist", "MNIST/raw"), "fmnist": ("fashion-mnist", "FashionMNIST/raw")}

_CACHE_VERSION = 1


# --------------------------------------------------------------------------------------------
# directories
# --------------------------------------------------------------------------------------------
def data_dir(path: str | os.PathLike | None = None) -> Path:
    """The data directory: ``path`` when given, else ``$FEDSHIELD_DATA``, else ``./data``;
    returned as an absolute, resolved path (it need not exist yet)."""
    p = path if path not in (None, "") else (os.environ.get("FEDSHIELD_DATA") or "data")
    return Path(p).expanduser().resolve()


_resolve_data_dir = data_dir  # for functions whose ``data_dir`` argument shadows the function


def _is_writable(p: Path) -> bool:
    """A directory we may write to: some write permission bit is set (so that a read-only shared
    folder counts as read-only even for root, who ignores permission bits) and access() agrees."""
    try:
        mode = p.stat().st_mode
    except OSError:
        return False
    return bool(mode & 0o222) and os.access(p, os.W_OK | os.X_OK)


def _writable_dir(p: Path) -> bool:
    """Create ``p`` if needed (only below a writable ancestor) and tell whether it is writable."""
    p = Path(p).expanduser().absolute()
    if not p.exists():
        anc = p.parent
        while not anc.exists() and anc != anc.parent:
            anc = anc.parent
        if not _is_writable(anc):
            return False
        try:
            p.mkdir(parents=True, exist_ok=True)
        except OSError:
            return False
    return p.is_dir() and _is_writable(p)


def cache_root(data_path: str | os.PathLike | None = None) -> Path | None:
    """Where decoded datasets are cached: ``$FEDSHIELD_DATA_CACHE`` > ``<data dir>/_cache`` (when
    writable) > ``$XDG_CACHE_HOME/fedshield/data`` (``~/.cache/fedshield/data``); ``None`` when
    none of them is writable (then nothing is cached on disk)."""
    cands = []
    if os.environ.get("FEDSHIELD_DATA_CACHE"):
        cands.append(Path(os.environ["FEDSHIELD_DATA_CACHE"]).expanduser())
    d = data_dir(data_path)
    if d.is_dir() and _is_writable(d):
        cands.append(d / "_cache")
    xdg = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    cands.append(Path(xdg).expanduser() / "fedshield" / "data")
    for c in cands:
        if _writable_dir(c):
            return c.resolve()
    return None


def canonical_name(name: str) -> str:
    """``'fashion-mnist'`` -> ``'fmnist'`` etc.; unknown names raise :class:`FedshieldError`."""
    key = str(name).strip().lower()
    if key not in _ALIASES:
        raise FedshieldError(f"unknown dataset {name!r}; choose from {list(DATASETS)}")
    return _ALIASES[key]


def _how_to_get(name: str, root: Path) -> str:
    return (f"get it with `fedshield data download {name} --data-dir {root}` "
            f"or point FEDSHIELD_DATA at a directory that has it")


def _missing(what: str, name: str, root: Path, looked: Sequence[Path]) -> FedshieldError:
    where = ", ".join(str(p) for p in looked)
    return FedshieldError(f"{what} not found (looked for {where}); {_how_to_get(name, root)}")


# --------------------------------------------------------------------------------------------
# readers (return uint8 NCHW numpy arrays and integer label arrays)
# --------------------------------------------------------------------------------------------
def _read_idx(path: Path) -> np.ndarray:
    """Parse an idx file (``.gz`` or raw): magic ``00 00 08 ndim``, ``ndim`` big-endian int32
    sizes, then the unsigned bytes."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            buf = f.read()
    except (OSError, EOFError) as e:
        raise FedshieldError(f"cannot read {path}: {e}") from e
    if len(buf) < 4 or buf[0] != 0 or buf[1] != 0 or buf[2] != 0x08:
        raise FedshieldError(f"{path} is not an unsigned-byte idx file (bad magic number)")
    ndim = buf[3]
    dims = np.frombuffer(buf, dtype=">i4", count=ndim, offset=4).astype(np.int64)
    data = np.frombuffer(buf, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(dims)):
        raise FedshieldError(f"{path} is truncated: header says {tuple(dims)}, found {data.size} bytes")
    return data.reshape(tuple(dims))


def _find_idx(name: str, split: str, root: Path) -> tuple[Path, Path]:
    found = []
    for fname in _IDX_FILES[split]:
        looked = []
        hit = None
        for sub in _IDX_DIRS[name]:
            for suffix in (".gz", ""):
                p = root / sub / (fname + suffix)
                looked.append(p)
                if p.is_file():
                    hit = p
                    break
            if hit:
                break
        if hit is None:
            raise _missing(f"{name} {split} file {fname}.gz", name, root,
                           [root / sub for sub in _IDX_DIRS[name]])
        found.append(hit)
    return found[0], found[1]


def _load_idx_split(name: str, split: str, root: Path):
    img_p, lab_p = _find_idx(name, split, root)

    def read():
        x = _read_idx(img_p)
        y = _read_idx(lab_p)
        if x.ndim != 3 or y.ndim != 1 or len(x) != len(y):
            raise FedshieldError(f"{img_p} / {lab_p}: shapes {x.shape} / {y.shape} do not match")
        return x[:, None], y  # N,1,H,W

    return [img_p, lab_p], read


def _cifar_pickle_dir(root: Path, folder: str, sub: str) -> tuple[Path | None, list[Path]]:
    looked = [root / folder / sub, root / sub]
    for p in looked:
        if p.is_dir():
            return p, looked
    return None, looked


def _unpickle(path: Path) -> dict:
    try:
        with open(path, "rb") as f:
            return pickle.load(f, encoding="bytes")
    except (OSError, pickle.UnpicklingError, EOFError) as e:
        raise FedshieldError(f"cannot read CIFAR batch file {path}: {e}") from e


def _load_cifar10_pickle(split: str, root: Path):
    d, looked = _cifar_pickle_dir(root, "cifar10", "cifar-10-batches-py")
    if d is None:
        raise _missing("cifar10 torchvision pickles (cifar-10-batches-py/)", "cifar10", root, looked)
    names = [f"data_batch_{i}" for i in range(1, 6)] if split == "train" else ["test_batch"]
    files = [d / n for n in names]
    for f in files:
        if not f.is_file():
            raise _missing(f"cifar10 batch file {f.name}", "cifar10", root, [d])

    def read():
        xs, ys = [], []
        for f in files:
            b = _unpickle(f)
            # rows: 1024 red, 1024 green, 1024 blue values, each plane row-major -> already CHW
            xs.append(np.asarray(b[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
            ys.append(np.asarray(b[b"labels"], dtype=np.int64))
        return np.concatenate(xs), np.concatenate(ys)

    return files, read


def _load_cifar100_pickle(split: str, root: Path, coarse: bool):
    d, looked = _cifar_pickle_dir(root, "cifar100", "cifar-100-python")
    if d is None:
        raise _missing("cifar100 pickles (cifar-100-python/)", "cifar100", root, looked)
    f = d / split
    if not f.is_file():
        raise _missing(f"cifar100 file {split}", "cifar100", root, [d])

    def read():
        b = _unpickle(f)
        x = np.asarray(b[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
        y = np.asarray(b[b"coarse_labels" if coarse else b"fine_labels"], dtype=np.int64)
        return x, y

    return [f], read


def _npz_file(root: Path, name: str, folder: str, fname: str) -> Path:
    p = root / folder / fname
    if not p.is_file():
        raise _missing(f"{name} file {fname}", name, root, [root / folder])
    return p


def _load_exact(name: str, split: str, root: Path, coarse: bool):
    if name == "cifar10":
        p = _npz_file(root, name, "cifar10", "cifar10_exact_subset.npz")
        ykey = f"y_{split}"
    else:
        p = _npz_file(root, name, "cifar100", "cifar100_exact_subset.npz")
        ykey = f"y_{split}_{'coarse' if coarse else 'fine'}"

    def read():
        with np.load(p) as z:
            x = np.ascontiguousarray(z[f"x_{split}"].transpose(0, 3, 1, 2))  # NHWC -> NCHW
            y = z[ykey].astype(np.int64)
        return x, y

    return [p], read


def _jpeg_original_positions(labels: np.ndarray, within: np.ndarray, all_labels: np.ndarray) -> np.ndarray:
    """Original CIFAR-10 index of each image of the JPEG pack: the ``within[i]``-th image of class
    ``labels[i]`` in the original order given by ``all_labels``."""
    pos = np.empty(len(labels), dtype=np.int64)
    for c in np.unique(labels):  # one vectorised step per class
        orig = np.flatnonzero(all_labels == c)
        sel = labels == c
        if within[sel].max(initial=-1) >= len(orig):
            raise ValueError("index out of range")
        pos[sel] = orig[within[sel]]
    if not np.array_equal(np.sort(pos), np.arange(len(labels))):
        raise ValueError("not a permutation")
    return pos


def _load_cifar10_jpeg(split: str, root: Path, progress: bool):
    p = _npz_file(root, "cifar10", "cifar10", "cifar10_jpeg.npz")
    exact = root / "cifar10" / "cifar10_exact_subset.npz"
    files = [p] + ([exact] if exact.is_file() else [])

    def read():
        from PIL import Image

        with np.load(p) as z:
            jpeg, offs = z[f"{split}_jpeg"], z[f"{split}_offsets"]
            y = z[f"{split}_labels"].astype(np.int64)
            within = z[f"{split}_index_within_class"].astype(np.int64)
        n = len(offs) - 1
        x = np.empty((n, 32, 32, 3), dtype=np.uint8)
        view = memoryview(jpeg)
        for i in tqdm(range(n), desc=f"decoding cifar10 {split} JPEGs", disable=not progress,
                      mininterval=1.0):
            with Image.open(io.BytesIO(view[offs[i]:offs[i + 1]])) as im:
                x[i] = np.asarray(im.convert("RGB"))
        x = np.ascontiguousarray(x.transpose(0, 3, 1, 2))
        if exact.is_file():  # restore the original CIFAR-10 order from the full label arrays
            with np.load(exact) as z:
                all_labels = z[f"y_{split}_all_{n}"] if f"y_{split}_all_{n}" in z.files else None
            if all_labels is not None:
                try:
                    pos = _jpeg_original_positions(y, within, all_labels.astype(np.int64))
                except ValueError:
                    pos = None
                if pos is not None:
                    inv = np.empty_like(pos)
                    inv[pos] = np.arange(n)
                    x, y = x[inv], y[inv]
        return x, y

    return files, read


# --------------------------------------------------------------------------------------------
# decode-once cache
# --------------------------------------------------------------------------------------------
def _cache_key(tag: str, files: Sequence[Path]) -> str:
    stats = []
    for f in files:
        st = f.stat()
        stats.append([str(f.resolve()), st.st_size, st.st_mtime_ns])
    blob = json.dumps([_CACHE_VERSION, tag, stats]).encode()
    return f"{tag}-{hashlib.sha256(blob).hexdigest()[:16]}"


def _atomic_save(path: Path, arr: np.ndarray) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".npy.tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            np.save(f, arr, allow_pickle=False)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _cached(tag: str, files: Sequence[Path], read, root: Path) -> tuple[np.ndarray, np.ndarray]:
    croot = cache_root(root)
    if croot is not None:
        key = _cache_key(tag, files)
        px, py = croot / f"{key}.x.npy", croot / f"{key}.y.npy"
        if px.is_file() and py.is_file():
            try:
                x, y = np.load(px, allow_pickle=False), np.load(py, allow_pickle=False)
                if x.dtype == np.uint8 and x.ndim == 4 and y.shape == (len(x),):
                    return x, y
            except (OSError, ValueError):
                pass  # a damaged cache entry: decode again
    x, y = read()
    x = np.ascontiguousarray(x, dtype=np.uint8)
    y = np.ascontiguousarray(y, dtype=np.int64)
    if croot is not None:
        try:
            _atomic_save(py, y)
            _atomic_save(px, x)
        except OSError:
            pass  # caching is an optimisation only
    return x, y


# --------------------------------------------------------------------------------------------
# public loaders
# --------------------------------------------------------------------------------------------
def load_dataset(name: str, split: str = "train", data_dir: str | os.PathLike | None = None, *,
                 cifar10_source: str = "auto", cifar100_source: str = "auto", coarse: bool = False,
                 dtype: torch.dtype = torch.float32, progress: bool = True) -> tuple[Tensor, Tensor]:
    """Load one split of a dataset as tensors.

    Parameters
    ----------
    name : ``'mnist'``, ``'fmnist'`` (alias ``'fashion-mnist'``), ``'cifar10'`` or ``'cifar100'``.
    split : ``'train'`` or ``'test'``.
    data_dir : data directory (default: ``$FEDSHIELD_DATA``, else ``./data``).
    cifar10_source : ``'auto'`` (pickles if present, else the JPEG pack), ``'pickle'``, ``'jpeg'``
        or ``'exact'`` (the exact-pixel subset). See the module docstring.
    cifar100_source : ``'auto'`` (pickles ``cifar-100-python/`` if present, else the exact subset),
        ``'pickle'`` or ``'exact'``.
    coarse : CIFAR-100 only: the 20 coarse labels instead of the 100 fine labels.
    dtype : ``torch.float32`` (default) or another floating type: ``x = pixel / 255``;
        ``torch.uint8``: the raw pixels (4x less memory; convert batches with ``x.float() / 255``).
    progress : progress bar while decoding the JPEG pack (only the first time; then cached).

    Returns
    -------
    x : float32 ``[N, C, H, W]``, ``x = pixel / 255`` in ``[0, 1]`` (uint8 pixels for ``dtype=torch.uint8``).
    y : int64 ``[N]`` class labels.
    """
    name = canonical_name(name)
    if not (dtype == torch.uint8 or (isinstance(dtype, torch.dtype) and dtype.is_floating_point)):
        raise FedshieldError(f"dtype must be torch.uint8 or a floating dtype, got {dtype}")
    if split not in ("train", "test"):
        raise FedshieldError(f"split must be 'train' or 'test', got {split!r}")
    root = _resolve_data_dir(data_dir)
    if name in ("mnist", "fmnist"):
        files, read = _load_idx_split(name, split, root)
        tag = f"{name}-{split}"
    elif name == "cifar10":
        src = str(cifar10_source).lower()
        if src not in CIFAR10_SOURCES:
            raise FedshieldError(f"cifar10_source must be one of {list(CIFAR10_SOURCES)}, got {cifar10_source!r}")
        if src == "auto":
            src = "pickle" if _cifar_pickle_dir(root, "cifar10", "cifar-10-batches-py")[0] else "jpeg"
            if src == "jpeg" and not (root / "cifar10" / "cifar10_jpeg.npz").is_file():
                raise _missing("cifar10 (cifar-10-batches-py/ or cifar10_jpeg.npz)", "cifar10", root,
                               [root / "cifar10" / "cifar-10-batches-py", root / "cifar-10-batches-py",
                                root / "cifar10" / "cifar10_jpeg.npz"])
        if src == "pickle":
            files, read = _load_cifar10_pickle(split, root)
        elif src == "jpeg":
            files, read = _load_cifar10_jpeg(split, root, progress)
        else:
            files, read = _load_exact("cifar10", split, root, False)
        tag = f"cifar10-{src}-{split}"
    else:
        src = str(cifar100_source).lower()
        if src not in CIFAR100_SOURCES:
            raise FedshieldError(f"cifar100_source must be one of {list(CIFAR100_SOURCES)}, got {cifar100_source!r}")
        if src == "auto":
            src = "pickle" if _cifar_pickle_dir(root, "cifar100", "cifar-100-python")[0] else "exact"
        labels = "coarse" if coarse else "fine"
        if src == "pickle":
            files, read = _load_cifar100_pickle(split, root, coarse)
        else:
            files, read = _load_exact("cifar100", split, root, coarse)
        tag = f"cifar100-{src}-{split}-{labels}"
    x, y = _cached(tag, files, read, root)
    if not x.flags.writeable:  # a fresh decode can return a view of a read-only buffer
        x = x.copy()
    y = torch.from_numpy(np.array(y, dtype=np.int64))
    xt = torch.from_numpy(x)
    if dtype == torch.uint8:
        return xt, y
    return xt.to(dtype).div_(255.0), y


def class_names(name: str, data_dir: str | os.PathLike | None = None, *, coarse: bool = False) -> list[str]:
    """Human-readable class names (CIFAR-100's are read from its subset file)."""
    name = canonical_name(name)
    if name == "mnist":
        return [str(i) for i in range(10)]
    if name == "fmnist":
        return list(_FMNIST_NAMES)
    if name == "cifar10":
        return list(_CIFAR10_NAMES)
    root = _resolve_data_dir(data_dir)
    p = _npz_file(root, name, "cifar100", "cifar100_exact_subset.npz")
    with np.load(p) as z:
        return [str(s) for s in z["coarse_label_names" if coarse else "fine_label_names"]]


# --------------------------------------------------------------------------------------------
# partitions and the root set
# --------------------------------------------------------------------------------------------
def _check_labels(labels) -> np.ndarray:
    y = torch.as_tensor(labels)
    if y.dim() != 1 or y.dtype.is_floating_point or y.dtype == torch.bool or y.is_complex():
        raise FedshieldError(f"labels must be a 1-D integer tensor, got {y.dtype} of shape {tuple(y.shape)}")
    y = y.detach().cpu().to(torch.int64).numpy()
    if y.size and int(y.min()) < 0:
        raise FedshieldError("labels must be >= 0")
    return y


def _check_pos_int(v, name: str) -> int:
    if isinstance(v, bool) or int(v) != v or int(v) < 1:
        raise FedshieldError(f"{name} must be a positive integer, got {v!r}")
    return int(v)


def _available(n: int, exclude) -> np.ndarray:
    """Boolean mask of the indices not in ``exclude`` (indices, a list of index tensors, or a mask)."""
    mask = np.ones(n, dtype=bool)
    if exclude is None:
        return mask
    if isinstance(exclude, (list, tuple)) and exclude and all(torch.is_tensor(e) for e in exclude):
        exclude = torch.cat([e.reshape(-1).to(torch.int64).cpu() for e in exclude])
    ex = torch.as_tensor(exclude).detach().cpu()
    if ex.dtype == torch.bool:
        if tuple(ex.shape) != (n,):
            raise FedshieldError(f"a boolean exclude mask must have shape ({n},), got {tuple(ex.shape)}")
        return ~ex.numpy()
    if ex.numel() == 0:
        return mask
    if ex.dtype.is_floating_point or ex.is_complex():
        raise FedshieldError(f"exclude must hold integer indices, got {ex.dtype}")
    ex = ex.reshape(-1).to(torch.int64).numpy()
    if int(ex.min()) < 0 or int(ex.max()) >= n:
        raise FedshieldError(f"exclude holds indices outside [0, {n})")
    mask[ex] = False
    return mask


# The index bookkeeping below runs in numpy (single-threaded: no thread-pool stalls on a busy
# machine); all randomness comes from the explicit torch.Generator.
def _randperm(n: int, g: torch.Generator) -> np.ndarray:
    return torch.randperm(n, generator=g).numpy()


def _class_shuffled(y: np.ndarray, avail: np.ndarray, n_cls: int, g: torch.Generator):
    """Available indices in random order grouped by class, and each class's start offset
    (``[n_cls + 1]``)."""
    idx = np.flatnonzero(avail)
    idx = idx[_randperm(idx.size, g)]
    pool = idx[np.argsort(y[idx], kind="stable")]
    start = np.concatenate([[0], np.cumsum(np.bincount(y[pool], minlength=n_cls))])
    return pool, start


def _take(pool: np.ndarray, starts: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Concatenate ``pool[starts[j] : starts[j] + counts[j]]`` over ``j`` (vectorised)."""
    total = int(counts.sum())
    run_start = np.repeat(starts, counts)
    first = np.repeat(np.cumsum(counts) - counts, counts)
    return pool[run_start + np.arange(total) - first]


def _split_by_owner(owner: np.ndarray, idx: np.ndarray, n_owners: int) -> list[Tensor]:
    """Group ``idx`` by ``owner`` into ``n_owners`` sorted int64 index tensors."""
    order = np.lexsort((idx, owner))
    bounds = np.cumsum(np.bincount(owner, minlength=n_owners))[:-1]
    return [torch.from_numpy(np.ascontiguousarray(a)) for a in np.split(idx[order], bounds)]


def partition_noniid(labels: Tensor, n_clients: int, *, classes_per_client: int = 2, max_per_class: int = 10,
                     seed: int | None = 0, exclude=None) -> list[Tensor]:
    """The paper's non-IID partition (Section 6A).

    Client ``i`` draws ``classes_per_client`` distinct classes ``c_i1, c_i2, ...`` uniformly from
    the classes that have samples outside ``exclude``, and for each a count
    ``k_ij ~ U{1, ..., max_per_class}``; it then receives ``k_ij`` samples of class ``c_ij`` drawn
    uniformly without replacement, so that no sample goes to two clients. Samples in ``exclude``
    (e.g. the root set) are never handed out.

    Parameters
    ----------
    labels : ``[N]`` integer labels of the training split.
    n_clients : number of clients ``n`` (paper: 100 for (F)MNIST, 1,000 for CIFAR-10).
    classes_per_client : distinct classes per client (paper: 2).
    max_per_class : ``k``, the largest number of samples per class (paper: 10, CIFAR-10: 20).
    seed : random seed (same seed, same partition); ``None`` draws from OS entropy.
    exclude : indices (a tensor, a list of tensors, or a boolean mask) no client may get.

    Returns
    -------
    list of ``n_clients`` sorted int64 index tensors into ``labels``.

    Raises
    ------
    FedshieldError
        When a class cannot supply the samples its clients drew (too many clients or too large
        ``max_per_class`` for the data).
    """
    y = _check_labels(labels)
    n_clients = _check_pos_int(n_clients, "n_clients")
    cpc = _check_pos_int(classes_per_client, "classes_per_client")
    kmax = _check_pos_int(max_per_class, "max_per_class")
    avail = _available(len(y), exclude)
    n_cls = int(y.max()) + 1 if y.size else 0
    supply = np.bincount(y[avail], minlength=n_cls)
    classes = np.flatnonzero(supply)
    if cpc > classes.size:
        raise FedshieldError(f"classes_per_client={cpc} but only {classes.size} classes have "
                             f"samples outside exclude")
    g = make_generator(seed)
    # distinct classes per client: the first cpc entries of a random permutation of the classes
    keys = torch.rand(n_clients, classes.size, generator=g).numpy()
    cls = classes[np.argsort(keys, axis=1, kind="stable")[:, :cpc]].reshape(-1)  # [n * cpc]
    cnt = torch.randint(1, kmax + 1, (n_clients * cpc,), generator=g).numpy()    # U{1..k}
    owner = np.repeat(np.arange(n_clients), cpc)
    demand = np.bincount(cls, weights=cnt, minlength=n_cls).astype(np.int64)
    short = np.flatnonzero(demand > supply)
    if short.size:
        c = int(short[0])
        raise FedshieldError(
            f"the data cannot supply this partition: class {c} has {int(supply[c])} samples outside "
            f"exclude but its clients drew {int(demand[c])} (n_clients={n_clients}, "
            f"max_per_class={kmax}); use fewer clients, a smaller max_per_class or a larger split")
    pool, start = _class_shuffled(y, avail, n_cls, g)
    # within each class, hand out consecutive runs of the shuffled pool, clients in order
    order = np.argsort(cls, kind="stable")
    cls_s, cnt_s, own_s = cls[order], cnt[order], owner[order]
    within = np.cumsum(cnt_s) - cnt_s - np.concatenate([[0], np.cumsum(demand)])[cls_s]
    idx = _take(pool, start[cls_s] + within, cnt_s)
    return _split_by_owner(np.repeat(own_s, cnt_s), idx, n_clients)


def partition_iid(labels: Tensor, n_clients: int, *, samples_per_client: int, seed: int | None = 0,
                  exclude=None) -> list[Tensor]:
    """IID partition: ``n_clients`` disjoint uniformly random subsets of ``samples_per_client``
    samples each, drawn without replacement from the indices outside ``exclude``.

    Returns a list of ``n_clients`` sorted int64 index tensors.
    """
    y = _check_labels(labels)
    n_clients = _check_pos_int(n_clients, "n_clients")
    s = _check_pos_int(samples_per_client, "samples_per_client")
    idx = np.flatnonzero(_available(len(y), exclude))
    if n_clients * s > idx.size:
        raise FedshieldError(f"the data cannot supply this partition: {n_clients} clients x {s} samples "
                             f"> {idx.size} available samples")
    g = make_generator(seed)
    chosen = np.sort(idx[_randperm(idx.size, g)[: n_clients * s]].reshape(n_clients, s), axis=1)
    return [torch.from_numpy(row) for row in chosen]


def root_set(labels: Tensor, n: int = 100, *, exclude=None, bias: float | None = None, bias_class: int = 0,
             seed: int | None = 0) -> Tensor:
    """The server's root set: ``n`` training samples outside every client's data.

    Parameters
    ----------
    labels : ``[N]`` integer labels of the training split.
    n : root-set size (paper: 100).
    exclude : indices no root sample may come from (all clients' indices; a tensor, a list of
        tensors such as a partition, or a boolean mask).
    bias : ``None``: a uniform random sample. ``b`` in ``[0, 1]``: ``m = floor(b n + 1/2)`` samples
        of ``bias_class`` and the other ``n - m`` spread evenly over the remaining classes
        (the remainder of the division goes to randomly chosen classes), so ``b = 1 / C`` gives a
        class-balanced set and ``b = 1`` a single-class one (Table III[C]).
    bias_class : the over-represented class.
    seed : random seed; ``None`` draws from OS entropy.

    Returns
    -------
    sorted int64 ``[n]`` indices into ``labels``.
    """
    y = _check_labels(labels)
    n = _check_pos_int(n, "n")
    avail = _available(len(y), exclude)
    g = make_generator(seed)
    if bias is None:
        idx = np.flatnonzero(avail)
        if n > idx.size:
            raise FedshieldError(f"root set of {n} samples requested but only {idx.size} are outside exclude")
        return torch.from_numpy(np.sort(idx[_randperm(idx.size, g)[:n]]))
    b = float(bias)
    if not 0.0 <= b <= 1.0:
        raise FedshieldError(f"bias must be in [0, 1], got {bias}")
    n_cls = int(y.max()) + 1
    classes = np.unique(y)
    bias_class = int(bias_class)
    if bias_class not in classes:
        raise FedshieldError(f"bias_class {bias_class} does not occur in the labels")
    others = classes[classes != bias_class]
    n_b = int(math.floor(b * n + 0.5))
    rest = n - n_b
    quota = np.zeros(n_cls, dtype=np.int64)
    quota[bias_class] = n_b
    if rest:
        if others.size == 0:
            raise FedshieldError("bias < 1 needs classes other than bias_class")
        per, extra = divmod(rest, others.size)
        quota[others] = per
        quota[others[_randperm(others.size, g)[:extra]]] += 1  # the remainder goes to random classes
    supply = np.bincount(y[avail], minlength=n_cls)
    short = np.flatnonzero(quota > supply)
    if short.size:
        c = int(short[0])
        raise FedshieldError(f"root set needs {int(quota[c])} samples of class {c} but only "
                             f"{int(supply[c])} are outside exclude")
    pool, start = _class_shuffled(y, avail, n_cls, g)
    cls = np.flatnonzero(quota)
    return torch.from_numpy(np.sort(_take(pool, start[cls], quota[cls])))


# --------------------------------------------------------------------------------------------
# download (needs internet; checksums verified)
# --------------------------------------------------------------------------------------------
_MNIST_SHA256 = {
    "train-images-idx3-ubyte.gz": "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
    "train-labels-idx1-ubyte.gz": "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
    "t10k-images-idx3-ubyte.gz": "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
    "t10k-labels-idx1-ubyte.gz": "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
}
_FMNIST_SHA256 = {
    "train-images-idx3-ubyte.gz": "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
    "train-labels-idx1-ubyte.gz": "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
    "t10k-images-idx3-ubyte.gz": "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
    "t10k-labels-idx1-ubyte.gz": "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
}
#: what :func:`download` fetches: target folder, files with ("sha256" | "md5", digest), URL prefixes
RESOURCES = {
    "mnist": dict(folder="mnist", files={k: ("sha256", v) for k, v in _MNIST_SHA256.items()},
                  mirrors=("https://ossci-datasets.s3.amazonaws.com/mnist/",
                           "http://yann.lecun.com/exdb/mnist/")),
    "fmnist": dict(folder="fashion-mnist", files={k: ("sha256", v) for k, v in _FMNIST_SHA256.items()},
                   mirrors=("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",)),
    "cifar10": dict(folder="cifar10", files={"cifar-10-python.tar.gz": ("md5", "c58f30108f718f92721af3b95e74349a")},
                    mirrors=("https://www.cs.toronto.edu/~kriz/",), extract="cifar-10-batches-py"),
    "cifar100": dict(folder="cifar100", files={"cifar-100-python.tar.gz": ("md5", "eb9058c3a382ffc7106e4002c42a8d85")},
                     mirrors=("https://www.cs.toronto.edu/~kriz/",), extract="cifar-100-python"),
}


def _digest(path: Path, algo: str) -> str:
    h = hashlib.new(algo)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _fetch(urls: Sequence[str], dest: Path, algo: str, digest: str, progress: bool) -> None:
    """Download ``dest`` from the first URL that serves the right bytes (atomic write)."""

    errors = []
    for url in urls:
        fd, tmp = tempfile.mkstemp(dir=dest.parent, suffix=".part")
        try:
            h = hashlib.new(algo)
            with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=60) as r:
                total = int(r.headers.get("Content-Length") or 0) or None
                with tqdm(total=total, unit="B", unit_scale=True, desc=dest.name, disable=not progress) as bar:
                    for chunk in iter(lambda: r.read(1 << 20), b""):
                        out.write(chunk)
                        h.update(chunk)
                        bar.update(len(chunk))
            if h.hexdigest() != digest:
                errors.append(f"{url}: {algo} mismatch")
                continue
            os.replace(tmp, dest)
            return
        except (urllib.error.URLError, OSError, ValueError) as e:
            errors.append(f"{url}: {e}")
        finally:
            Path(tmp).unlink(missing_ok=True)
    raise FedshieldError(f"could not download {dest.name} ({'; '.join(errors)})")


def download(names: str | Iterable[str], data_dir: str | os.PathLike | None = None, *,
             mirrors: Sequence[str] | None = None, progress: bool = True) -> None:
    """Download datasets from their official sources into the data directory, verifying each
    file's checksum (sha256 for (F)MNIST, the published md5 for the CIFAR archives, which are
    unpacked to ``cifar10/cifar-10-batches-py`` and ``cifar100/cifar-100-python``).

    Files already present with the right checksum are kept. ``mirrors`` replaces the built-in URL
    prefixes (each prefix + file name is tried in turn), e.g. a local mirror or ``file://`` folder.
    """
    if isinstance(names, str):
        names = [names]
    names = [canonical_name(nm) for nm in names]
    root = _resolve_data_dir(data_dir)
    for nm in names:
        res = RESOURCES[nm]
        folder = root / res["folder"]
        extracted = folder / res["extract"] if "extract" in res else None
        if extracted is not None and extracted.is_dir() and any(extracted.iterdir()):
            continue  # already unpacked
        prefixes = list(mirrors) if mirrors else list(res["mirrors"])
        for fname, (algo, digest) in res["files"].items():
            dest = folder / fname
            if not (dest.is_file() and _digest(dest, algo) == digest):
                if not _writable_dir(folder):
                    raise FedshieldError(f"cannot write to {folder}; choose another --data-dir")
                urls = [p if p.endswith(fname) else p.rstrip("/") + "/" + fname for p in prefixes]
                _fetch(urls, dest, algo, digest, progress)
            if extracted is not None:
                if not _writable_dir(folder):
                    raise FedshieldError(f"cannot write to {folder}; choose another --data-dir")
                with tarfile.open(dest, "r:gz") as tar:
                    if hasattr(tarfile, "data_filter"):
                        tar.extractall(folder, filter="data")
                    else:  # Python < 3.11.4: refuse members that would land outside the folder
                        for m in tar.getmembers():
                            if not (folder / m.name).resolve().is_relative_to(folder.resolve()) or m.issym() or m.islnk():
                                raise FedshieldError(f"{dest} holds an unsafe member {m.name!r}")
                        tar.extractall(folder)

