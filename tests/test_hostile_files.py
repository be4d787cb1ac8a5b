"""Hostile and malformed checkpoint files: every reader ends in a result or a CheckpointError.

Each class of input is generated here (nothing large is committed): files detected by content,
not suffix; paths that are not regular files; truncated, bit-flipped and forged ``.npz``,
safetensors, PyTorch and TorchScript files; vitzoo metadata and JSON side files of the wrong
shape. Memory bombs are checked under ``RLIMIT_AS`` in a subprocess.
"""

from __future__ import annotations

import io as _bytes_io
import json
import os
import random
import signal
import socket
import struct
import subprocess
import sys
import textwrap
import warnings
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

import vitzoo
from vitzoo import CheckpointError, VitzooError, io
from vitzoo._torchscript import read_archive
from vitzoo.adapters import big_vision
from vitzoo.adapters import jax_npz as J

from conftest import jax_model, tiny_cfg

CLIP_ARCHIVE = Path(__file__).parent / "data" / "clip" / "openai_tiny.pt"


@pytest.fixture(autouse=True)
def _never_block() -> Iterator[None]:
    """A reader that blocks (on a FIFO, a device) fails the test instead of hanging it."""
    def timeout(*_args: object) -> None:
        raise TimeoutError("the reader blocked")

    previous = signal.signal(signal.SIGALRM, timeout)
    signal.alarm(20)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


def _state() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return {"a.weight": torch.randn(4, 3, generator=g), "a.bias": torch.randn(4, generator=g)}


def _outcome(read: Callable[[], object]) -> str:
    """``"ok"`` or ``"refused"``; anything else than a CheckpointError fails the test."""
    try:
        read()
    except CheckpointError:
        return "refused"
    return "ok"


def _bit_flips(whole: bytes, path: Path, seed: int, count: int) -> Iterator[None]:
    """Write ``count`` copies of ``whole`` to ``path``, each with one random bit flipped (the
    position and the bit drawn from ``seed``), pausing after each write for the caller to
    read it."""
    rnd = random.Random(seed)
    for _ in range(count):
        flipped = bytearray(whole)
        flipped[rnd.randrange(len(whole))] ^= 1 << rnd.randrange(8)
        path.write_bytes(bytes(flipped))
        yield


# -- detection by content -------------------------------------------------------------------------
def test_a_torch_zip_named_npz_is_a_pickle_and_never_read_as_arrays(tmp_path):
    path = tmp_path / "weights.npz"
    torch.save(_state(), path)
    assert io.detect_format(path) == "pickle"
    assert io._zip_kind(path) == "torch"
    with pytest.raises(CheckpointError, match=r"not a NumPy \.npz archive.*data\.pkl"):
        io.read_npz(path)  # was: a dict of bytes ("'bytes' object has no attribute 'dtype'")
    assert torch.equal(io.load_state_dict(path)["a.weight"], _state()["a.weight"])


def test_an_npz_named_pth_reads_as_npz(tmp_path):
    path = tmp_path / "weights.pth"
    with path.open("wb") as f:
        np.savez(f, x=np.arange(6, dtype=np.float32).reshape(2, 3))
    assert io.detect_format(path) == "jax_npz"
    assert np.array_equal(io.read_npz(path)["x"], np.arange(6).reshape(2, 3))
    with pytest.raises(CheckpointError, match="Google JAX .npz"):
        io.load_state_dict(path)


def test_safetensors_named_npz_reads_as_safetensors(tmp_path):
    path = tmp_path / "weights.npz"
    save_file(_state(), str(path))
    assert io.detect_format(path) == "safetensors"
    assert torch.equal(io.load_state_dict(path)["a.bias"], _state()["a.bias"])
    with pytest.raises(CheckpointError, match="not a NumPy .npz archive"):
        io.read_npz(path)


def test_a_torchscript_archive_is_told_apart_from_a_torch_zip(tmp_path):
    torch.save(_state(), tmp_path / "plain.pt")
    assert io._zip_kind(tmp_path / "plain.pt") == "torch"
    assert io._zip_kind(CLIP_ARCHIVE) == "torchscript"
    assert io.detect_format(CLIP_ARCHIVE) == "pickle"
    assert io.load_state_dict(CLIP_ARCHIVE)  # read as data, through the TorchScript reader


def test_a_zip_that_is_neither_npz_nor_torch_is_refused(tmp_path):
    path = tmp_path / "notes.zip"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("readme.txt", "hello")
    with pytest.raises(CheckpointError, match="neither a NumPy .npz.*nor a PyTorch file"):
        io.detect_format(path)
    empty = tmp_path / "empty.npz"
    np.savez(empty)
    with pytest.raises(CheckpointError, match="empty zip archive"):
        io.detect_format(empty)
    with pytest.raises(CheckpointError, match="holds no arrays"):
        io.read_npz(empty)


