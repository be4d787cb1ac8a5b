"""Run by test_train.py under torchrun: the same tiny fine-tuning as the single-process run
(``distill`` as the third argument: DeiT soft distillation of a distilled student)."""

import sys

import torch

from vitzoo.train import finetune

sys.path.insert(0, sys.argv[2])
from test_train import ddp_setup  # noqa: E402

distill = len(sys.argv) > 3 and sys.argv[3] == "distill"
model, train, evaluation, transform, teacher, cfg = ddp_setup(distill=distill)
finetune(model, train, evaluation, cfg, output_dir=sys.argv[1], train_transform=transform,
         eval_transform=transform, teacher=teacher, device="cpu")
torch.distributed.destroy_process_group()
