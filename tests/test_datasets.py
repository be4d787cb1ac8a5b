"""Datasets: CIFAR archives in the official format, ImageFolder, the bundled digits, names."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import os
import pickle
import struct
import tarfile
from importlib import resources
from pathlib import Path

import numpy as np
import pytest
import torch

import vitzoo
from vitzoo.data import (
    CIFAR,
    DatasetError,
    Digits,
    ImageFolder,
    ToTensor,
    imagenet_class_names,
    imagenet_wnids,
    open_dataset,
)
from vitzoo.data import datasets as datasets_module

CIFAR10_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
                 "truck"]


class Py2Pickler(pickle._Pickler):
    """Protocol 2 as Python 2 wrote it: every str / bytes is a Python 2 ``str`` (BINSTRING).

    Loaded with ``encoding="bytes"`` these come back as bytes, as with the official files.
    """

    dispatch = pickle._Pickler.dispatch.copy()

    def save_py2_str(self, obj: str | bytes) -> None:
        data = obj.encode("latin1") if isinstance(obj, str) else obj
        if len(data) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(data)]) + data)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(data)) + data)
        self.memoize(obj)

    dispatch[str] = save_py2_str
    dispatch[bytes] = save_py2_str


def py2_pickle(obj: object) -> bytes:
    buf = io.BytesIO()
    Py2Pickler(buf, protocol=2).dump(obj)
    # Python 2's numpy lived at numpy.core; the official batches name that module.
    return buf.getvalue().replace(b"numpy._core.multiarray\n", b"numpy.core.multiarray\n")


def _batch(n: int, seed: int, labels_key: bytes = b"labels") -> tuple[dict, np.ndarray]:
    """An official-format batch of ``n`` random images and the (n, 32, 32, 3) images it holds."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
    data = np.empty((n, 3072), dtype=np.uint8)
    for i in range(n):  # 1024 red, then 1024 green, then 1024 blue values, row-major 32x32
        for c in range(3):
            data[i, c * 1024:(c + 1) * 1024] = images[i, :, :, c].ravel()
    labels = rng.integers(0, 10, n).tolist()
    return {b"batch_label": b"batch", labels_key: labels, b"data": data,
            b"filenames": [b"img_%d.png" % i for i in range(n)]}, images


def _cifar10_files(test_size: int = 3) -> tuple[dict[str, bytes], dict[str, np.ndarray]]:
    files, images = {}, {}
    for k in range(1, 6):
        batch, images[f"data_batch_{k}"] = _batch(2, seed=k)
        if k == 1:  # known values at known pixels of image 0
            batch[b"data"][0] = 0
            batch[b"data"][0, 0] = 11  # red, row 0, column 0
            batch[b"data"][0, 1024 + 1 * 32 + 2] = 22  # green, row 1, column 2
            batch[b"data"][0, 2048 + 31 * 32 + 30] = 33  # blue, row 31, column 30
            batch[b"labels"][0] = 7
            images["data_batch_1"][0] = 0
            images["data_batch_1"][0, 0, 0, 0] = 11
            images["data_batch_1"][0, 1, 2, 1] = 22
            images["data_batch_1"][0, 31, 30, 2] = 33
        files[f"data_batch_{k}"] = py2_pickle(batch)
        images[f"labels_{k}"] = np.array(batch[b"labels"])
    batch, images["test_batch"] = _batch(test_size, seed=9)
    images["labels_test"] = np.array(batch[b"labels"])
    files["test_batch"] = py2_pickle(batch)
    files["batches.meta"] = py2_pickle({b"num_cases_per_batch": 2, b"num_vis": 3072,
                                        b"label_names": [n.encode() for n in CIFAR10_NAMES]})
    return files, images