def _special_paths(tmp_path: Path) -> dict[str, Path]:
    paths = {"directory": tmp_path / "dir", "FIFO": tmp_path / "fifo",
             "socket": tmp_path / "sock", "character device": Path("/dev/zero"),
             "symbolic link loop": tmp_path / "loop", "does not exist": tmp_path / "missing"}
    paths["directory"].mkdir()
    os.mkfifo(paths["FIFO"])
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(paths["socket"]))
    server.close()
    os.symlink(paths["symbolic link loop"], paths["symbolic link loop"])
    return paths


READERS: dict[str, Callable[[Path], object]] = {
    "detect_format": io.detect_format, "load_state_dict": io.load_state_dict,
    "read_npz": io.read_npz, "read_safetensors": io.read_safetensors,
    "read_safetensors_metadata": io.read_safetensors_metadata, "read_json": io.read_json,
    "read_archive": read_archive, "load_model": vitzoo.load_model,
}


@pytest.mark.skipif(sys.platform == "win32", reason="FIFOs and UNIX sockets")
@pytest.mark.parametrize("reader", sorted(READERS))
def test_paths_that_are_not_regular_files_are_refused_without_blocking(tmp_path, reader):
    for kind, path in _special_paths(tmp_path).items():
        if kind == "directory" and reader in ("detect_format", "load_model"):
            continue  # a directory is a hub directory to these (tests/test_loading.py)
        # the TorchScript reader is reached through io, which names the kind
        with pytest.raises(CheckpointError, match=None if reader == "read_archive" else kind
                           ) as err:
            READERS[reader](path)
        assert str(path) in str(err.value)


@pytest.mark.parametrize("reader", ["detect_format", "load_state_dict", "read_npz",
                                    "read_safetensors", "read_json"])
def test_an_empty_file_is_refused(tmp_path, reader):
    path = tmp_path / "empty.bin"
    path.write_bytes(b"")
    with pytest.raises(CheckpointError, match="empty|fewer than|not a NumPy|not valid"):
        READERS[reader](path)


# -- .npz -----------------------------------------------------------------------------------------
def _npz(path: Path, **arrays: np.ndarray) -> Path:
    np.savez(path, **arrays)
    return path


def _npy_bytes(header: dict, data: bytes, version: tuple[int, int] = (1, 0)) -> bytes:
    buf = _bytes_io.BytesIO()
    write = {(1, 0): np.lib.format.write_array_header_1_0,
             (2, 0): np.lib.format.write_array_header_2_0}[version]
    write(buf, header)
    return buf.getvalue() + data


def _zip(path: Path, members: dict[str, bytes], compression: int = zipfile.ZIP_STORED) -> Path:
    with zipfile.ZipFile(path, "w", compression) as z:
        for name, data in members.items():
            z.writestr(name, data)
    return path


def _small_npz(tmp_path: Path) -> Path:
    g = np.random.default_rng(0)
    return _npz(tmp_path / "w.npz", kernel=g.standard_normal((8, 8)).astype(np.float32),
                bias=np.arange(8, dtype=np.float32))


@pytest.mark.parametrize("cut", [1, 4, 30, 200, 400, 700, -22, -1])
def test_a_truncated_npz_is_refused(tmp_path, cut):
    whole = _small_npz(tmp_path).read_bytes()
    path = tmp_path / "cut.npz"
    path.write_bytes(whole[:cut])
    with pytest.raises(CheckpointError, match=str(path)):
        io.read_npz(path)
    with pytest.raises(CheckpointError):
        vitzoo.load_model(path)


def test_bit_flipped_npz_files_load_or_are_refused_and_flipped_data_is_caught(tmp_path):
    source = _small_npz(tmp_path)
    whole = source.read_bytes()
    with zipfile.ZipFile(source) as z:
        info = z.getinfo("kernel.npy")
    data_start = info.header_offset + 30 + len(info.filename) + 128  # past the .npy header
    rnd = random.Random(0)
    path = tmp_path / "flip.npz"
    outcomes = []
    for position in [rnd.randrange(len(whole)) for _ in range(150)] + [data_start + 5]:
        flipped = bytearray(whole)
        flipped[position] ^= 1 << rnd.randrange(8)
        path.write_bytes(bytes(flipped))
        outcomes.append(_outcome(lambda: io.read_npz(path)))
    assert outcomes[-1] == "refused"  # a flipped weight fails the CRC-32
    assert "refused" in outcomes[:-1]


def test_members_that_are_not_npy_arrays_are_refused(tmp_path):
    path = _zip(tmp_path / "odd.npz", {"a.npy": b"hello"})
    with pytest.raises(CheckpointError, match="magic"):
        io.read_npz(path)  # was: a bytes value instead of an array
    path = _zip(tmp_path / "mixed.npz", {"a.npy": _npy_bytes(
        {"descr": "<f4", "fortran_order": False, "shape": (1,)}, b"\0" * 4), "b.txt": b"x"})
    with pytest.raises(CheckpointError, match="'b.txt' is not a .npy array"):
        io.read_npz(path)


