"""Fine-tune a pretrained ViT on a folder of images: DATA/train/<class>/*.jpg and
DATA/val/<class>/*.jpg (the class is the folder's name).

    python examples/finetune_folder.py /data/pets --output runs/pets
    python examples/finetune_folder.py /data/pets --model vit_small_patch16_224.augreg_in21k \\
        --steps 2000 --batch-size 128

It runs the ViT release's recipe (SGD with momentum, warmup and cosine decay, batch by
gradient accumulation, a new zero head) and prints the final top-1 on DATA/val. Checkpoints,
metrics and curves.png end up in --output; `vitzoo predict OUTPUT/best.safetensors IMAGE`
classifies new images with the class names of the folders.
"""

from __future__ import annotations

import argparse

from vitzoo.train import finetune_on


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", help="folder with train/ and val/ sub-folders of class folders")
    parser.add_argument("--model", default="vit_base_patch16_224.augreg_in21k",
                        help="an arch.tag with weights, or a checkpoint file "
                             "(default: %(default)s)")
    parser.add_argument("--output", default="runs/folder", help="default: %(default)s")
    parser.add_argument("--steps", type=int, default=500, help="default: %(default)s")
    parser.add_argument("--batch-size", type=int, default=64, help="default: %(default)s")
    parser.add_argument("--img-size", type=int, help="training resolution (default: the model's)")
    args = parser.parse_args(argv)
    result = finetune_on(f"folder:{args.data}", model=args.model, output_dir=args.output,
                         steps=args.steps, batch_size=args.batch_size,
                         micro_batch=min(args.batch_size, 64), overwrite=True,
                         model_overrides={"img_size": args.img_size} if args.img_size else None)
    print(f"top-1 on {args.data}/val after {result.step} steps: {result.final['top1']:.2f} %")
    print(f"best checkpoint: {result.output_dir / 'best.safetensors'}")


if __name__ == "__main__":
    main()
