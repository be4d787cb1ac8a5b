"""The shared helpers: atomic writes, digests, locks, suggestions, the progress display."""

from __future__ import annotations

import hashlib
import os
import stat

import pytest

import vitzoo
from vitzoo._utils import Progress, atomic_path, close_matches, file_digest, suggestion

from conftest import tiny_cfg


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def _mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_atomic_writes_respect_the_umask_like_a_plain_open(tmp_path, umask_022):
    with atomic_path(tmp_path / "new.bin") as tmp:
        tmp.write_bytes(b"x")
    with open(tmp_path / "plain.bin", "wb") as f:
        f.write(b"x")
    assert _mode(tmp_path / "new.bin") == _mode(tmp_path / "plain.bin") == 0o644


def test_atomic_rewrite_keeps_the_existing_files_permissions(tmp_path, umask_022):
    target = tmp_path / "old.bin"
    target.write_bytes(b"old")
    target.chmod(0o640)
    with atomic_path(target) as tmp:
        tmp.write_bytes(b"new")
    assert target.read_bytes() == b"new" and _mode(target) == 0o640


def test_saved_checkpoints_are_readable_by_the_group_and_others(tmp_path, umask_022):
    model = vitzoo.build_model(tiny_cfg())
    path = vitzoo.save_model(model, tmp_path / "m.safetensors")
    assert _mode(path) == 0o644


def test_a_failed_atomic_write_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "keep.bin"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("disk full")
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.bin"]


def test_file_digest_matches_hashlib(tmp_path):
    data = os.urandom(3 << 20)
    (tmp_path / "f").write_bytes(data)
    assert file_digest(tmp_path / "f") == hashlib.sha256(data).hexdigest()
    assert file_digest(tmp_path / "f", "md5") == hashlib.md5(data).hexdigest()


def test_suggestions_are_case_insensitive_and_ordered():
    assert close_matches("VIT_B16", ["vit_b16", "vit_b32", "deit_ti16"])[0] == "vit_b16"
    assert suggestion("zzz", ["vit_b16"]) == ""
    assert suggestion("drop_pat_rate", ["drop_path_rate"]) == " Did you mean 'drop_path_rate'?"


class _FakeClock:
    """tqdm's clock, advanced by hand: a progress display over minutes in no time."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch):
    clock = _FakeClock()
    monkeypatch.setattr("tqdm.std.time", clock)
    return clock


def test_progress_into_a_pipe_writes_periodic_whole_lines(clock, capsys):  # capsys: not a terminal
    with Progress("converting", unit="array") as progress:
        for done in range(0, 101):
            clock.now += 1.0  # one array a second: 100 s in all
            progress(done, 100, loss=0.5)
    text = capsys.readouterr().err
    assert "\r" not in text and "\x1b" not in text
    lines = text.splitlines()
    # the first call, then one line per PIPED_INTERVAL (10 s), then the end
    assert 10 <= len(lines) <= 13, lines
    assert lines[0].startswith("converting:   0% 0/100")
    assert lines[-1].startswith("converting: 100% 100/100")
    assert lines[-1] != lines[-2]  # closing does not repeat the last line
    assert all("loss=0.5" in line for line in lines[1:])


def test_progress_of_bytes_without_a_total_has_no_percentage(clock, capsys):
    with Progress("w.npz", unit="B") as progress:
        progress(0)
        clock.now += 1.0
        progress(3 << 20)
    lines = capsys.readouterr().err.splitlines()
    assert lines[0].startswith("w.npz: 0.00 [") and "%" not in "".join(lines)
    assert lines[-1].startswith("w.npz: 3.00M [")


def test_progress_disabled_writes_nothing(capsys):
    with Progress("training", unit="step", enabled=False) as progress:
        progress(1, 2)
    assert capsys.readouterr().err == ""
