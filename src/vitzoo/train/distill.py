"""DeiT's distillation losses.

Touvron et al., "Training data-efficient image transformers & distillation through
attention" (ICML 2021), §4.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import cast

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import VitzooError

__all__ = ["DistillationStudent", "distillation_loss"]


def distillation_loss(cls_logits: torch.Tensor, dist_logits: torch.Tensor,
                      teacher_logits: torch.Tensor, labels: torch.Tensor, *, kind: str,
                      alpha: float = 0.5, tau: float = 1.0,
                      label_smoothing: float = 0.0) -> torch.Tensor:
    """Per-sample losses ``(B,)``: ``(1 - alpha) * CE(cls, y) + alpha * L_distill(dist)``,
    whose batch mean is the loss of DeiT's ``DistillationLoss`` (facebookresearch/deit,
    ``losses.py``).

    ``kind="hard"``: cross-entropy of the distillation head against the teacher's argmax.
    ``kind="soft"``: ``tau^2 * KL(softmax(teacher / tau) || softmax(dist / tau)) / C`` for
    ``C`` classes: DeiT sums the KL over the batch and the classes and divides by
    ``B * C`` (``outputs_kd.numel()``, "the legacy PyTorch behavior"), so per sample it is the
    KL divided by the number of classes.
    """
    base = F.cross_entropy(cls_logits, labels, reduction="none", label_smoothing=label_smoothing)
    if kind == "hard":
        distill = F.cross_entropy(dist_logits, teacher_logits.argmax(dim=1), reduction="none")
    elif kind == "soft":
        distill = F.kl_div(F.log_softmax(dist_logits / tau, dim=1),
                           F.log_softmax(teacher_logits / tau, dim=1), reduction="none",
                           log_target=True).sum(dim=1) * (tau * tau / dist_logits.shape[1])
    else:
        raise ValueError(f"distillation kind {kind!r} is not 'hard' or 'soft'")
    return (1.0 - alpha) * base + alpha * distill


class DistillationStudent(nn.Module):
    """A distilled student whose ``forward`` returns both heads' logits
    ``(cls_logits, dist_logits)`` (``model.forward_distill``).

    It is what DistributedDataParallel wraps when distilling: DDP's gradient hooks run through
    the wrapper's ``forward``, so the distillation forward has to be a module's ``forward``.
    The parameters are the model's own (``student.model``).
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        if not callable(getattr(model, "forward_distill", None)):
            raise VitzooError("distillation needs a distilled student (a *_distilled_* DeiT, "
                              "or a ViTConfig with distilled=True)")
        self.model = model

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # checked in __init__; nn.Module's attribute lookup types it as a tensor or a module
        forward_distill = cast(Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]],
                               self.model.forward_distill)
        return forward_distill(x)
