"""Extract DINOv2-style features of images: the class token and the patch tokens of the last
blocks, as DINOv2's own `get_intermediate_layers` gives them, saved in one safetensors file.

    python examples/extract_features.py photo1.jpg photo2.jpg --out features.safetensors
    python examples/extract_features.py *.jpg --model dinov2_vitb14_reg4_pretrain.pth --layers 4

The model takes any image size that is a multiple of its patch size (DINOv2 resamples its
position table for each size); images are resized so that the shorter side is --size and
centre-cropped to a multiple of the patch, normalised with the weights' mean and std.
"""

from __future__ import annotations

import argparse

import torch
from safetensors.torch import save_file

import vitzoo
from vitzoo.data import open_image


def load_backbone(name: str) -> torch.nn.Module:
    """A model name (pretrained weights) or a checkpoint file; no classifier head."""
    try:
        return vitzoo.load_model(name, num_classes=0)
    except vitzoo.CheckpointError:  # not a file: a registered name
        return vitzoo.create_model(name, pretrained=True, num_classes=0)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("images", nargs="+", help="image files")
    parser.add_argument("--model", default="vit_small_patch14_reg4_dinov2.lvd142m",
                        help="a name with weights or a checkpoint file (default: %(default)s)")
    parser.add_argument("--layers", type=int, default=1, help="last blocks (default: %(default)s)")
    parser.add_argument("--size", type=int, default=224, help="shorter side (default: %(default)s)")
    parser.add_argument("--out", default="features.safetensors", help="default: %(default)s")
    args = parser.parse_args(argv)

    model = load_backbone(args.model).eval()
    config = vitzoo.resolve_model_data_config(model)
    patch = model.patch_embed.patch_size[0]
    side = args.size // patch * patch
    transform = vitzoo.create_transform({**config, "input_size": (3, side, side),
                                         "crop_pct": 1.0})
    batch = torch.stack([transform(open_image(path)) for path in args.images])
    with torch.no_grad():
        layers = model.get_intermediate_layers(batch, n=args.layers, return_class_token=True)
    tensors = {}
    for i, (patches, cls) in enumerate(layers):
        tensors[f"layer{i}.patch_tokens"] = patches.contiguous()  # (B, N, D)
        tensors[f"layer{i}.class_token"] = cls.contiguous()       # (B, D)
    save_file(tensors, args.out, metadata={"images": "\n".join(args.images),
                                           "model": args.model})
    for name, tensor in tensors.items():
        print(f"{name}: {tuple(tensor.shape)}")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