def _set_encrypted_flag(path: Path) -> None:
    data = bytearray(path.read_bytes())
    for signature, offset in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
        at = data.find(signature)
        data[at + offset] |= 0x1
    path.write_bytes(bytes(data))


def test_an_encrypted_member_is_refused(tmp_path):
    path = _npz(tmp_path / "enc.npz", x=np.zeros(3, np.float32))
    _set_encrypted_flag(path)
    with pytest.raises(CheckpointError, match="encrypted"):
        io.read_npz(path)


def test_a_zip_bomb_is_refused_before_unpacking(tmp_path):
    header = {"descr": "<f4", "fortran_order": False, "shape": (8 << 20,)}
    path = _zip(tmp_path / "bomb.npz", {"zeros.npy": _npy_bytes(header, bytes(32 << 20))},
                zipfile.ZIP_DEFLATED)
    assert path.stat().st_size < 100_000
    with pytest.raises(CheckpointError, match="zip bomb"):
        io.read_npz(path)


def test_duplicate_members_are_refused(tmp_path):
    one = _npy_bytes({"descr": "<f4", "fortran_order": False, "shape": (1,)}, b"\0" * 4)
    path = tmp_path / "dupe.npz"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # zipfile: "Duplicate name"
        with zipfile.ZipFile(path, "w") as z:
            z.writestr("a.npy", one)
            z.writestr("a.npy", one)
    with pytest.raises(CheckpointError, match="appears twice"):
        io.read_npz(path)


@pytest.mark.parametrize("shape, data", [
    ((100_000, 100_000, 100), b"\0" * 64),  # 4 TB claimed by a 64-byte member
    ((3,), b"\0" * 8),                      # fewer bytes than the shape needs
    ((1,), b"\0" * 8),                      # more
])
def test_an_array_header_must_match_the_member_size(tmp_path, shape, data):
    header = {"descr": "<f4", "fortran_order": False, "shape": shape}
    path = _zip(tmp_path / "lie.npz", {"a.npy": _npy_bytes(header, data)})
    with pytest.raises(CheckpointError, match="declares shape .* nothing was allocated"):
        io.read_npz(path)


def test_an_unknown_npy_version_is_refused(tmp_path):
    buf = _bytes_io.BytesIO()
    np.lib.format.write_array(buf, np.zeros(2, np.float32), version=(3, 0))
    path = _zip(tmp_path / "v3.npz", {"a.npy": buf.getvalue()})
    with pytest.raises(CheckpointError, match=r"format \(3, 0\)"):
        io.read_npz(path)


@pytest.mark.parametrize("array", [
    np.array([1, "x"], dtype=object), np.zeros(2, dtype=[("x", "<f4")]),
    np.zeros(2, dtype=("<f4", (2,))).view([("f", "<f4", (2,))]), np.ones(2, np.complex64),
    np.array(["ab"]), np.array([b"ab"]), np.array(["2020-01-01"], dtype="datetime64[D]"),
    np.zeros(2, np.longdouble) if np.dtype(np.longdouble).itemsize > 8 else np.ones(2, "V4"),
    np.zeros(2, "V4"),
], ids=lambda a: str(a.dtype))
def test_dtypes_that_cannot_be_weights_are_refused(tmp_path, array):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        path = tmp_path / "bad.npz"
        with zipfile.ZipFile(path, "w") as z, z.open("a.npy", "w") as f:
            np.lib.format.write_array(f, array, allow_pickle=True)
    with pytest.raises(CheckpointError, match="'a.npy'"):
        io.read_npz(path)


@pytest.mark.parametrize("array", [
    np.array(3.5, np.float32), np.zeros((0, 4), np.float32), np.zeros((2, 0, 3), np.int64),
    np.array([True, False]), np.arange(6, dtype=np.int8).reshape(2, 3),
    np.arange(6, dtype=np.uint8), np.arange(4, dtype=np.float16), np.arange(4, dtype=">f4"),
    np.asfortranarray(np.arange(6, dtype=np.float64).reshape(2, 3)),
    np.array([np.nan, np.inf, -np.inf], np.float32), J.float32_to_bfloat16(np.ones(3)),
], ids=lambda a: f"{a.dtype}{a.shape}")
def test_every_rank_size_and_numeric_dtype_is_read_exactly(tmp_path, array):
    read = io.read_npz(_npz(tmp_path / "ok.npz", a=array))["a"]
    assert read.shape == array.shape and read.dtype.isnative
    assert read.tobytes() == array.astype(array.dtype.newbyteorder("=")).tobytes()
    assert read.flags.writeable  # torch.from_numpy would warn on a read-only array


