"""Raw dataset loading shared by every attack in the package.

Two ways in, one result:

* **Offline mirror.** When the environment variable ``SPLITNN_DATA_DIR`` names a folder laid out like
  ``mnist/``, ``fashion-mnist/``, ``cifar10/``, ``omniglot/`` holding the original archive files under their
  original names, the arrays are read from there (checksums verified, no network access).
* **Normal download.** Without the variable, MNIST, Fashion-MNIST and CIFAR-10 come from ``keras.datasets``
  and Omniglot from tensorflow-datasets, exactly as on a user's machine.

Every loader returns a :class:`RawData` of uint8 images in NHWC (28x28 grayscale images keep no channel axis,
as in Keras) and uint8 labels of shape ``[N]``. :func:`load_unsplit` adds UnSplit's conversion (float32 in
[0, 1] with a channel axis). The FSHA preprocessing (32x32x3 in [-1, 1]) lives in :mod:`fsha.datasets`.
"""
from __future__ import annotations

import dataclasses
import functools
import gzip
import hashlib
import os
import pickle
import tarfile
import warnings
import zipfile
from pathlib import Path

import numpy as np

DATA_DIR_ENV = "SPLITNN_DATA_DIR"

KNOWN_DATASETS = ("mnist", "fashion_mnist", "cifar10", "omniglot")

_ALIASES = {
    "mnist": "mnist",
    "fashion_mnist": "fashion_mnist",
    "fashion-mnist": "fashion_mnist",
    "f_mnist": "fashion_mnist",
    "fmnist": "fashion_mnist",
    "cifar10": "cifar10",
    "cifar-10": "cifar10",
    "cifar": "cifar10",
    "omniglot": "omniglot",
}


class UnknownDatasetError(ValueError):
    """A dataset name the package does not know."""


class MissingDataError(FileNotFoundError):
    """The offline mirror lacks a file the loader needs."""


class ChecksumError(OSError):
    """A mirror file exists but is not the original archive."""


@dataclasses.dataclass(frozen=True)
class MirrorFile:
    name: str
    size: int
    sha256: str


# Sub-folder of the mirror and the original archives each dataset needs.
_IDX_NAMES = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
              "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")
MIRROR = {
    "mnist": ("mnist", (
        MirrorFile(_IDX_NAMES[0], 9912422, "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609"),
        MirrorFile(_IDX_NAMES[1], 28881, "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c"),
        MirrorFile(_IDX_NAMES[2], 1648877, "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6"),
        MirrorFile(_IDX_NAMES[3], 4542, "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6"),
    )),
    "fashion_mnist": ("fashion-mnist", (
        MirrorFile(_IDX_NAMES[0], 26421880, "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84"),
        MirrorFile(_IDX_NAMES[1], 29515, "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845"),
        MirrorFile(_IDX_NAMES[2], 4422102, "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073"),
        MirrorFile(_IDX_NAMES[3], 5148, "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5"),
    )),
    # The original python archive gives the full dataset; the partial .npz mirror (full train set, first
    # 1,000 test images) is accepted in its place and every result made from it is labelled partial.
    "cifar10": ("cifar10", (
        MirrorFile("cifar-10-python.tar.gz", 170498071,
                   "6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce"),
    )),
    "omniglot": ("omniglot", (
        MirrorFile("images_background.zip", 9464212, ""),
        MirrorFile("images_evaluation.zip", 6462886, ""),
    )),
}
CIFAR10_PARTIAL = MirrorFile("cifar10_train50k_test1k.npz", 118745947,
                             "6e9f0f95bd05065ab132c5e940a673d2cbf49e44c5fd9de08d26ad96b09f44f4")
OMNIGLOT_SMALL = (
    MirrorFile("images_background_small1.zip", 1319022,
               "f38eb80f801274ac2b4dff5b24289016bfaba4a7d5bb50deebf27104ad6cb8a4"),
    MirrorFile("images_background_small2.zip", 1580917,
               "3ccaa407515a8778e5d0861875af38b17e418f301ad5bb3b5a6b65d901a41c7f"),
)
CIFAR10_LABEL_NAMES = ("airplane", "automobile", "bird", "cat", "deer",
                       "dog", "frog", "horse", "ship", "truck")


