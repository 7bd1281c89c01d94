"""Dataset loaders: shapes, dtypes, ranges, known labels, the mangled split and the errors."""
import numpy as np
import pytest
from available_data import needs

from splitnn import data


@needs("mnist")
def test_mnist_raw():
    raw = data.load_raw("mnist")
    assert raw.x_train.shape == (60000, 28, 28) and raw.x_test.shape == (10000, 28, 28)
    assert raw.x_train.dtype == np.uint8 and raw.y_train.dtype == np.uint8
    assert raw.y_train[:5].tolist() == [5, 0, 4, 1, 9]
    assert raw.y_test[:5].tolist() == [7, 2, 1, 0, 4]
    assert np.bincount(raw.y_train).tolist() == [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
    assert raw.x_train.max() == 255 and raw.x_train.min() == 0
    assert not raw.partial


@needs("fashion_mnist")
def test_fashion_mnist_raw():
    raw = data.load_raw("f_mnist")
    assert raw.name == "fashion_mnist"
    assert raw.x_train.shape == (60000, 28, 28)
    assert raw.y_train[:5].tolist() == [9, 0, 0, 3, 0]
    assert raw.y_test[:5].tolist() == [9, 2, 1, 1, 6]
    assert np.bincount(raw.y_test).tolist() == [1000] * 10


@needs("mnist")
@needs("fashion_mnist")
def test_unsplit_view_is_tensor_like():
    ds = data.load_unsplit("mnist")
    assert ds.x_train.shape == (60000, 28, 28, 1) and ds.x_train.dtype == np.float32
    assert ds.x_train.min() == 0.0 and ds.x_train.max() == 1.0
    assert ds.y_test.dtype == np.int64
    # ToTensor divides uint8 by 255 in float32: the same bits.
    raw = data.load_raw("mnist")
    np.testing.assert_array_equal(ds.x_test[0, ..., 0], raw.x_test[0].astype(np.float32) / np.float32(255))
    assert data.first_index_per_class(ds.y_test).tolist() == [3, 2, 1, 18, 4, 8, 11, 0, 61, 7]
    fm = data.load_unsplit("fashion_mnist")
    assert data.first_index_per_class(fm.y_test).tolist() == [19, 2, 1, 13, 6, 8, 4, 9, 18, 0]


def test_cifar10_partial_mirror_is_labelled():
    if data.data_dir() is None or not (data.data_dir() / "cifar10").is_dir():
        pytest.skip("needs the offline CIFAR-10 mirror")
    raw = data.load_unsplit("cifar")
    assert raw.x_train.shape == (50000, 32, 32, 3) and raw.x_train.dtype == np.float32
    assert raw.y_train[:10].tolist() == [6, 9, 9, 4, 1, 1, 2, 7, 8, 3]
    if raw.partial:
        assert raw.x_test.shape == (1000, 32, 32, 3)
        assert "partial" in raw.description and "not the CIFAR-10 test set" in raw.description
        assert raw.y_test[:20].tolist() == [3, 8, 8, 0, 6, 6, 1, 6, 3, 1, 0, 9, 5, 7, 9, 8, 5, 7, 8, 6]


def test_unknown_dataset_lists_known_ones():
    with pytest.raises(data.UnknownDatasetError) as err:
        data.load_raw("svhn")
    for name in data.KNOWN_DATASETS:
        assert name in str(err.value)


def test_missing_offline_files_named(tmp_path, monkeypatch):
    monkeypatch.setenv(data.DATA_DIR_ENV, str(tmp_path))
    with pytest.raises(data.MissingDataError) as err:
        data.load_raw("fashion_mnist")
    msg = str(err.value)
    assert data.DATA_DIR_ENV in msg
    for name in ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
                 "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        assert str(tmp_path / "fashion-mnist" / name) in msg
    with pytest.raises(data.MissingDataError, match="cifar-10-python.tar.gz"):
        data.load_raw("cifar10")
    with pytest.raises(data.MissingDataError, match="images_evaluation.zip"):
        data.load_raw("omniglot")


def test_corrupt_archive_rejected(tmp_path, monkeypatch):
    folder = tmp_path / "mnist"
    folder.mkdir()
    for f in data.MIRROR["mnist"][1]:
        (folder / f.name).write_bytes(b"\0" * 10)
    monkeypatch.setenv(data.DATA_DIR_ENV, str(tmp_path))
    with pytest.raises(data.ChecksumError, match="bytes"):
        data.load_raw("mnist")


def test_data_dir_must_exist(tmp_path, monkeypatch):
    monkeypatch.setenv(data.DATA_DIR_ENV, str(tmp_path / "nope"))
    with pytest.raises(data.MissingDataError, match="not a directory"):
        data.load_raw("mnist")


def test_omniglot_small_subsets_offline():
    if data.data_dir() is None or not (data.data_dir() / "omniglot").is_dir():
        pytest.skip("needs the offline Omniglot subsets")
    raw = data.load_raw("omniglot", omniglot_small=True)
    assert raw.partial and raw.x_train.shape[1:] == (105, 105)
    assert raw.x_train.dtype == np.uint8 and set(np.unique(raw.x_train[0])) <= {0, 255}


def test_failed_download_names_the_mirror_it_needs(monkeypatch):
    import keras

    def offline():
        raise Exception("URL fetch failure on https://storage.googleapis.com/...: None -- [Errno -3] "
                        "Temporary failure in name resolution")
    monkeypatch.delenv(data.DATA_DIR_ENV, raising=False)
    monkeypatch.setattr(keras.datasets.fashion_mnist, "load_data", offline)
    # Past the per-process cache, which would serve a download made earlier in this process.
    monkeypatch.setattr(data, "_load_cached", data._load_cached.__wrapped__)
    with pytest.raises(data.MissingDataError) as err:
        data.load_raw("f_mnist")
    msg = str(err.value)
    assert "keras.datasets" in msg and "name resolution" in msg and data.DATA_DIR_ENV in msg
    assert "fashion-mnist/" in msg and all(name in msg for name in data._IDX_NAMES)


def test_tests_skip_only_for_an_absent_dataset_never_for_a_broken_mirror(tmp_path, monkeypatch):
    """The test suite's own policy (tests/available_data.py): no folder -> skip, an incomplete one -> error."""
    import available_data

    (tmp_path / "mnist").mkdir()
    monkeypatch.setenv(data.DATA_DIR_ENV, str(tmp_path))
    check = available_data.unavailable.__wrapped__  # past its per-process cache
    assert check("fashion_mnist") == f"fashion_mnist: the offline mirror {tmp_path} has no fashion-mnist/"
    with pytest.raises(data.MissingDataError, match="train-images-idx3-ubyte.gz"):
        check("mnist")