def test_compressed_npz_files_read_like_stored_ones(tmp_path):
    arrays = {"w": np.arange(40_000, dtype=np.float32).reshape(200, 200), "b": np.zeros(3)}
    np.savez_compressed(tmp_path / "c.npz", **arrays)
    read = io.read_npz(tmp_path / "c.npz")
    assert all(np.array_equal(read[k], v) for k, v in arrays.items())


_MEMORY_BOMBS = textwrap.dedent("""
    import io, json, resource, struct, sys, zipfile
    import numpy as np
    from vitzoo import CheckpointError, io as vio
    folder = sys.argv[1]
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        buf, {"descr": "<f4", "fortran_order": False, "shape": (10**6, 10**6)})
    with zipfile.ZipFile(folder + "/bomb.npz", "w") as z:
        z.writestr("a.npy", buf.getvalue() + bytes(64))
    header = json.dumps({"a": {"dtype": "F32", "shape": [10**6, 10**6],
                               "data_offsets": [0, 4 * 10**12]}}).encode()
    with open(folder + "/bomb.safetensors", "wb") as f:
        f.write(struct.pack("<Q", len(header)) + header + bytes(64))
    with open(folder + "/header.safetensors", "wb") as f:
        f.write(struct.pack("<Q", 2**62) + b'{"a": 1}')
    limit = 2 << 30
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    for name, read in (("bomb.npz", vio.read_npz), ("bomb.safetensors", vio.read_safetensors),
                       ("header.safetensors", vio.read_safetensors_metadata)):
        try:
            read(folder + "/" + name)
        except CheckpointError as err:
            print(name, "refused:", err)
        else:
            print(name, "read")
""")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="RLIMIT_AS")
def test_memory_bombs_are_refused_before_allocating_under_a_2_gib_limit(tmp_path):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    done = subprocess.run([sys.executable, "-c", _MEMORY_BOMBS, str(tmp_path)], env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert [line.split()[:2] for line in lines] == [
        ["bomb.npz", "refused:"], ["bomb.safetensors", "refused:"],
        ["header.safetensors", "refused:"]], done.stdout
    assert "MemoryError" not in done.stdout + done.stderr


# -- Google .npz arrays of the wrong rank, size or dtype ------------------------------------------
_QUERY = "Transformer/encoderblock_0/MultiHeadDotProductAttention_1/query/kernel"
_POS = "Transformer/posembed_input/pos_embedding"


@pytest.fixture(scope="module")
def google_arrays() -> dict[str, np.ndarray]:
    model = jax_model()
    return J.from_vitzoo({k: v.numpy() for k, v in model.state_dict().items()}, num_heads=4)


@pytest.mark.parametrize("key, value, fragment", [
    (_QUERY, np.ones(1024, np.float32), "not 3 dimensions"),
    (_QUERY, np.array(1.0, np.float32), "not 3 dimensions"),
    ("embedding/kernel", np.ones((8, 3, 32), np.float32), "not 4 dimensions"),
    (_POS, np.ones(544, np.float32), "not 3 dimensions"),
    ("cls", np.ones(32, np.float32), "not 3 dimensions"),
    ("head/kernel", np.ones(32, np.float32), "not 2 dimensions"),
    ("head/kernel", np.zeros((32, 0), np.float32), "no elements"),
    ("pos_embedding", np.ones(3, np.float32), "not 3 dimensions"),
    ("Transformer/encoderblock/LayerNorm_0/scale", np.array(1.0, np.float32),
     "no common depth axis"),
    ("head/bias", np.ones(5, np.complex64), "complex64"),
    ("head/bias", np.array(["a", "b"]), "<U1"),
    ("head/bias", np.zeros(5, "V4"), "V4"),
])
def test_google_arrays_of_the_wrong_rank_size_or_dtype_are_refused(
        tmp_path, google_arrays, key, value, fragment):
    path = _npz(tmp_path / "google.npz", **{**google_arrays, key: value})
    # was: IndexError ("tuple index out of range") for the ranks, ValueError for the dtypes,
    # and a silent ComplexWarning cast for complex arrays
    with pytest.raises(CheckpointError, match=fragment):
        vitzoo.load_model(path)


def test_google_arrays_with_nan_or_big_endian_storage_still_load(tmp_path, google_arrays):
    arrays = {**google_arrays, "head/bias": np.full(5, np.nan, np.float32),
              "head/kernel": google_arrays["head/kernel"].astype(">f4")}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # another layer warns about NaN weights
        model = vitzoo.load_model(_npz(tmp_path / "google.npz", **arrays))
    assert torch.isnan(model.head.bias).all()
    assert torch.equal(model.head.weight, torch.from_numpy(google_arrays["head/kernel"].T))


def test_qkv_kernels_that_do_not_fit_together_are_a_checkpoint_error(google_arrays):
    tree, _ = J.canonicalize(google_arrays)
    key = "Transformer/encoderblock_0/MultiHeadDotProductAttention_0/key/kernel"
    tree[key] = np.ones((33, 4, 8), np.float32)  # a width the query and value do not have
    with pytest.raises(CheckpointError, match="cannot be converted"):
        J.to_vitzoo(tree)


def test_to_float32_and_unscan_refuse_what_is_not_a_weight():
    with pytest.raises(CheckpointError, match="complex"):
        big_vision.to_float32(np.ones(2, np.complex128))
    scanned = big_vision.SCANNED
    with pytest.raises(CheckpointError, match="no common depth axis"):
        big_vision.unscan({scanned + "a": np.ones((2, 3)), scanned + "b": np.ones((3, 3))})


# -- safetensors ----------------------------------------------------------------------------------
def _raw_safetensors(path: Path, header: bytes | dict, data: bytes = b"",
                     length: int | None = None) -> Path:
    encoded = header if isinstance(header, bytes) else json.dumps(header).encode()
    size = len(encoded) if length is None else length
    path.write_bytes(struct.pack("<Q", size) + encoded + data)
    return path


def _entry(dtype: str = "F32", shape: list | None = None, offsets: list | None = None) -> dict:
    return {"dtype": dtype, "shape": [2] if shape is None else shape,
            "data_offsets": [0, 8] if offsets is None else offsets}


_MALFORMED_HEADERS = {
    "length past the end": ({"a": _entry()}, b"\0" * 8, 10_000, "declares a 10000-byte header"),
    "absurd length": ({"a": _entry()}, b"\0" * 8, 2**62, "over the 104857600-byte cap"),
    "not JSON": (b"{not json}", b"", None, "not UTF-8 JSON"),
    "not UTF-8": (b'{"a\xff": 1}', b"", None, "not UTF-8 JSON"),
    "a list": (b"{" + b"[1]", b"", None, "not UTF-8 JSON"),
    "duplicate keys": (b'{"a": 1, "a": 2}', b"", None, "appears twice"),
    "deep nesting": (b'{"a":' + b"[" * 100_000 + b"]" * 100_000 + b"}", b"", None,
                     "nested too deeply"),
    "entry not an object": ({"a": [1, 2]}, b"", None, "not described by dtype"),
    "missing offsets": ({"a": {"dtype": "F32", "shape": [2]}}, b"\0" * 8, None,
                        "not described by dtype"),
    "unknown dtype": ({"a": _entry("Q7")}, b"\0" * 8, None, "dtype 'Q7'"),
    "sub-byte dtype": ({"a": _entry("F4")}, b"\0" * 8, None, "dtype 'F4'"),
    "negative shape": ({"a": _entry(shape=[-2])}, b"\0" * 8, None, "non-negative integers"),
    "float shape": ({"a": _entry(shape=[2.0])}, b"\0" * 8, None, "non-negative integers"),
    "bool offsets": ({"a": _entry(offsets=[False, 8])}, b"\0" * 8, None, "non-negative"),
    "three offsets": ({"a": _entry(offsets=[0, 4, 8])}, b"\0" * 8, None, "non-negative"),
    "offsets out of range": ({"a": _entry(offsets=[0, 8000])}, b"\0" * 8, None,
                             "spans bytes 0..8000"),
    "offsets reversed": ({"a": _entry(offsets=[8, 0])}, b"\0" * 8, None, "spans bytes 8..0"),
    "overlapping": ({"a": _entry(), "b": _entry(offsets=[4, 12])}, b"\0" * 12, None,
                    "overlap or leave gaps"),
    "a gap": ({"a": _entry(offsets=[4, 12])}, b"\0" * 12, None, "overlap or leave gaps"),
    "data not covered": ({"a": _entry()}, b"\0" * 16, None, "cover 8 of the 16 bytes"),
    "shape disagrees": ({"a": _entry(shape=[3])}, b"\0" * 8, None, "needs 12 bytes"),
    "huge shape": ({"a": _entry(shape=[2**40, 2**40])}, b"\0" * 8, None, "needs 4835703"),
    "metadata not strings": ({"__metadata__": {"format": 3}}, b"", None,
                             "not an object of strings"),
}


@pytest.mark.parametrize("case", sorted(_MALFORMED_HEADERS))
def test_malformed_safetensors_headers_are_refused_naming_the_file(tmp_path, case):
    header, data, length, fragment = _MALFORMED_HEADERS[case]
    path = _raw_safetensors(tmp_path / "bad.safetensors", header, data, length)
    for read in (io.read_safetensors, io.read_safetensors_metadata, io.detect_format,
                 io.load_state_dict, vitzoo.load_model):
        with pytest.raises(CheckpointError, match=fragment) as err:
            read(path)
        assert str(path) in str(err.value)


def test_a_json_header_that_is_not_an_object_is_refused(tmp_path):
    path = _raw_safetensors(tmp_path / "list.safetensors", b'{"a": 1}')
    path.write_bytes(struct.pack("<Q", 3) + b"[1]")
    assert not io._is_safetensors(path.read_bytes())  # no "{": not taken for safetensors
    with pytest.raises(CheckpointError, match="JSON list, not an object"):
        io.read_safetensors_metadata(path)


def test_is_safetensors_reads_the_length_and_the_brace():
    assert io._is_safetensors(struct.pack("<Q", 2) + b"{}")
    assert not io._is_safetensors(b"")
    assert not io._is_safetensors(struct.pack("<Q", 2))
    assert not io._is_safetensors(struct.pack("<Q", 1) + b"{")
    assert not io._is_safetensors(b"PK\x03\x04" + b"\0" * 12)


def test_safetensors_own_errors_become_checkpoint_errors_naming_the_file(tmp_path,
                                                                         monkeypatch):
    from safetensors import SafetensorError

    path = tmp_path / "w.safetensors"
    save_file(_state(), str(path))

    def failing(*_args: object, **_kwargs: object) -> None:
        raise SafetensorError("Error while deserializing header: boom")

    monkeypatch.setattr(io, "safe_open", failing)
    monkeypatch.setattr(io.sys, "byteorder", "big")  # where vitzoo reads through safe_open
    with pytest.raises(CheckpointError, match="boom") as err:
        io.read_safetensors(path)
    assert str(path) in str(err.value)


def test_a_file_that_cannot_be_mapped_is_a_checkpoint_error_naming_it(tmp_path, monkeypatch):
    path = tmp_path / "w.safetensors"
    save_file(_state(), str(path))

    def failing(*_args: object, **_kwargs: object) -> None:
        raise OSError(12, "Cannot allocate memory")

    monkeypatch.setattr(io.mmap, "mmap", failing)
    with pytest.raises(CheckpointError, match="Cannot allocate memory") as err:
        io.read_safetensors(path)
    assert str(path) in str(err.value)


def test_complex_safetensors_tensors_are_refused(tmp_path):
    path = _raw_safetensors(tmp_path / "c.safetensors", {"a": _entry("C64", [1])}, b"\0" * 8)
    with pytest.raises(CheckpointError, match="complex"):
        io.load_state_dict(path)


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")  # a flip that makes a pickle
def test_truncated_and_bit_flipped_safetensors_load_or_are_refused(tmp_path):
    path = tmp_path / "w.safetensors"
    save_file(_state(), str(path))
    whole = path.read_bytes()
    target = tmp_path / "damaged.safetensors"
    for cut in range(0, len(whole), 7):
        target.write_bytes(whole[:cut])
        assert _outcome(lambda: io.load_state_dict(target)) == "refused"
    outcomes = [_outcome(lambda: io.load_state_dict(target))
                for _ in _bit_flips(whole, target, seed=1, count=120)]
    assert {"ok", "refused"} == set(outcomes)  # flipped weights carry no checksum


# -- vitzoo metadata ------------------------------------------------------------------------------
_DEEP = '{"a":' * 40 + "1" + "}" * 40


@pytest.mark.parametrize("metadata, fragment", [
    ({}, "no readable vitzoo_config"),
    ({"vitzoo_config": None}, "no readable vitzoo_config"),
    ({"vitzoo_config": "null"}, "no readable vitzoo_config"),
    ({"vitzoo_config": 3}, "is a int, not JSON text"),
    ({"vitzoo_config": "not json"}, "not valid JSON"),
    ({"vitzoo_config": "[1, 2]"}, "JSON list, not an object"),
    ({"vitzoo_config": '"text"'}, "JSON str, not an object"),
    ({"vitzoo_config": '{"a": 1, "a": 2}'}, "appears twice"),
    ({"vitzoo_config": "[" * 100_000}, "not valid JSON"),
    ({"vitzoo_config": _DEEP}, "nested more than 32"),
    ({"vitzoo_config": '{"a": "' + "x" * (1 << 20) + '"}'}, "over the 1048576"),
    ({"vitzoo_config": "{}", "pretrained_cfg": "[1]"}, "pretrained_cfg metadata is a JSON list"),
    ({"vitzoo_config": "{}", "pretrained_cfg": "{"}, "pretrained_cfg metadata is not valid"),
    ({"vitzoo_config": "{}", "pretrained_cfg": _DEEP}, "nested more than 32"),
    ("not a mapping", "not a mapping"),
])
def test_malformed_vitzoo_metadata_is_refused(metadata, fragment):
    with pytest.raises(CheckpointError, match=fragment) as err:
        io.parse_vitzoo_metadata(metadata, "model.safetensors")
    assert "model.safetensors" in str(err.value)


@pytest.mark.parametrize("pretrained", [None, "null", "{}"])
def test_a_missing_or_null_pretrained_cfg_is_empty(pretrained):
    metadata = {"vitzoo_config": '{"depth": 2}'}
    if pretrained is not None:
        metadata["pretrained_cfg"] = pretrained
    assert io.parse_vitzoo_metadata(metadata, "m") == ({"depth": 2}, {})


@pytest.mark.parametrize("edit", [
    lambda c: {**c, "not_a_field": 1},
    lambda c: {**c, "depth": "2"},
    lambda c: {**c, "embed_dim": [32]},
    lambda c: {**c, "patch_size": {"a": 1}},
    lambda c: {k: v for k, v in c.items() if k != "embed_dim"} | {"embed_dim": None},
], ids=["extra key", "string depth", "list width", "object patch", "null width"])
def test_a_vitzoo_file_whose_config_has_wrong_fields_is_a_vitzoo_error(tmp_path, edit):
    model = vitzoo.build_model(tiny_cfg())
    path = io.save_model(model, tmp_path / "m.safetensors")
    metadata = io.read_safetensors_metadata(path)
    metadata["vitzoo_config"] = json.dumps(edit(json.loads(metadata["vitzoo_config"])))
    save_file(model.state_dict(), str(path), metadata=metadata)
    with pytest.raises(VitzooError):
        vitzoo.load_model(path)


# -- JSON side files ------------------------------------------------------------------------------
@pytest.mark.parametrize("content, fragment", [
    (b"\xff\xfe{}", "not valid UTF-8 JSON"),
    (b"[1, 2]", "JSON list, not an object"),
    (b'{"a": 1, "a": 2}', "appears twice"),
    (b"[" * 100_000, "not valid UTF-8 JSON"),
    (_DEEP.encode(), "nested more than 32"),
    (b"", "not valid UTF-8 JSON"),
])
def test_malformed_json_side_files_are_refused(tmp_path, content, fragment):
    path = tmp_path / "config.json"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match=fragment):
        io.read_json(path)