def _write_archive(path: Path, folder: str, files: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(f"{folder}/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def _write_folder(path: Path, files: dict[str, bytes]) -> Path:
    path.mkdir(parents=True)
    for name, data in files.items():
        (path / name).write_bytes(data)
    return path


@pytest.fixture
def cifar10(tmp_path) -> tuple[Path, dict[str, np.ndarray]]:
    files, images = _cifar10_files()
    return _write_archive(tmp_path / "cifar-10-python.tar.gz", "cifar-10-batches-py",
                          files), images


def test_cifar10_archive_gives_images_labels_and_classes(cifar10) -> None:
    archive, expected = cifar10
    train = CIFAR(archive)
    assert train.variant == "cifar10" and train.classes == CIFAR10_NAMES
    assert len(train) == 10
    image, label = train[0]
    assert image.dtype == np.uint8 and image.shape == (32, 32, 3) and label == 7
    assert image[0, 0].tolist() == [11, 0, 0]
    assert image[1, 2].tolist() == [0, 22, 0]
    assert image[31, 30].tolist() == [0, 0, 33]
    assert int(image.sum()) == 11 + 22 + 33
    for k in range(1, 6):  # batches in order, two images each
        for i in range(2):
            np.testing.assert_array_equal(train[2 * (k - 1) + i][0],
                                          expected[f"data_batch_{k}"][i])
            assert train[2 * (k - 1) + i][1] == expected[f"labels_{k}"][i]
    assert all(isinstance(label, int) for _, label in train)

    test = CIFAR(archive, train=False)
    assert len(test) == 3 and test.targets == expected["labels_test"].tolist()
    np.testing.assert_array_equal(test.data, expected["test_batch"])


def test_cifar10_extracted_folder_matches_the_archive(cifar10, tmp_path) -> None:
    archive, _ = cifar10
    with tarfile.open(archive) as tar:
        tar.extractall(tmp_path / "extracted", filter="data")
    from_archive = CIFAR(archive)
    for source in (tmp_path / "extracted", tmp_path / "extracted" / "cifar-10-batches-py",
                   tmp_path):  # tmp_path holds the archive itself
        dataset = CIFAR(source)
        np.testing.assert_array_equal(dataset.data, from_archive.data)
        assert dataset.targets == from_archive.targets
        assert dataset.classes == CIFAR10_NAMES


def test_cifar_applies_the_transform(cifar10) -> None:
    archive, _ = cifar10
    x, label = CIFAR(archive, transform=ToTensor())[0]
    assert isinstance(x, torch.Tensor) and x.shape == (3, 32, 32) and label == 7
    assert x[0, 0, 0].item() == pytest.approx(11 / 255)
    assert x[1, 1, 2].item() == pytest.approx(22 / 255)


def test_cifar100_reads_fine_labels_from_python3_pickles(tmp_path) -> None:
    # Plain protocol-2 pickles from Python 3: numpy._core globals and _codecs.encode bytes.
    train, train_images = _batch(4, seed=1, labels_key=b"fine_labels")
    train[b"coarse_labels"] = [19, 18, 17, 16]
    test, _ = _batch(2, seed=2, labels_key=b"fine_labels")
    fine = [f"fine_{i}".encode() for i in range(100)]
    files = {name: pickle.dumps(obj, protocol=2) for name, obj in {
        "train": train, "test": test,
        "meta": {b"fine_label_names": fine, b"coarse_label_names": [b"c"] * 20}}.items()}
    assert b"_codecs" in files["train"] and b"numpy._core" in files["train"]
    archive = _write_archive(tmp_path / "cifar-100-python.tar.gz", "cifar-100-python", files)
    dataset = CIFAR(archive)
    assert dataset.variant == "cifar100" and len(dataset.classes) == 100
    assert dataset.classes[:2] == ["fine_0", "fine_1"]
    assert dataset.targets == train[b"fine_labels"]
    np.testing.assert_array_equal(dataset.data, train_images)
    assert len(CIFAR(archive, train=False, variant="cifar100")) == 2
    with pytest.raises(DatasetError, match="no CIFAR meta"):
        CIFAR(archive, variant="cifar10")


def test_malicious_pickle_is_refused_and_never_runs(tmp_path) -> None:
    marker = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self):
            return os.system, (f"touch {marker}",)

    eval_meta = py2_pickle({b"label_names": [b"x"]}).replace(  # builtins.eval("1+1") first
        b"\x80\x02}", b"\x80\x02cbuiltins\neval\n(S'1+1'\ntR}", 1)
    cases = [("data_batch_3", pickle.dumps({b"data": Exploit()}, protocol=2), r"\w+\.system"),
             ("test_batch", pickle.dumps([Exploit()], protocol=4), r"\w+\.system"),
             ("batches.meta", eval_meta, "builtins.eval")]
    for k, (name, payload, what) in enumerate(cases):
        files, _ = _cifar10_files()
        files[name] = payload
        with pytest.raises(DatasetError, match=rf"{name}: .*{what}.*refusing"):
            CIFAR(_write_folder(tmp_path / f"evil{k}", files), train=name != "test_batch")
    assert not marker.exists()


def test_truncated_or_missing_archives_raise_dataset_error(cifar10, tmp_path) -> None:
    archive, _ = cifar10
    truncated = tmp_path / "short" / "cifar-10-python.tar.gz"
    truncated.parent.mkdir()
    truncated.write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])
    with pytest.raises(DatasetError, match=r"cifar-10-python\.tar\.gz.*download it again"):
        CIFAR(truncated)
    garbage = tmp_path / "garbage.tar.gz"
    garbage.write_bytes(b"not an archive at all")
    with pytest.raises(DatasetError, match="garbage"):
        CIFAR(garbage)
    with pytest.raises(DatasetError, match=r"does not exist.*CIFAR\.download"):
        CIFAR(tmp_path / "nowhere")
    files, _ = _cifar10_files()
    del files["data_batch_5"]
    with pytest.raises(DatasetError, match="lacks data_batch_5"):
        CIFAR(_write_folder(tmp_path / "partial", files))
    files, _ = _cifar10_files()
    files["data_batch_2"] = files["data_batch_2"][:100]
    with pytest.raises(DatasetError, match="data_batch_2 is not a readable pickle"):
        CIFAR(_write_folder(tmp_path / "cut", files))
    with pytest.raises(DatasetError, match="variant"):
        CIFAR(archive, variant="cifar20")