@dataclasses.dataclass(frozen=True, eq=False)
class RawData:
    """Train and test arrays of one dataset, with where they came from.

    ``partial`` is True when the test split is incomplete (the offline CIFAR-10 mirror holds only the first
    1,000 of its 10,000 test images); ``description`` then says so and must travel with any number computed
    on it.
    """
    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    source: str
    partial: bool = False
    description: str = ""

    def as_tuples(self):
        """``((x_train, y_train), (x_test, y_test))`` as ``keras.datasets`` returns them."""
        return (self.x_train, self.y_train), (self.x_test, self.y_test)

    @property
    def num_classes(self) -> int:
        return int(max(self.y_train.max(), self.y_test.max())) + 1


def canonical_name(name: str) -> str:
    """The package's name for a dataset, or :class:`UnknownDatasetError` listing the known ones."""
    key = str(name).strip().lower()
    if key not in _ALIASES:
        raise UnknownDatasetError(
            f"Unknown dataset {name!r}. Known datasets: {', '.join(KNOWN_DATASETS)} "
            f"(aliases: {', '.join(sorted(k for k in _ALIASES if k not in KNOWN_DATASETS))}).")
    return _ALIASES[key]


def data_dir() -> Path | None:
    """The offline mirror named by ``SPLITNN_DATA_DIR``, or None when loading goes through the network."""
    value = os.environ.get(DATA_DIR_ENV, "").strip()
    if not value:
        return None
    path = Path(value).expanduser()
    if not path.is_dir():
        raise MissingDataError(f"{DATA_DIR_ENV}={value!r} is not a directory.")
    return path


def _missing(dataset: str, folder: Path, files) -> MissingDataError:
    names = "\n".join(f"  {folder / f.name}" for f in files)
    return MissingDataError(
        f"Offline data for {dataset!r} not found. {DATA_DIR_ENV} is set to {folder.parent}, "
        f"so the loader reads the original archives from there and never downloads. Expected:\n{names}\n"
        f"Copy those files there, or unset {DATA_DIR_ENV} to download them through Keras/TFDS.")


@functools.lru_cache(maxsize=None)
def _verified(path: str, size: int, sha256: str, mtime: float) -> bool:
    actual_size = os.path.getsize(path)
    if actual_size != size:
        raise ChecksumError(f"{path} has {actual_size} bytes, the original archive has {size}.")
    if sha256:
        digest = hashlib.sha256()
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 22), b""):
                digest.update(block)
        if digest.hexdigest() != sha256:
            raise ChecksumError(f"{path} has sha256 {digest.hexdigest()}, the original archive has {sha256}.")
    return True


def _check(path: Path, spec: MirrorFile) -> Path:
    _verified(str(path), spec.size, spec.sha256, path.stat().st_mtime)
    return path


def _read_idx(path: Path) -> np.ndarray:
    with gzip.open(path, "rb") as fh:
        raw = fh.read()
    magic = int.from_bytes(raw[0:4], "big")
    ndim = magic & 0xFF
    if magic >> 8 != 0x08:  # 0x08 = unsigned byte payload
        raise ValueError(f"{path} is not an IDX file of unsigned bytes (magic {magic:#010x}).")
    dims = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    return data.reshape(dims)


def _idx_dataset(name: str, root: Path) -> RawData:
    sub, files = MIRROR[name]
    folder = root / sub
    if not all((folder / f.name).is_file() for f in files):
        raise _missing(name, folder, files)
    arrays = [_read_idx(_check(folder / f.name, f)) for f in files]
    return RawData(name, *arrays, source=f"offline mirror {folder}",
                   description=f"{name} (original IDX archives from {folder})")