def test_a_json_file_over_the_cap_is_refused_unread(tmp_path):
    path = tmp_path / "config.json"
    with path.open("wb") as f:
        f.truncate(io.MAX_JSON_BYTES + 1)  # sparse: no disk used
    with pytest.raises(CheckpointError, match="over the 16777216-byte cap"):
        io.read_json(path)


# -- PyTorch pickles ------------------------------------------------------------------------------
@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy"])
def test_truncated_pickles_are_refused(tmp_path, legacy):
    source = tmp_path / "w.pth"
    torch.save(_state(), source, _use_new_zipfile_serialization=not legacy)
    whole = source.read_bytes()
    path = tmp_path / "cut.pth"
    for cut in sorted({0, 1, 2, 10, 64, len(whole) // 3, len(whole) // 2, len(whole) - 30,
                       len(whole) - 1}):
        path.write_bytes(whole[:cut])
        with pytest.raises(CheckpointError, match=str(path)):
            io.load_state_dict(path)


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy"])
def test_bit_flipped_pickles_load_or_are_refused(tmp_path, legacy):
    source = tmp_path / "w.pth"
    torch.save(_state(), source, _use_new_zipfile_serialization=not legacy)
    whole = source.read_bytes()
    path = tmp_path / "flip.pth"
    outcomes = [_outcome(lambda: io.load_state_dict(path))
                for _ in _bit_flips(whole, path, seed=2, count=120)]
    assert "refused" in outcomes


