"""Convert a Google ViT checkpoint (the original release's `.npz`, or big_vision's) to a
vitzoo safetensors file, checked against Google's forward pass.

    python examples/convert_google.py ViT-B_16.npz vit_b16.safetensors

The architecture is read off the arrays; the check runs Google's model (written in NumPy,
float64) and the converted PyTorch model on random images and requires 1e-5 on the logits,
before the output is moved into place. The converted file loads with `vitzoo.load_model` or
`create_model(name, checkpoint_path=...)` and keeps JAX's numerics (tanh GELU, eps 1e-6).
"""

from __future__ import annotations

import argparse

import torch

import vitzoo


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("src", help="Google .npz")
    parser.add_argument("dst", help="the .safetensors to write")
    args = parser.parse_args(argv)
    path = vitzoo.convert_checkpoint(args.src, args.dst, verify=True)  # raises if it differs
    model = vitzoo.load_model(path).eval()
    cfg = model.cfg
    with torch.no_grad():
        logits = model(torch.zeros(1, cfg.in_chans, *cfg.img_size))
    print(f"{path}: verified against Google's forward pass; {cfg.depth} blocks, width "
          f"{cfg.embed_dim}, {cfg.img_size[0]}px, output {tuple(logits.shape)}")


if __name__ == "__main__":
    main()