def test_download_checks_the_official_md5(tmp_path, monkeypatch) -> None:
    calls = []

    def fake_download(url, dst, *, sha256=None, progress=True):
        calls.append(url)
        Path(dst).write_bytes(b"payload")
        return Path(dst)

    monkeypatch.setattr(vitzoo.hub, "download_url", fake_download)
    with pytest.raises(DatasetError, match="c58f30108f718f92721af3b95e74349a"):
        CIFAR.download(tmp_path, "cifar10")
    assert calls == ["https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"]
    assert not (tmp_path / "cifar-10-python.tar.gz").exists()

    layout = datasets_module._CIFAR["cifar100"]
    good = dataclasses.replace(layout, md5=hashlib.md5(b"payload").hexdigest())
    monkeypatch.setitem(datasets_module._CIFAR, "cifar100", good)
    assert CIFAR.download(tmp_path / "new", "cifar100") == (
        tmp_path / "new" / "cifar-100-python.tar.gz")
    assert calls[-1] == "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz"


def test_image_folder_sorts_classes_and_files(tmp_path) -> None:
    Image = pytest.importorskip("PIL.Image")
    colours = {"cat/b.png": (255, 0, 0), "cat/a.png": (0, 255, 0), "dog/c.PNG": (1, 2, 3)}
    for name, colour in colours.items():
        (tmp_path / name).parent.mkdir(exist_ok=True)
        Image.new("RGB", (6, 4), colour).save(tmp_path / name)
    Image.fromarray(np.full((4, 6), 77, dtype=np.uint8)).save(tmp_path / "dog" / "d.png")
    (tmp_path / "dog" / "notes.txt").write_text("not an image")
    (tmp_path / ".cache").mkdir()

    dataset = ImageFolder(tmp_path)
    assert dataset.classes == ["cat", "dog"] and len(dataset) == 4
    assert [p.name for p, _ in dataset.samples] == ["a.png", "b.png", "c.PNG", "d.png"]
    assert dataset.targets == [0, 0, 1, 1]
    image, label = dataset[0]
    assert image.mode == "RGB" and image.size == (6, 4) and label == 0
    assert np.asarray(image)[2, 3].tolist() == [0, 255, 0]
    assert np.asarray(dataset[2][0])[0, 0].tolist() == [1, 2, 3]
    assert np.asarray(dataset[3][0])[1, 1].tolist() == [77, 77, 77]  # grey -> RGB
    x, label = ImageFolder(tmp_path, transform=ToTensor())[1]
    assert x.shape == (3, 4, 6) and label == 0 and x[0].min().item() == 1.0


def test_image_folder_without_images_raises(tmp_path) -> None:
    pytest.importorskip("PIL.Image")
    with pytest.raises(DatasetError, match="no class sub-folders"):
        ImageFolder(tmp_path)
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "readme.txt").write_text("")
    with pytest.raises(DatasetError, match="no images.*empty"):
        ImageFolder(tmp_path)
    with pytest.raises(DatasetError, match="not a folder"):
        ImageFolder(tmp_path / "missing")


# The csv's first row (label 0) and last row (label 8): 64 counts 0..16 and the label.
DIGITS_ROW_0 = [0, 0, 5, 13, 9, 1, 0, 0, 0, 0, 13, 15, 10, 15, 5, 0, 0, 3, 15, 2, 0, 11, 8, 0,
                0, 4, 12, 0, 0, 8, 8, 0, 0, 5, 8, 0, 0, 9, 8, 0, 0, 4, 11, 0, 1, 12, 7, 0, 0, 2,
                14, 5, 10, 12, 0, 0, 0, 0, 6, 13, 10, 0, 0, 0]