def _cifar10_offline(root: Path) -> RawData:
    sub, (full,) = MIRROR["cifar10"]
    folder = root / sub
    if (folder / full.name).is_file():
        with tarfile.open(_check(folder / full.name, full), "r:gz") as tar:
            def batch(member):
                entry = pickle.load(tar.extractfile(f"cifar-10-batches-py/{member}"), encoding="bytes")
                x = np.asarray(entry[b"data"], np.uint8).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
                return x, np.asarray(entry[b"labels"], np.uint8)
            train = [batch(f"data_batch_{k}") for k in range(1, 6)]
            x_test, y_test = batch("test_batch")
        return RawData("cifar10", np.concatenate([t[0] for t in train]), np.concatenate([t[1] for t in train]),
                       x_test, y_test, source=f"offline mirror {folder}",
                       description="CIFAR-10 (original python archive)")
    if (folder / CIFAR10_PARTIAL.name).is_file():
        with np.load(_check(folder / CIFAR10_PARTIAL.name, CIFAR10_PARTIAL)) as npz:
            arrays = (npz["x_train"], npz["y_train"], npz["x_test_first1000"], npz["y_test_first1000"])
        return RawData("cifar10", *arrays, source=f"offline mirror {folder} (partial)", partial=True,
                       description="CIFAR-10, partial offline mirror: full train set, first 1,000 of the "
                                   "10,000 test images (not the CIFAR-10 test set)")
    raise _missing("cifar10", folder, (full, CIFAR10_PARTIAL))


def _omniglot_zip(path: Path):
    """Images (105x105 uint8, ink = 0, paper = 255, as the 1-bit PNGs decode) and character labels of one zip."""
    import tensorflow as tf  # only for PNG decoding

    images, labels, characters = [], [], {}
    with zipfile.ZipFile(path) as zf:
        for info in sorted(zf.infolist(), key=lambda i: i.filename):
            if not info.filename.endswith(".png"):
                continue
            character = os.path.dirname(info.filename)
            label = characters.setdefault(character, len(characters))
            png = tf.io.decode_png(zf.read(info), channels=1).numpy()[..., 0]
            images.append(png)
            labels.append(label)
    return np.stack(images), np.asarray(labels, np.int32)


def _omniglot_offline(root: Path, small: bool) -> RawData:
    sub, full = MIRROR["omniglot"]
    folder = root / sub
    files = OMNIGLOT_SMALL if small else full
    if not all((folder / f.name).is_file() for f in files):
        raise _missing("omniglot", folder, files)
    (xtr, ytr), (xte, yte) = (_omniglot_zip(_check(folder / f.name, f)) for f in files)
    what = "background_small1 / background_small2 subsets" if small else "background / evaluation sets"
    return RawData("omniglot", xtr, ytr, xte, yte, source=f"offline mirror {folder}", partial=small,
                   description=f"Omniglot {what} (train / test), 105x105 grayscale")


def _download_failed(name: str, source: str, err: Exception) -> MissingDataError:
    folder, files = MIRROR[name]
    names = ", ".join(f.name for f in files)
    return MissingDataError(
        f"Could not download {name!r} through {source}: {err}\nWithout network access, set {DATA_DIR_ENV} to an "
        f"offline mirror: a folder whose {folder}/ holds the original archives {names}.")


def _online(name: str) -> RawData:
    if name == "omniglot":
        import tensorflow_datasets as tfds

        def split(s):
            ds = tfds.as_numpy(tfds.load("omniglot", split=s, batch_size=-1))
            return ds["image"][..., 0], ds["label"].astype(np.int32)
        try:
            (xtr, ytr), (xte, yte) = split("train"), split("test")
        except Exception as err:  # TFDS raises several types for a failed download
            raise _download_failed(name, "tensorflow-datasets", err) from err
        return RawData(name, xtr, ytr, xte, yte, source="tensorflow-datasets",
                       description="Omniglot (TFDS train / test)")
    import keras

    module = {"mnist": keras.datasets.mnist, "fashion_mnist": keras.datasets.fashion_mnist,
              "cifar10": keras.datasets.cifar10}[name]
    try:
        (xtr, ytr), (xte, yte) = module.load_data()
    except Exception as err:  # keras.utils.get_file raises a bare Exception("URL fetch failure on ...")
        raise _download_failed(name, "keras.datasets", err) from err
    return RawData(name, xtr, ytr.reshape(-1).astype(np.uint8), xte, yte.reshape(-1).astype(np.uint8),
                   source="keras.datasets", description=f"{name} (keras.datasets)")


@functools.lru_cache(maxsize=8)
def _load_cached(name: str, root: str | None, small: bool) -> RawData:
    if root is None:
        data = _online(name)
    elif name == "cifar10":
        data = _cifar10_offline(Path(root))
    elif name == "omniglot":
        data = _omniglot_offline(Path(root), small)
    else:
        data = _idx_dataset(name, Path(root))
    for array in (data.x_train, data.y_train, data.x_test, data.y_test):
        array.setflags(write=False)  # cached and shared: callers must copy before editing
    if data.partial:
        warnings.warn(data.description, stacklevel=3)
    return data