def test_a_flipped_weight_in_a_torch_zip_fails_its_crc(tmp_path):
    path = tmp_path / "w.pth"
    torch.save({"w": torch.ones(1000)}, path)
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as z:
        info = z.getinfo("w/data/0")
    start = data.index(struct.pack("<f", 1.0) * 64, info.header_offset)
    data[start + 100] ^= 0x40  # torch.load itself does not notice
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="CRC"):
        io.load_state_dict(path)


@pytest.mark.parametrize("payload, fragment", [
    (None, "holds a NoneType"),
    ([torch.ones(1)], "holds a list"),
    (3, "holds a int"),
    ({"x": {"y": torch.ones(1)}}, "'x' is a dict, not a tensor"),
    ({"x": [torch.ones(1)]}, "'x' is a list, not a tensor"),
    ({"x": torch.ones(1), "epoch": 3}, "'epoch' is a int"),
    ({0: torch.ones(1)}, r"key 0 \(int\) is not a string"),
    ({("a", 1): torch.ones(1)}, r"\(tuple\) is not a string"),
    ({"module.x": torch.ones(1), "x": torch.ones(1)}, "both 'module.x' and 'x'"),
    ({"x": torch.ones(1), "_orig_mod.module.x": torch.ones(1)}, "both 'x' and"),
    ({"model": {"module.a": torch.ones(1), "a": torch.ones(1)}}, "same key 'a'"),
])
def test_pickles_that_are_not_state_dicts_are_refused(tmp_path, payload, fragment):
    path = tmp_path / "w.pth"
    torch.save(payload, path)
    with pytest.raises(CheckpointError, match=fragment):
        io.load_state_dict(path)


