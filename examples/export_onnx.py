"""Export a model to ONNX, any batch size (and with --dynamic-size any image size), checked in
onnxruntime against the PyTorch model.

    python examples/export_onnx.py vit_base_patch16_224.augreg2_in21k_ft_in1k vit_b16.onnx
    python examples/export_onnx.py finetuned.safetensors model.onnx --dynamic-size

Needs `pip install "vitzoo[export]"` (onnx, onnxscript, onnxruntime).
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

import vitzoo


def load(name: str, dynamic_size: bool) -> torch.nn.Module:
    options = {"dynamic_img_size": True} if dynamic_size else {}
    try:
        return vitzoo.load_model(name, **options)
    except vitzoo.CheckpointError:  # not a file: a registered name
        return vitzoo.create_model(name, pretrained=True, **options)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", help="a name with weights or a checkpoint file")
    parser.add_argument("out", help="the .onnx file")
    parser.add_argument("--dynamic-size", action="store_true", help="any height and width")
    args = parser.parse_args(argv)
    model = load(args.model, args.dynamic_size).eval()
    result = vitzoo.export_onnx(model, args.out, dynamic_size=args.dynamic_size, verify=True)
    print(f"wrote {args.out}; onnxruntime matches PyTorch to {result.max_abs_diff:.1e}")

    import onnxruntime  # run the file as a deployment would

    session = onnxruntime.InferenceSession(args.out, providers=["CPUExecutionProvider"])
    h, w = model.cfg.img_size
    images = torch.rand(3, model.cfg.in_chans, h, w)
    (onnx_out,) = session.run(None, {"images": images.numpy()})
    with torch.no_grad():
        torch_out = model(images).numpy()
    print(f"batch of 3: onnxruntime vs PyTorch max difference "
          f"{float(np.abs(onnx_out - torch_out).max()):.2e}")


if __name__ == "__main__":
    main()
