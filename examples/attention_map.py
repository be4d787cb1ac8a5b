"""Draw where a ViT looks: the attention rollout (Abnar & Zuidema 2020) of an image, as a heat
map over the image next to the input (and the top classes of a classifier).

    python examples/attention_map.py cat.jpg -o cat-attention.png
    python examples/attention_map.py cat.jpg --model deit_small_patch16_224.fb_in1k -o out.png

Needs Pillow and matplotlib (`pip install "vitzoo[plot]"`).
"""

from __future__ import annotations

import argparse

import torch

import vitzoo
from vitzoo.data import open_image
from vitzoo.explain import save_heatmap


def load(name: str) -> torch.nn.Module:
    try:
        return vitzoo.load_model(name)
    except vitzoo.CheckpointError:  # not a file: a registered name
        return vitzoo.create_model(name, pretrained=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("image")
    parser.add_argument("--model", default="vit_base_patch16_224.augreg2_in21k_ft_in1k",
                        help="a name with weights or a checkpoint file (default: %(default)s)")
    parser.add_argument("-o", "--output", default="attention.png", help="default: %(default)s")
    args = parser.parse_args(argv)
    model = load(args.model).eval()
    transform = vitzoo.create_transform(vitzoo.resolve_model_data_config(model))
    x = transform(open_image(args.image)).unsqueeze(0)
    with torch.no_grad():
        rollout = vitzoo.attention_rollout(model.attention_maps(x))
        heat = vitzoo.class_token_map(rollout, model.patch_embed.grid_size)[0]
        probs = model(x).softmax(-1)[0] if model.num_classes else None
    if probs is not None:
        top = probs.topk(min(3, probs.numel()))
        print("top classes:", ", ".join(f"{i} ({p:.1%})" for p, i in
                                        zip(top.values.tolist(), top.indices.tolist(),
                                            strict=True)))
    # the picture shows the image as the model saw it: undo the normalisation
    mean = torch.tensor(model.pretrained_cfg["mean"]).view(-1, 1, 1)
    std = torch.tensor(model.pretrained_cfg["std"]).view(-1, 1, 1)
    save_heatmap((x[0] * std + mean).clamp(0, 1), heat, args.output,
                 title=f"attention rollout of {args.model}")
    print(f"wrote {args.output} ({heat.shape[0]}x{heat.shape[1]} patches)")


if __name__ == "__main__":
    main()