@pytest.mark.parametrize("make, fragment", [
    (lambda: torch.ones(2, 2).to_sparse(), "sparse"),
    (lambda: torch.eye(3).to_sparse_csr(), "sparse"),
    (lambda: torch.empty(4, device="meta"), "meta tensor"),
    (lambda: torch.quantize_per_tensor(torch.ones(2), 0.1, 0, torch.qint8), "quantized"),
    (lambda: torch.ones(2, dtype=torch.complex64), "complex"),
    (lambda: torch.ones(1).expand(10**6, 10**6), "expanded tensor"),
], ids=["coo", "csr", "meta", "quantized", "complex", "expanded"])
@pytest.mark.filterwarnings("ignore::UserWarning")  # torch: CSR is beta, quantization deprecated
def test_tensors_no_weight_can_be_are_refused(tmp_path, make, fragment):
    path = tmp_path / "w.pth"
    torch.save({"w": make()}, path)
    # was: loaded, and failed (or allocated 4 TB) at the first copy into a model
    with pytest.raises(CheckpointError, match=fragment):
        io.load_state_dict(path)


def test_pickles_are_always_read_weights_only(tmp_path, monkeypatch):
    path = tmp_path / "w.pth"
    torch.save(_state(), path)
    seen = []
    real = torch.load

    def spy(*args: object, **kwargs: object) -> object:
        seen.append(kwargs.get("weights_only"))
        return real(*args, **kwargs)

    monkeypatch.setattr(torch, "load", spy)
    io.load_state_dict(path)
    assert seen == [True]


