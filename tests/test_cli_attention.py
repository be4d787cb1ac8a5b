"""``vitzoo attention IMAGE --model MODEL -o OUT``: the class token's attention over the image."""

from __future__ import annotations

import importlib.util
import sys

import numpy as np
import pytest
import torch

import vitzoo
from vitzoo.cli import attention as attention_cli
from vitzoo.cli import main
from vitzoo.explain import attention_rollout, class_token_map

from conftest import random_weights, tiny_cfg

PIL = pytest.importorskip("PIL.Image")
needs_matplotlib = pytest.mark.skipif(importlib.util.find_spec("matplotlib") is None,
                                      reason='needs pip install "vitzoo[plot]"')


@pytest.fixture
def model_and_image(tmp_path):
    model = random_weights(vitzoo.build_model(tiny_cfg(num_heads=4))).eval()
    model.pretrained_cfg = {**model.pretrained_cfg, "mean": (0.5, 0.5, 0.5),
                            "std": (0.25, 0.25, 0.25), "crop_pct": 1.0,
                            "label_names": ["a", "b", "c", "d", "e"]}
    path = vitzoo.save_model(model, tmp_path / "tiny.safetensors")
    pixels = torch.randint(0, 256, (32, 32, 3), generator=torch.Generator().manual_seed(0))
    image = tmp_path / "image.png"
    PIL.fromarray(pixels.to(torch.uint8).numpy()).save(image)
    return vitzoo.load_model(path).eval(), path, image


@pytest.fixture
def drawn(monkeypatch):
    """What the command would draw, instead of drawing it."""
    calls = []

    def record(image, heat, path, **kwargs):
        calls.append({"image": image, "heat": heat, "path": path, **kwargs})
        return path

    monkeypatch.setattr(attention_cli, "save_heatmap", record)
    return calls


def model_input(image_path) -> torch.Tensor:
    # crop_pct 1 at the native 32x32: the input is the image, normalised with mean .5, std .25
    with PIL.open(image_path) as image:
        pixels = torch.from_numpy(np.asarray(image.convert("RGB")).copy())
    return ((pixels.permute(2, 0, 1).float() / 255 - 0.5) / 0.25)[None]


@needs_matplotlib
def test_rollout_is_drawn_over_the_model_input_by_default(model_and_image, drawn, tmp_path,
                                                          capsys):
    model, path, image = model_and_image
    out = tmp_path / "map.png"
    assert main(["attention", str(image), "--model", str(path), "-o", str(out)]) == 0
    assert capsys.readouterr().out == f"wrote {out} (rollout, heads mean)\n"
    (call,) = drawn
    x = model_input(image)
    with torch.no_grad():
        expected = class_token_map(attention_rollout(model.attention_maps(x)), (4, 4))[0]
        probs = model(x).softmax(-1)[0]
    torch.testing.assert_close(call["heat"], expected, rtol=0, atol=1e-6)
    torch.testing.assert_close(call["image"], x[0] * 0.25 + 0.5, rtol=0, atol=1e-6)
    label = "abcde"[int(probs.argmax())]
    assert call["title"] == (f"tiny.safetensors: rollout, heads mean; predicted {label} "
                             f"({100 * float(probs.max()):.1f}%)")


@needs_matplotlib
def test_one_block_and_one_head(model_and_image, drawn, tmp_path, capsys):
    model, path, image = model_and_image
    assert main(["attention", str(image), "--model", str(path), "-o", str(tmp_path / "m.png"),
                 "--block", "-1", "--head", "2"]) == 0
    assert "(block -1, head 2)" in capsys.readouterr().out
    with torch.no_grad():
        (attn,) = model.attention_maps(model_input(image), indices=[-1])  # (1, 4, 17, 17)
    torch.testing.assert_close(drawn[0]["heat"], attn[0, 2, 0, 1:].reshape(4, 4), rtol=0,
                               atol=1e-6)


@needs_matplotlib
def test_one_block_heads_by_max(model_and_image, drawn, tmp_path):
    model, path, image = model_and_image
    main(["attention", str(image), "--model", str(path), "-o", str(tmp_path / "m.png"),
          "--block", "0", "--head", "max"])
    with torch.no_grad():
        (attn,) = model.attention_maps(model_input(image), indices=[0])
    torch.testing.assert_close(drawn[0]["heat"], attn[0, :, 0, 1:].amax(0).reshape(4, 4),
                               rtol=0, atol=1e-6)


@needs_matplotlib
def test_the_picture_is_written(model_and_image, tmp_path):
    _, path, image = model_and_image
    out = tmp_path / "pictures" / "map.png"
    assert main(["attention", str(image), "--model", str(path), "-o", str(out)]) == 0
    with PIL.open(out) as picture:
        assert picture.format == "PNG" and picture.size == (1440, 510)


@needs_matplotlib
@pytest.mark.parametrize(("args", "message"), [
    (["--block", "0", "--head", "4"], "--head 4: the model has 4 heads (0..3)"),
    (["--head", "1"], "--head '1': use mean, max or min"),
    (["--block", "0", "--head", "sum"], "--head 'sum': use mean, max or min, or a head index"),
    (["--block", "2"], "block index 2 is out of range"),
])
def test_bad_choices_are_user_errors(model_and_image, tmp_path, capsys, args, message):
    _, path, image = model_and_image
    out = tmp_path / "m.png"
    assert main(["attention", str(image), "--model", str(path), "-o", str(out), *args]) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


@needs_matplotlib
def test_a_model_without_a_class_token_is_refused(tmp_path, capsys):
    model = vitzoo.build_model(tiny_cfg(class_token=False, global_pool="avg"))
    path = vitzoo.save_model(model, tmp_path / "gap.safetensors")
    image = tmp_path / "image.png"
    PIL.new("RGB", (32, 32)).save(image)
    assert main(["attention", str(image), "--model", str(path), "-o",
                 str(tmp_path / "m.png")]) == 2
    assert "has no class token" in capsys.readouterr().err


@needs_matplotlib
def test_an_unreadable_image_is_a_user_error(model_and_image, tmp_path, capsys):
    _, path, _ = model_and_image
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not a png")
    assert main(["attention", str(bad), "--model", str(path), "-o", str(tmp_path / "m.png")]) == 2
    assert f"{bad} is not a readable image" in capsys.readouterr().err


def test_without_matplotlib_the_error_names_the_plot_extra(model_and_image, tmp_path,
                                                           monkeypatch, capsys):
    _, path, image = model_and_image
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    assert main(["attention", str(image), "--model", str(path), "-o",
                 str(tmp_path / "m.png")]) == 2
    assert capsys.readouterr().err == ('vitzoo: error: vitzoo attention draws with matplotlib: '
                                       'pip install "vitzoo[plot]"\n')
