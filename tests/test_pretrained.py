"""Pretrained weights: the tables, the Hugging Face cache, offline use, the commands."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest
import scipy.ndimage
import torch
from safetensors.torch import load_file

import vitzoo
from vitzoo.cli import main
from vitzoo.models.archs import FAMILIES
from vitzoo.pretrained import all_entries, get_entry, tags_for

from conftest import hf_cache_with, random_weights

# models.md: default tag and its classes for every architecture
DEFAULTS = {
    "vit_tiny_patch16_224": ("augreg_in21k_ft_in1k", 1000),
    "vit_tiny_patch16_384": ("augreg_in21k_ft_in1k", 1000),
    "vit_small_patch32_224": ("augreg_in21k_ft_in1k", 1000),
    "vit_small_patch32_384": ("augreg_in21k_ft_in1k", 1000),
    "vit_small_patch16_224": ("augreg_in21k_ft_in1k", 1000),
    "vit_small_patch16_384": ("augreg_in21k_ft_in1k", 1000),
    "vit_small_patch8_224": ("dino", 0),
    "vit_base_patch32_224": ("augreg_in21k_ft_in1k", 1000),
    "vit_base_patch32_384": ("augreg_in21k_ft_in1k", 1000),
    "vit_base_patch16_224": ("augreg2_in21k_ft_in1k", 1000),
    "vit_base_patch16_384": ("augreg_in21k_ft_in1k", 1000),
    "vit_base_patch8_224": ("augreg2_in21k_ft_in1k", 1000),
    "vit_large_patch32_224": ("orig_in21k", 0),
    "vit_large_patch32_384": ("orig_in21k_ft_in1k", 1000),
    "vit_large_patch16_224": ("augreg_in21k_ft_in1k", 1000),
    "vit_large_patch16_384": ("augreg_in21k_ft_in1k", 1000),
    "vit_large_patch14_224": ("untrained", 1000),
    "vit_huge_patch14_224": ("orig_in21k", 0),
    "vit_tiny_r_s16_p8_224": ("augreg_in21k_ft_in1k", 1000),
    "vit_tiny_r_s16_p8_384": ("augreg_in21k_ft_in1k", 1000),
    "vit_small_r26_s32_224": ("augreg_in21k_ft_in1k", 1000),
    "vit_small_r26_s32_384": ("augreg_in21k_ft_in1k", 1000),
    "vit_base_r50_s16_224": ("orig_in21k", 0),
    "vit_base_r50_s16_384": ("orig_in21k_ft_in1k", 1000),
    **{a: ("fb_in1k", 1000) for a in vitzoo.list_models("deit_*")},
}
# models.md, "Reported ImageNet-1k top-1"
TOP1 = {
    "vit_tiny_patch16_224.augreg_in21k_ft_in1k": 75.45,
    "vit_small_patch16_224.augreg_in21k_ft_in1k": 81.40,
    "vit_base_patch16_224.augreg2_in21k_ft_in1k": 85.11,
    "vit_base_patch16_224.augreg_in21k_ft_in1k": 84.53,
    "vit_base_patch16_224.orig_in21k_ft_in1k": 81.78,
    "vit_base_patch16_384.augreg_in21k_ft_in1k": 86.01,
    "vit_large_patch16_224.augreg_in21k_ft_in1k": 85.86,
    "vit_large_patch16_384.augreg_in21k_ft_in1k": 87.10,
    "deit_tiny_patch16_224.fb_in1k": 72.19, "deit_small_patch16_224.fb_in1k": 79.86,
    "deit_base_patch16_224.fb_in1k": 81.98, "deit_tiny_distilled_patch16_224.fb_in1k": 74.54,
    "deit_small_distilled_patch16_224.fb_in1k": 81.20,
    "deit_base_distilled_patch16_224.fb_in1k": 83.38,
    "deit_base_distilled_patch16_384.fb_in1k": 85.44,
    "vit_base_r50_s16_384.orig_in21k_ft_in1k": 84.99,
}


CLASSIC = {*FAMILIES["vit"], *FAMILIES["deit"], *FAMILIES["hybrid"]}


# -- the tables -----------------------------------------------------------------------------------
def test_every_classic_architecture_has_models_md_default_tag():
    # the modern families' tags are checked against timm's in test_families.py
    classic = [a for a in vitzoo.list_models() if vitzoo.registry.get_arch(a) in CLASSIC]
    assert {a: (tags_for(a)[0], get_entry(a, None).num_classes) for a in classic} == DEFAULTS


@pytest.mark.parametrize("entry", all_entries(), ids=lambda e: e.name)
def test_table_entry_is_consistent(entry):
    assert vitzoo.is_model(entry.name)
    with torch.device("meta"):
        base = vitzoo.create_model(entry.arch, num_classes=entry.num_classes)
    assert base.cfg.img_size == (entry.img_size, entry.img_size)
    assert entry.num_classes >= 0 and base.num_classes == entry.num_classes
    assert entry.origin in ("jax", "pytorch")
    assert len(entry.mean) == 3 and len(entry.std) == 3 and all(s > 0 for s in entry.std)
    assert 0 < entry.crop_pct <= 1 and entry.interpolation in ("bicubic", "bilinear")
    assert entry.license and (entry.paper or entry.tag == "untrained")
    if entry.hf_hub_id is not None:  # the QuickGELU CLIP towers share the plain ones' repos
        assert entry.hf_hub_id == f"timm/{entry.name.replace('_quickgelu', '')}"
    if entry.url is not None:
        assert entry.url.startswith("https://")
        assert entry.url_format == ("jax_npz" if entry.url.endswith(".npz") else
                                    "openai_clip" if "openaipublic" in entry.url else "pth")
    if entry.origin == "jax":  # Google's preprocessing; and the file format a converter reads
        assert entry.mean == entry.std == (0.5, 0.5, 0.5)
        assert entry.url is None or entry.url_format == "jax_npz"
    if entry.arch.startswith("deit_"):  # models.md: ImageNet statistics, timm's crop_pct
        assert entry.mean == (0.485, 0.456, 0.406)
        assert entry.crop_pct == (1.0 if entry.img_size >= 384 else 0.9)
        assert re.search(rf"-{entry.sha256}\.pth$", entry.url)
    elif entry.origin == "jax" and vitzoo.registry.get_arch(entry.arch) in CLASSIC:
        assert entry.crop_pct == (1.0 if entry.img_size >= 384 else 0.9)
    if entry.tag == "orig_in21k":
        assert entry.num_classes == 0  # the zeroed 21k heads are not loaded
    if vitzoo.registry.get_arch(entry.arch) in CLASSIC:
        assert entry.top1 == TOP1.get(entry.name)
    assert entry.numerics["gelu_approximate"] == ("tanh" if entry.origin == "jax" else "none")


def test_list_pretrained_covers_every_entry_with_weights():
    assert sorted(vitzoo.list_pretrained()) == sorted(
        e.name for e in all_entries() if e.has_weights)
    assert "vit_large_patch14_224.untrained" not in vitzoo.list_pretrained()


# -- a real Hugging Face cache --------------------------------------------------------------------
@pytest.fixture
def cached_ti16():
    name = "vit_tiny_patch16_224.augreg_in21k_ft_in1k"
    model = random_weights(vitzoo.create_model("vit_tiny_patch16_224"), scale=0.05)
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    return hf_cache_with(f"timm/{name}", state), state


def test_pretrained_loads_exactly_the_cached_tensors_offline(cached_ti16):
    assert os.environ["HF_HUB_OFFLINE"] == "1"
    path, state = cached_ti16
    model = vitzoo.create_model("vit_tiny_patch16_224.augreg_in21k_ft_in1k", pretrained=True)
    loaded = model.state_dict()
    assert list(loaded) == list(state)
    for key, value in state.items():
        assert torch.equal(loaded[key], value), key
    assert model.cfg.gelu_approximate == "tanh"  # Google's weights, JAX numerics
    assert model.pretrained_cfg["tag"] == "augreg_in21k_ft_in1k"
    assert model.pretrained_cfg["mean"] == (0.5, 0.5, 0.5)
    assert Path(model.pretrained_cfg["file"]).resolve() == path.resolve()
    assert not model.training


def test_pretrained_with_ten_classes_replaces_only_the_head(cached_ti16):
    _, state = cached_ti16
    model = vitzoo.create_model("vit_ti16", pretrained=True, num_classes=10)
    assert model.head.out_features == 10
    assert torch.all(model.head.weight == 0)  # Google fine-tunes from a zero head
    assert sorted(model.load_report.dropped) == ["head.bias", "head.weight"]
    for key, value in model.state_dict().items():
        if not key.startswith("head."):
            assert torch.equal(value, state[key]), key


def test_pretrained_at_another_size_resamples_like_google(cached_ti16):
    _, state = cached_ti16
    model = vitzoo.create_model("vit_ti16", pretrained=True, img_size=384)
    grid = state["pos_embed"][0, 1:].reshape(14, 14, 192).numpy()
    expected = scipy.ndimage.zoom(grid, (24 / 14, 24 / 14, 1), order=1)
    assert torch.equal(model.pos_embed[0, 1:], torch.from_numpy(expected.reshape(-1, 192)))
    one = vitzoo.create_model("vit_ti16", pretrained=True, in_chans=1)
    assert one.patch_embed.proj.weight.shape[1] == 1


def test_pretrained_skips_the_random_initialisation(cached_ti16, monkeypatch):
    calls = []
    real = torch.nn.init.trunc_normal_

    def counting(tensor, *args, **kwargs):
        calls.append(tuple(tensor.shape))
        return real(tensor, *args, **kwargs)

    monkeypatch.setattr(torch.nn.init, "trunc_normal_", counting)
    vitzoo.create_model("vit_ti16", pretrained=True)
    assert calls == []
    vitzoo.create_model("vit_ti16", pretrained=True, num_classes=3, weight_init="timm")
    assert calls == [(3, 192)]  # only the new head


# -- offline use ----------------------------------------------------------------------------------
def test_download_to_a_directory_then_load_from_it(cached_ti16, tmp_path, monkeypatch, capsys):
    _, state = cached_ti16
    out = tmp_path / "weights"
    assert main(["download", "vit_ti16", "--to", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "vit_tiny_patch16_224.augreg_in21k_ft_in1k" in printed and "sha256=" in printed
    copy = out / "vit_tiny_patch16_224.augreg_in21k_ft_in1k"
    assert json.loads((copy / "config.json").read_text())["architecture"] == \
        "vit_tiny_patch16_224"
    assert main(["cache", "rm", "vit_tiny_patch16_224.augreg_in21k_ft_in1k"]) == 0
    with pytest.raises(vitzoo.OfflineError):
        vitzoo.create_model("vit_ti16", pretrained=True)
    monkeypatch.setenv("VITZOO_WEIGHTS_DIR", str(out))
    model = vitzoo.create_model("vit_ti16", pretrained=True)
    assert torch.equal(model.pos_embed, state["pos_embed"])
    assert Path(model.pretrained_cfg["file"]).parent == copy


def test_cache_ls_verify_and_rm(cached_ti16, capsys):
    path, _ = cached_ti16
    assert main(["cache", "ls"]) == 0
    assert "vit_tiny_patch16_224.augreg_in21k_ft_in1k" in capsys.readouterr().out
    assert main(["cache", "verify"]) == 0
    assert capsys.readouterr().out.startswith("ok ")
    blob = path.resolve()
    data = bytearray(blob.read_bytes())
    data[-1] ^= 0xFF
    blob.write_bytes(bytes(data))
    assert main(["cache", "verify"]) == 1
    out = capsys.readouterr().out
    assert out.startswith("BAD  vit_tiny_patch16_224.augreg_in21k_ft_in1k (huggingface)")
    assert "differs from the blob name" in out
    assert main(["cache", "rm", "vit_tiny_patch16_224.augreg_in21k_ft_in1k"]) == 0
    assert main(["cache", "rm", "vit_tiny_patch16_224.augreg_in21k_ft_in1k"]) == 1


# -- names that are places ------------------------------------------------------------------------
def test_save_pretrained_directory_works_as_a_model_name(tmp_path, images):
    model = random_weights(vitzoo.create_model("vit_ti16", num_classes=4, img_size=32,
                                               patch_size=8, depth=1)).eval()
    directory = vitzoo.save_pretrained(model, tmp_path / "my_vit")
    config = json.loads((directory / "config.json").read_text())
    assert config["num_classes"] == 4 and config["vitzoo_config"]["depth"] == 1
    assert set(load_file(str(directory / "model.safetensors"))) == set(model.state_dict())
    loaded = vitzoo.create_model(str(directory))
    with torch.no_grad():
        torch.testing.assert_close(loaded(images), model(images), atol=0, rtol=0)


def test_hf_hub_names_load_from_the_cache(tmp_path, images):
    model = random_weights(vitzoo.create_model("vit_ti16", num_classes=4, img_size=32,
                                               patch_size=8, depth=1)).eval()
    saved = vitzoo.save_pretrained(model, tmp_path / "export")
    hub = Path(os.environ["HF_HOME"]) / "hub" / "models--someone--tiny-vit"
    commit = "0" * 40
    snapshot = hub / "snapshots" / commit
    snapshot.mkdir(parents=True)
    (hub / "refs").mkdir()
    (hub / "refs" / "main").write_text(commit)
    for name in ("config.json", "model.safetensors"):
        (snapshot / name).write_bytes((saved / name).read_bytes())
    loaded = vitzoo.create_model("hf-hub:someone/tiny-vit")
    with torch.no_grad():
        torch.testing.assert_close(loaded(images), model(images), atol=0, rtol=0)
    pinned = vitzoo.create_model(f"hf-hub:someone/tiny-vit@{commit}", num_classes=2)
    assert pinned.head.out_features == 2
    with pytest.raises(vitzoo.OfflineError, match="not in the Hugging Face cache"):
        vitzoo.create_model("hf-hub:someone/missing")


def test_info_shows_the_weights(capsys):
    assert main(["info", "deit_b16_distilled_384"]) == 0
    out = capsys.readouterr().out
    assert "weights fb_in1k" in out and "trained in     PyTorch (exact GELU)" in out
    assert "deit_base_distilled_patch16_384-d0272ac0.pth" in out
    assert "ImageNet top-1 85.44 (reported)" in out
    info = vitzoo.model_info("vit_small_patch16_224.dino")
    assert info.weights["num_classes"] == 0 and info.weights["license"] == "apache-2.0"


def test_push_to_hub_uploads_the_saved_directory(monkeypatch):
    calls = []

    class FakeApi:
        def create_repo(self, repo_id, private, exist_ok):
            calls.append(("create", repo_id, private, exist_ok))

        def upload_folder(self, repo_id, folder_path, commit_message):
            calls.append(("upload", repo_id, sorted(p.name for p in Path(folder_path).iterdir()),
                          commit_message))
            return "https://huggingface.co/org/name/commit/1"

    import huggingface_hub

    monkeypatch.setattr(huggingface_hub, "HfApi", FakeApi)
    model = vitzoo.create_model("vit_ti16", num_classes=2, depth=1)
    assert vitzoo.push_to_hub(model, "org/name") == "https://huggingface.co/org/name/commit/1"
    assert calls == [("create", "org/name", False, True),
                     ("upload", "org/name", ["config.json", "model.safetensors"],
                      "Upload with vitzoo")]


def test_loaded_parameters_train(cached_ti16):
    model = vitzoo.create_model("vit_ti16", pretrained=True, num_classes=3).train()
    assert all(p.requires_grad for p in model.parameters())
    assert all(isinstance(p, torch.nn.Parameter) for p in model.parameters())
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    before = model.blocks[0].attn.qkv.weight.detach().clone()
    x, y = torch.randn(2, 3, 224, 224), torch.tensor([0, 2])
    for _ in range(2):  # the zero head moves first, then the gradient reaches the blocks
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()
    assert not torch.equal(before, model.blocks[0].attn.qkv.weight)
