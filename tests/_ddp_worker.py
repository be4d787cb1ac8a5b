"""Run by test_train.py under torchrun: the same tiny fine-tuning as the single-process run."""

import sys

import torch

from vitzoo.train import TrainConfig, finetune

sys.path.insert(0, sys.argv[2])
from test_train import tiny_setup  # noqa: E402

model, train, evaluation, transform = tiny_setup()
cfg = TrainConfig(steps=6, batch_size=16, micro_batch=4, optimizer="sgd", lr=0.1,
                  warmup_steps=2, eval_every=3, log_every=1)
finetune(model, train, evaluation, cfg, output_dir=sys.argv[1], train_transform=transform,
         eval_transform=transform, device="cpu")
torch.distributed.destroy_process_group()
