"""Fine-tuning: the recipe of Google's ViT release as a Python API (see ``vitzoo finetune``)."""

from .config import PRESETS, TrainConfig
from .distill import distillation_loss
from .loop import TrainResult, evaluate, finetune
from .schedule import lr_factor
from .state import seed_everything
from .workflow import finetune_on

__all__ = ["PRESETS", "TrainConfig", "TrainResult", "distillation_loss", "evaluate",
           "finetune", "finetune_on", "lr_factor", "seed_everything"]
