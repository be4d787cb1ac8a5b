"""Transforms: values against hand-written arithmetic and torch.nn.functional, not only shapes."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import vitzoo
from vitzoo.data import (
    CenterCrop,
    Compose,
    EnsureChannels,
    Normalize,
    RandomHorizontalFlip,
    RandomResizedCrop,
    Resize,
    ToTensor,
    create_transform,
    resolve_data_config,
)


def _image(h: int = 200, w: int = 300, seed: int = 0) -> np.ndarray:
    """A random uint8 (h, w, 3) image: a '300x200' picture is 300 wide and 200 high."""
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _exact(actual: torch.Tensor, expected: torch.Tensor) -> None:
    torch.testing.assert_close(actual, expected, rtol=0, atol=0)


def test_to_tensor_divides_uint8_by_255_and_puts_channels_first() -> None:
    a = np.zeros((2, 3, 3), dtype=np.uint8)
    a[0, 1] = (255, 51, 0)  # row 0, column 1
    a[1, 2, 2] = 102
    x = ToTensor()(a)
    assert x.dtype == torch.float32 and x.shape == (3, 2, 3)
    assert x[:, 0, 1].tolist() == pytest.approx([1.0, 0.2, 0.0])
    assert x[2, 1, 2].item() == pytest.approx(0.4)
    assert x.sum().item() == pytest.approx(1.6)
    grey = ToTensor()(np.array([[0, 255], [51, 102]], dtype=np.uint8))
    _exact(grey, torch.tensor([[[0.0, 255.0], [51.0, 102.0]]]) / 255)
    _exact(ToTensor()(torch.from_numpy(a).permute(2, 0, 1)), x)
    floats = torch.rand(3, 4, 5, dtype=torch.float64)
    _exact(ToTensor()(floats), floats.float())


def test_to_tensor_rejects_float_arrays_and_other_types() -> None:
    with pytest.raises(vitzoo.ImageSizeError, match="uint8"):
        ToTensor()(np.zeros((4, 4, 3), dtype=np.float32))
    with pytest.raises(vitzoo.ImageSizeError, match=r"\(C, H, W\)"):
        ToTensor()(torch.zeros(4, 4, dtype=torch.uint8))
    with pytest.raises(TypeError, match="list"):
        ToTensor()([[0, 1]])


def test_to_tensor_reads_pil_images() -> None:
    Image = pytest.importorskip("PIL.Image")
    a = _image(5, 7)
    _exact(ToTensor()(Image.fromarray(a)), ToTensor()(a))
    grey = Image.fromarray(a[:, :, 0])
    _exact(ToTensor()(grey), ToTensor()(a[:, :, :1]))
    palette = Image.fromarray(a).convert("P")
    _exact(ToTensor()(palette), ToTensor()(np.asarray(palette.convert("RGB"))))


def test_normalize_subtracts_mean_and_divides_by_std_per_channel() -> None:
    x = torch.rand(3, 4, 5)
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    y = Normalize(mean, std)(x)
    for c in range(3):
        torch.testing.assert_close(y[c], (x[c] - mean[c]) / std[c], rtol=1e-6, atol=1e-6)
    assert y[1, 2, 3].item() == pytest.approx((x[1, 2, 3].item() - 0.456) / 0.224, abs=1e-6)
    with pytest.raises(vitzoo.ImageSizeError, match="EnsureChannels"):
        Normalize((0.5,), (0.5,))(x)
    with pytest.raises(vitzoo.ConfigError, match="positive"):
        Normalize((0.5,), (0.0,))


@pytest.mark.parametrize(("height", "width", "crop", "top", "left"), [
    (5, 7, (2, 3), 2, 2),  # (5 - 2) / 2 = 1.5 rounds to 2, (7 - 3) / 2 = 2
    (6, 9, (1, 4), 2, 2),  # 2.5 rounds half to even -> 2 (torchvision's int(round(...)))
    (8, 8, (3, 3), 2, 2),  # 2.5 -> 2
    (9, 9, (4, 4), 2, 2),  # 2.5 -> 2
    (10, 11, (6, 4), 2, 4),  # 2.0 and 3.5 -> 4
])
def test_center_crop_offsets_follow_torchvision_rounding(height, width, crop, top, left) -> None:
    x = torch.arange(2 * height * width, dtype=torch.float32).reshape(2, height, width)
    _exact(CenterCrop(crop)(x), x[:, top:top + crop[0], left:left + crop[1]])


def test_center_crop_pads_small_images_with_zeros() -> None:
    x = torch.arange(1, 7, dtype=torch.float32).reshape(1, 2, 3)
    y = CenterCrop((4, 6))(x)  # pad 1 above, 1 below, 1 left, 2 right
    assert y.shape == (1, 4, 6)
    _exact(y[:, 1:3, 1:4], x)
    assert y.sum().item() == x.sum().item()
    z = CenterCrop((5, 3))(x)  # odd height difference: 1 above, 2 below
    _exact(z[:, 1:3], x)
    assert z[:, [0, 3, 4]].abs().sum().item() == 0
    _exact(CenterCrop(2)(x), x[:, :, 0:2])  # width 3 -> 2: left = round(0.5) = 0


@pytest.mark.parametrize(("height", "width", "size", "expected"), [
    (300, 200, 64, (96, 64)),
    (200, 300, 64, (64, 96)),
    (7, 10, 4, (4, 5)),  # int(4 * 10 / 7) = int(5.71) = 5
    (10, 7, 4, (5, 4)),
    (20, 20, 6, (6, 6)),
    (50, 60, (12, 40), (12, 40)),
])
def test_resize_shorter_side_rule(height, width, size, expected) -> None:
    resize = Resize(size)
    assert resize.output_size(height, width) == expected
    assert resize(torch.rand(3, height, width)).shape == (3, *expected)


@pytest.mark.parametrize("mode", ["bicubic", "bilinear", "nearest"])
def test_resize_equals_functional_interpolate(mode) -> None:
    x = torch.rand(3, 30, 20)
    smooth = mode != "nearest"
    expected = F.interpolate(x[None], size=(48, 32), mode=mode,
                             align_corners=False if smooth else None, antialias=smooth)[0]
    if mode == "bicubic":
        expected = expected.clamp(0, 1)
        assert (expected == 1).any() or (expected == 0).any()  # the clamp did something
    _exact(Resize(32, interpolation=mode)(x), expected)  # shorter side 20 -> 32
    down = F.interpolate(x[None], size=(6, 4), mode="bilinear", align_corners=False,
                         antialias=False)[0]
    _exact(Resize((6, 4), interpolation="bilinear", antialias=False)(x), down)


def test_resize_rejects_unknown_interpolation() -> None:
    with pytest.raises(vitzoo.ConfigError, match="bicubic"):
        Resize(32, interpolation="lanczos")


def test_ensure_channels_repeats_grey_and_averages_rgb() -> None:
    grey = torch.rand(1, 4, 5)
    rgb = EnsureChannels(3)(grey)
    assert rgb.shape == (3, 4, 5)
    for c in range(3):
        _exact(rgb[c], grey[0])
    x = torch.rand(3, 4, 5)
    torch.testing.assert_close(EnsureChannels(1)(x), ((x[0] + x[1] + x[2]) / 3)[None])
    assert EnsureChannels(3)(x) is x
    with pytest.raises(vitzoo.ConfigError, match="4-channel"):
        EnsureChannels(3)(torch.rand(4, 2, 2))


def test_random_resized_crop_boxes_respect_scale_and_ratio() -> None:
    rrc = RandomResizedCrop(32, scale=(0.2, 0.9), ratio=(0.5, 1.5))
    height, width = 200, 300
    for seed in range(50):
        top, left, h, w = rrc.get_params(height, width, torch.Generator().manual_seed(seed))
        assert 0 <= top and top + h <= height and 0 <= left and left + w <= width
        # h and w are rounded, so widen the bounds by half a pixel each way.
        assert (h - 0.5) * (w - 0.5) <= 0.9 * height * width
        assert (h + 0.5) * (w + 0.5) >= 0.2 * height * width
        assert (w - 0.5) / (h + 0.5) <= 1.5 and (w + 0.5) / (h - 0.5) >= 0.5
    boxes = {rrc.get_params(height, width, torch.Generator().manual_seed(s)) for s in range(20)}
    assert len(boxes) > 15  # the seed matters
    again = rrc.get_params(height, width, torch.Generator().manual_seed(7))
    assert again == rrc.get_params(height, width, torch.Generator().manual_seed(7))


def test_random_resized_crop_output_is_resize_of_the_sampled_box() -> None:
    rrc = RandomResizedCrop((24, 32))
    x = torch.rand(3, 200, 300)
    top, left, h, w = rrc.get_params(200, 300, torch.Generator().manual_seed(3))
    expected = Resize((24, 32))(x[:, top:top + h, left:left + w])
    _exact(rrc(x, generator=torch.Generator().manual_seed(3)), expected)
    torch.manual_seed(11)  # without a generator the global RNG decides
    box = rrc.get_params(200, 300)
    torch.manual_seed(11)
    assert rrc.get_params(200, 300) == box


@pytest.mark.parametrize(("height", "width", "scale", "ratio", "box"), [
    (50, 50, (1.0, 1.0), (10.0, 20.0), (22, 0, 5, 50)),  # too tall: w = 50, h = round(50 / 10)
    (10, 100, (1.0, 1.0), (0.5, 1.0), (0, 45, 10, 10)),  # too wide: h = 10, w = round(10 * 1)
    (60, 100, (2.0, 3.0), (1.0, 2.0), (0, 0, 60, 100)),  # ratio in range: the whole image
])
def test_random_resized_crop_falls_back_to_a_central_crop(height, width, scale, ratio,
                                                          box) -> None:
    rrc = RandomResizedCrop(8, scale=scale, ratio=ratio)
    for seed in range(5):
        assert rrc.get_params(height, width, torch.Generator().manual_seed(seed)) == box


def test_random_horizontal_flip_never_and_always() -> None:
    x = torch.rand(3, 4, 5)
    for seed in range(5):
        g = torch.Generator().manual_seed(seed)
        _exact(RandomHorizontalFlip(0.0)(x, generator=g), x)
        _exact(RandomHorizontalFlip(1.0)(x, generator=g), x[:, :, torch.arange(4, -1, -1)])
    flips = sum(not torch.equal(RandomHorizontalFlip(0.5)(x), x) for _ in range(200))
    assert 60 < flips < 140
    with pytest.raises(vitzoo.ConfigError):
        RandomHorizontalFlip(1.5)


def test_eval_transform_equals_hand_composed_steps() -> None:
    config = resolve_data_config(input_size=(3, 64, 64), crop_pct=0.875,
                                 mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))
    image = _image()  # 300 wide, 200 high
    x = torch.from_numpy(image).permute(2, 0, 1).float() / 255
    scaled = math.floor(64 / 0.875)  # 73: shorter side 200 -> 73, longer int(73 * 1.5) = 109
    x = F.interpolate(x[None], size=(73, 109), mode="bicubic", align_corners=False,
                      antialias=True)[0].clamp(0, 1)
    x = x[:, 4:68, 22:86]  # top = round(4.5) = 4, left = round(22.5) = 22
    mean = torch.tensor(config["mean"]).view(3, 1, 1)
    std = torch.tensor(config["std"]).view(3, 1, 1)
    expected = (x - mean) / std
    transform = create_transform(config)
    assert scaled == 73 and transform.transforms[0].size == 73
    _exact(transform(image), expected)

    squash = create_transform(config, eval_resize="resize")
    x = torch.from_numpy(image).permute(2, 0, 1).float() / 255
    x = F.interpolate(x[None], size=(64, 64), mode="bicubic", align_corners=False,
                      antialias=True)[0].clamp(0, 1)
    _exact(squash(image), (x - mean) / std)
    with pytest.raises(vitzoo.ConfigError, match="eval_resize"):
        create_transform(config, eval_resize="pad")


def test_eval_transform_resizes_pil_images_with_pillow() -> None:
    Image = pytest.importorskip("PIL.Image")
    transform = create_transform(resolve_data_config(input_size=(3, 32, 32)))
    image = _image(40, 50)
    # torchvision's rule for PIL images: Pillow's own bicubic, then the tensor steps
    resized = Image.fromarray(image).resize((int(35 * 50 / 40), 35), Image.Resampling.BICUBIC)
    steps = Compose([ToTensor(), CenterCrop(32), Normalize((0.5,) * 3, (0.5,) * 3)])
    _exact(transform(Image.fromarray(image)), steps(resized))
    # arrays and uint8 tensors are resized by torch, alike
    _exact(transform(image), transform(torch.from_numpy(image).permute(2, 0, 1)))
    grey = transform(Image.fromarray(image[:, :, 0]))  # L -> 3 equal channels
    assert grey.shape == (3, 32, 32)
    _exact(grey[0], grey[2])
    palette = Image.fromarray(image).convert("P")  # converted to RGB before resizing
    _exact(transform(palette), transform(palette.convert("RGB")))


def test_train_transform_is_the_random_steps_in_order() -> None:
    config = resolve_data_config(input_size=(3, 48, 48), mean=(0.2, 0.4, 0.6),
                                 std=(0.1, 0.2, 0.3))
    transform = create_transform(config, train=True, scale=(0.3, 1.0))
    assert [type(t).__name__ for t in transform.transforms] == [
        "ToTensor", "EnsureChannels", "RandomResizedCrop", "RandomHorizontalFlip", "Normalize"]
    image = _image()
    out = transform(image, generator=torch.Generator().manual_seed(5))
    assert out.shape == (3, 48, 48) and out.dtype == torch.float32
    # Normalised values of pixels in [0, 1] lie in [-mean / std, (1 - mean) / std].
    for c, (m, s) in enumerate(zip((0.2, 0.4, 0.6), (0.1, 0.2, 0.3), strict=True)):
        assert out[c].min() >= -m / s - 1e-5 and out[c].max() <= (1 - m) / s + 1e-5

    g = torch.Generator().manual_seed(5)
    x = ToTensor()(image)
    top, left, h, w = transform.transforms[2].get_params(200, 300, g)
    x = Resize((48, 48))(x[:, top:top + h, left:left + w])
    if torch.rand(1, generator=g).item() < 0.5:
        x = x.flip(-1)
    _exact(out, Normalize(config["mean"], config["std"])(x))

    no_flip = create_transform(config, train=True, hflip=0.0)
    assert "RandomHorizontalFlip" not in repr(no_flip)


def test_resolve_data_config_reads_the_model() -> None:
    model = vitzoo.create_model("vit_ti16", img_size=96, patch_size=16, depth=1)
    config = resolve_data_config(model)
    assert config == {"input_size": (3, 96, 96), "mean": (0.5, 0.5, 0.5),
                      "std": (0.5, 0.5, 0.5), "crop_pct": 0.9, "interpolation": "bicubic",
                      "crop_mode": "center"}
    transform = create_transform(config)
    assert transform.transforms[0].size == 106  # floor(96 / 0.9)
    assert transform(_image()).shape == (3, 96, 96)
    with torch.no_grad():
        assert model(transform(_image())[None]).shape == (1, 1000)


def test_resolve_data_config_prefers_the_built_model_and_fits_channels() -> None:
    imagenet = {"input_size": (3, 224, 224), "mean": (0.485, 0.456, 0.406),
                "std": (0.229, 0.224, 0.225), "crop_pct": 0.875, "interpolation": "bilinear",
                "url": "ignored"}
    model = SimpleNamespace(pretrained_cfg=imagenet, cfg=vitzoo.ViTConfig(img_size=(64, 48)))
    config = resolve_data_config(model)
    assert config["input_size"] == (3, 64, 48)
    assert config["mean"] == imagenet["mean"] and config["crop_pct"] == 0.875
    assert config["interpolation"] == "bilinear"
    grey = SimpleNamespace(pretrained_cfg=imagenet, cfg=vitzoo.ViTConfig(in_chans=1))
    config = resolve_data_config(grey)
    assert config["input_size"] == (1, 224, 224)
    assert config["mean"] == pytest.approx(((0.485 + 0.456 + 0.406) / 3,))
    assert config["std"] == pytest.approx(((0.229 + 0.224 + 0.225) / 3,))
    assert resolve_data_config(input_size=(3, 8, 8), mean=(0.1,), std=(0.2,))["mean"] == (
        0.1, 0.1, 0.1)


def test_resolve_data_config_defaults_and_overrides() -> None:
    assert resolve_data_config() == {"input_size": (3, 224, 224), "mean": (0.5, 0.5, 0.5),
                                     "std": (0.5, 0.5, 0.5), "crop_pct": 0.9,
                                     "interpolation": "bicubic", "crop_mode": "center"}
    model = vitzoo.create_model("vit_ti16", img_size=96, patch_size=16, depth=1)
    config = resolve_data_config(model, crop_pct=1.0, interpolation="bilinear",
                                 input_size=(3, 128, 128))
    assert config["crop_pct"] == 1.0 and config["interpolation"] == "bilinear"
    assert config["input_size"] == (3, 128, 128)
    with pytest.raises(vitzoo.UnknownOverrideError, match="crop_pct"):
        resolve_data_config(crop_pt=0.9)
    with pytest.raises(vitzoo.ConfigError, match="crop_pct"):
        resolve_data_config(crop_pct=1.5)
    with pytest.raises(vitzoo.ConfigError, match="mean"):
        resolve_data_config(input_size=(2, 8, 8))


def test_compose_passes_the_generator_only_to_random_steps() -> None:
    seen = []
    compose = Compose([lambda x: seen.append("plain") or x, RandomHorizontalFlip(1.0)])
    x = torch.rand(1, 2, 3)
    _exact(compose(x, generator=torch.Generator()), x.flip(-1))
    assert seen == ["plain"]
    assert "RandomHorizontalFlip(p=1.0)" in repr(compose)