DIGITS_ROW_1796 = [0, 0, 10, 14, 8, 1, 0, 0, 0, 2, 16, 14, 6, 1, 0, 0, 0, 0, 15, 15, 8, 15, 0, 0,
                   0, 0, 5, 16, 16, 10, 0, 0, 0, 0, 12, 15, 15, 12, 0, 0, 0, 4, 16, 6, 4, 16, 6,
                   0, 0, 8, 16, 10, 8, 16, 8, 0, 0, 1, 8, 12, 14, 12, 1, 0]
DIGITS_PER_CLASS = [178, 182, 177, 183, 181, 182, 181, 179, 174, 180]


def test_digits_bundle_holds_the_csv_values_scaled_to_255() -> None:
    everything = Digits(test_fraction=0.0)
    assert len(everything) == 1797 and everything.classes == [str(d) for d in range(10)]
    first, label = everything[0]
    assert first.dtype == np.uint8 and first.shape == (8, 8, 1) and label == 0
    np.testing.assert_array_equal(first[:, :, 0],
                                  (np.array(DIGITS_ROW_0) * 255 // 16).reshape(8, 8))
    assert first[0, 2, 0] == 79 and first[0, 3, 0] == 207 and first[1, 3, 0] == 239  # 5, 13, 15
    last, label = everything[1796]
    assert label == 8
    np.testing.assert_array_equal(last[:, :, 0].ravel(), np.array(DIGITS_ROW_1796) * 255 // 16)
    assert last.max() == 255  # 16 -> 255
    assert np.bincount(everything.targets).tolist() == DIGITS_PER_CLASS
    licence = resources.files("vitzoo.data").joinpath("resources/DIGITS_LICENSE.txt").read_text()
    assert "CC BY 4.0" in licence and "value * 255 // 16" in licence


def test_digits_split_is_stratified_disjoint_and_deterministic() -> None:
    train, test = Digits(), Digits(train=False)
    assert len(train) + len(test) == 1797
    expected_test = [round(0.2 * n) for n in DIGITS_PER_CLASS]
    assert np.bincount(test.targets).tolist() == expected_test
    assert len(test) == sum(expected_test) == 359 and len(train) == 1438
    assert not set(train.indices) & set(test.indices)
    assert sorted([*train.indices, *test.indices]) == list(range(1797))
    np.testing.assert_array_equal(Digits(train=False).indices, test.indices)
    other = Digits(train=False, seed=1)
    assert np.bincount(other.targets).tolist() == expected_test
    assert set(other.indices) != set(test.indices)
    half = Digits(train=False, test_fraction=0.5)
    assert len(half) == sum(round(0.5 * n) for n in DIGITS_PER_CLASS)
    x, label = Digits(transform=ToTensor())[0]
    assert x.shape == (1, 8, 8) and x.max().item() <= 1.0 and label == train.targets[0]
    with pytest.raises(DatasetError, match="test_fraction"):
        Digits(test_fraction=1.5)


def test_imagenet_class_names_in_index_order() -> None:
    names, wnids = imagenet_class_names(), imagenet_wnids()
    assert len(names) == len(wnids) == 1000
    assert names[0] == "tench" and names[1] == "goldfish" and names[999] == "toilet tissue"
    assert names[134] == names[517] == "crane"  # WordNet's bird and machine
    assert wnids[0] == "n01440764" and wnids[999] == "n15075141"
    assert wnids == sorted(wnids) and len(set(wnids)) == 1000
    names.clear()
    assert len(imagenet_class_names()) == 1000  # callers get their own list


def test_a_missing_folder_dataset_says_the_folder_does_not_exist(tmp_path) -> None:
    missing = tmp_path / "missing"
    with pytest.raises(DatasetError, match=f"the folder {missing} does not exist") as error:
        open_dataset(f"folder:{missing}", train=False)
    assert "unknown dataset" not in str(error.value)
    (tmp_path / "file.txt").write_text("")
    with pytest.raises(DatasetError, match="file.txt is a file, not a folder"):
        open_dataset(f"folder:{tmp_path / 'file.txt'}", train=True)
    with pytest.raises(DatasetError, match="unknown dataset 'cifar11'"):
        open_dataset("cifar11", train=True)
