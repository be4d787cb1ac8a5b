"""Reading state dicts: formats, wrappers, refusal of code-executing pickles, reports."""

from __future__ import annotations

import os

import pytest
import torch
from safetensors.torch import save_file

from vitzoo import CheckpointError, CheckpointMismatchError, build_model, load_checkpoint
from vitzoo.io import load_state_dict

from conftest import tiny_cfg


@pytest.fixture
def model():
    return build_model(tiny_cfg()).eval()


@pytest.mark.parametrize("wrap", [None, "model", "state_dict", "model_ema"])
@pytest.mark.parametrize("prefix", ["", "module.", "_orig_mod.module."])
def test_pytorch_files_unwrap_and_strip_prefixes(tmp_path, model, wrap, prefix):
    state = {prefix + k: v for k, v in model.state_dict().items()}
    payload = {wrap: state, "epoch": 3} if wrap else state
    torch.save(payload, tmp_path / "ckpt.pth")
    loaded = load_state_dict(tmp_path / "ckpt.pth")
    assert list(loaded) == list(model.state_dict())
    for k, v in model.state_dict().items():
        assert torch.equal(loaded[k], v)


def test_safetensors_round_trip_gives_identical_logits(tmp_path, model, images):
    save_file(model.state_dict(), str(tmp_path / "m.safetensors"))
    other = build_model(tiny_cfg()).eval()
    report = load_checkpoint(other, tmp_path / "m.safetensors")
    assert report.ok and report.describe() == "all keys matched"
    torch.testing.assert_close(other(images), model(images), atol=0, rtol=0)


class _Exploit:
    def __reduce__(self):
        return (os.system, ("touch /tmp/vitzoo-pwned-by-test",))


def test_a_pickle_that_runs_code_is_refused_and_nothing_runs(tmp_path):
    marker = "/tmp/vitzoo-pwned-by-test"
    if os.path.exists(marker):
        os.remove(marker)
    path = tmp_path / "evil.pth"
    torch.save({"model": _Exploit()}, path)
    with pytest.raises(CheckpointError, match="weights_only"):
        load_state_dict(path)
    assert not os.path.exists(marker)


@pytest.mark.parametrize("content, fragment", [
    (b"", "cannot read checkpoint"),
    (b"\x00garbage" * 10, "cannot read checkpoint"),
])
def test_corrupt_files_raise_checkpoint_errors(tmp_path, content, fragment):
    for name in ("bad.safetensors", "bad.pth"):
        path = tmp_path / name
        path.write_bytes(content)
        with pytest.raises(CheckpointError, match=fragment):
            load_state_dict(path)


def test_missing_file_and_non_state_dicts(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_state_dict(tmp_path / "nope.safetensors")
    torch.save([1, 2, 3], tmp_path / "list.pth")
    with pytest.raises(CheckpointError, match="does not hold a state dict"):
        load_state_dict(tmp_path / "list.pth")


def test_strict_mismatch_leaves_the_model_unchanged(model):
    before = {k: v.clone() for k, v in model.state_dict().items()}
    other = build_model(tiny_cfg(num_classes=7))
    with pytest.raises(CheckpointMismatchError):
        load_checkpoint(model, other.state_dict())
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k])


def test_non_strict_loads_what_fits_and_reports_the_rest(model):
    other = build_model(tiny_cfg(num_classes=7, depth=3))
    state = dict(other.state_dict())
    state["extra.weight"] = torch.zeros(1)
    report = load_checkpoint(model, state, strict=False)
    assert report.unexpected == [k for k in state if k.startswith("blocks.2.")] + ["extra.weight"]
    assert report.missing == []
    assert set(report.mismatched) == {"head.weight", "head.bias"}
    assert report.mismatched["head.weight"] == ((7, 32), (5, 32))
    assert torch.equal(model.blocks[0].attn.qkv.weight, other.blocks[0].attn.qkv.weight)
    assert not torch.equal(model.head.weight, other.head.weight[:5])
    assert "blocks.*.attn.qkv.weight" in report.describe()


@pytest.mark.parametrize("name", ["notes.pt", "notes.pth", "notes.bin", "notes.safetensors"])
def test_a_text_file_is_refused_without_torchs_weights_only_advice(tmp_path, name):
    path = tmp_path / name
    path.write_text("weights = [1, 2, 3]\n")
    with pytest.raises(CheckpointError) as err:
        load_state_dict(path)
    message = str(err.value)
    assert "weights_only=False" not in message and "weights_only` set to `False" not in message
    assert "not a safetensors file, a PyTorch checkpoint or a NumPy .npz archive" in message
    assert str(path) in message


def test_a_damaged_pickle_is_called_damaged_without_torchs_advice(tmp_path, model):
    path = tmp_path / "cut.pth"
    torch.save(model.state_dict(), path)
    path.write_bytes(path.read_bytes()[:300])
    with pytest.raises(CheckpointError) as err:
        load_state_dict(path)
    assert "weights_only" not in str(err.value).replace("vitzoo only reads weights_only", "")


def test_the_format_is_read_from_the_content_not_the_suffix(tmp_path, model):
    save_file(model.state_dict(), str(tmp_path / "really_safetensors.pth"))
    torch.save(model.state_dict(), tmp_path / "really_pickle.safetensors")
    for name in ("really_safetensors.pth", "really_pickle.safetensors"):
        loaded = load_state_dict(tmp_path / name)
        assert all(torch.equal(loaded[k], v) for k, v in model.state_dict().items())