# -- TorchScript archives -------------------------------------------------------------------------
@pytest.mark.parametrize("fraction", [0.0, 0.01, 0.3, 0.6, 0.9, 0.999])
def test_truncated_torchscript_archives_are_refused(tmp_path, fraction):
    whole = CLIP_ARCHIVE.read_bytes()
    path = tmp_path / "cut.pt"
    path.write_bytes(whole[: int(len(whole) * fraction)])
    with pytest.raises(CheckpointError):
        io.load_state_dict(path)
    with pytest.raises(CheckpointError):
        read_archive(path)


def test_bit_flipped_torchscript_archives_load_or_are_refused(tmp_path):
    whole = CLIP_ARCHIVE.read_bytes()
    path = tmp_path / "flip.pt"
    outcomes = []
    for _ in _bit_flips(whole, path, seed=3, count=60):
        outcomes.append(_outcome(lambda: io.load_state_dict(path)))
        assert _outcome(lambda: read_archive(path)) in ("ok", "refused")
    assert "refused" in outcomes


def _with_member_sizes(tmp_path: Path, size: int) -> Path:
    """The CLIP fixture with its first storage's declared sizes in the central directory
    forged to ``size``."""
    data = bytearray(CLIP_ARCHIVE.read_bytes())
    with zipfile.ZipFile(CLIP_ARCHIVE) as z:
        name = z.infolist()[0].filename.encode()
    at = data.index(b"PK\x01\x02")
    while data[at + 46: at + 46 + len(name)] != name:
        at = data.index(b"PK\x01\x02", at + 1)
    data[at + 20: at + 28] = struct.pack("<II", size, size)  # compressed, uncompressed sizes
    path = tmp_path / "forged.pt"
    path.write_bytes(bytes(data))
    return path


def test_torchscript_members_with_absurd_sizes_are_refused(tmp_path):
    path = _with_member_sizes(tmp_path, 0xFFFF_FFF0)
    with pytest.raises(CheckpointError) as err:
        read_archive(path)
    assert str(path) in str(err.value)
    with pytest.raises(CheckpointError, match="zip bomb|damaged"):
        io.load_state_dict(path)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # torch.jit.script / save
def test_a_stride_0_tensor_in_a_torchscript_archive_is_refused(tmp_path):
    class Expanded(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.register_buffer("big", torch.ones(1).expand(10**6, 10**6))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x

    path = tmp_path / "expanded.pt"
    torch.jit.save(torch.jit.script(Expanded()), str(path))
    # was: read as a view, then cloned: an attempt to allocate 4 TB
    with pytest.raises(CheckpointError, match="stride-0 view"):
        read_archive(path)


@pytest.mark.parametrize("header", [b"{'descr': '<f4', 'fortran_order': False, 'shape': (",
                                    b"{'descr': '<f4' 'shape': ((((}", b"\xff\xfe(((\n"])
def test_a_forged_npy_header_is_refused(tmp_path, header):
    """Found by the fuzz suite: numpy parses the header with ``tokenize`` / ``ast``, whose
    TokenError / SyntaxError escaped as such."""
    import zipfile

    padded = header + b" " * (-(len(header) + 11) % 64) + b"\n"
    member = b"\x93NUMPY\x01\x00" + len(padded).to_bytes(2, "little") + padded + b"\x00" * 16
    path = tmp_path / "forged.npz"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("embedding/kernel.npy", member)
    with pytest.raises(CheckpointError, match="forged.npz"):
        vitzoo.load_model(path)