def load_raw(name: str, *, omniglot_small: bool = False) -> RawData:
    """Load a dataset as uint8 arrays (see module docstring for where they come from).

    ``omniglot_small=True`` reads the two small background subsets (the only Omniglot files in the shared
    mirror) instead of the full background/evaluation sets; the result is marked ``partial``.
    Arrays are cached per process and read-only.
    """
    key = canonical_name(name)
    root = data_dir()
    return _load_cached(key, None if root is None else str(root), bool(omniglot_small))


def load_unsplit(name: str) -> RawData:
    """UnSplit's view of a dataset: float32 NHWC in [0, 1] (uint8 / 255, as torchvision's ToTensor),
    grayscale images with a channel axis, int64 labels."""
    raw = load_raw(name)
    if raw.name not in ("mnist", "fashion_mnist", "cifar10"):
        raise UnknownDatasetError(f"UnSplit uses mnist, fashion_mnist and cifar10, not {name!r}.")

    def images(x):
        x = x.astype(np.float32) / np.float32(255.0)
        return x[..., None] if x.ndim == 3 else x
    return dataclasses.replace(raw, x_train=images(raw.x_train), y_train=raw.y_train.astype(np.int64),
                               x_test=images(raw.x_test), y_test=raw.y_test.astype(np.int64))


def tfds_offline_config(name: str):
    """``download_and_prepare_kwargs`` that make ``tfds.load(name, ...)`` read the mirror's archives.

    TFDS validates the archives against its own checksum registry and prepares its TFRecords in the
    ``data_dir`` the caller gives ``tfds.load``.
    """
    import tensorflow_datasets as tfds

    root = data_dir()
    if root is None:
        raise MissingDataError(f"{DATA_DIR_ENV} is not set: there is no offline mirror to read.")
    key = canonical_name(name)
    sub = MIRROR[key][0]
    return {"download_config": tfds.download.DownloadConfig(manual_dir=str(root / sub), try_download_gcs=False)}


def first_index_per_class(labels: np.ndarray, num_classes: int = 10) -> np.ndarray:
    """Index of the first occurrence of each class in ``labels`` (UnSplit's attack targets)."""
    labels = np.asarray(labels).reshape(-1)
    out = []
    for c in range(num_classes):
        hits = np.flatnonzero(labels == c)
        if hits.size == 0:
            raise ValueError(f"class {c} does not occur in the labels")
        out.append(int(hits[0]))
    return np.asarray(out, dtype=np.int64)


def buffered_shuffle(n, buffer_size, rng):
    """Order of ``n`` elements as emitted by a ``tf.data`` shuffle buffer of ``buffer_size`` (NumPy; for the
    TensorFlow-free runners, which reproduce the original pipelines' ``shuffle(10_000)``).

    The buffer is filled with the first ``buffer_size`` elements; each output is a uniformly chosen
    buffer element, whose slot is refilled with the next input element (or, once the input is
    exhausted, with the buffer's last element). ``buffer_size >= n`` is a full uniform permutation.
    """
    if buffer_size is None or buffer_size >= n:
        return rng.permutation(n)
    if buffer_size < 1:
        raise ValueError(f"shuffle buffer must be >= 1, got {buffer_size}")
    # the buffer holds buffer_size elements until the input runs out, then shrinks by one per output
    sizes = np.minimum(buffer_size, n - np.arange(n))
    picks = (rng.random(n) * sizes).astype(np.int64)
    picks = np.minimum(picks, sizes - 1)
    buf = list(range(buffer_size))
    nxt = buffer_size
    out = np.empty(n, np.int64)
    for i in range(n):
        j = int(picks[i])
        out[i] = buf[j]
        if nxt < n:
            buf[j] = nxt
            nxt += 1
        else:
            buf[j] = buf[-1]
            buf.pop()
    return out


__all__ = ["DATA_DIR_ENV", "KNOWN_DATASETS", "RawData", "UnknownDatasetError", "MissingDataError",
           "ChecksumError", "canonical_name", "data_dir", "load_raw", "load_unsplit", "tfds_offline_config",
           "first_index_per_class", "CIFAR10_LABEL_NAMES", "buffered_shuffle"]

