"""DeiT's distillation losses.

Touvron et al., "Training data-efficient image transformers & distillation through
attention" (ICML 2021), §4.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["distillation_loss"]


def distillation_loss(cls_logits: torch.Tensor, dist_logits: torch.Tensor,
                      teacher_logits: torch.Tensor, labels: torch.Tensor, *, kind: str,
                      alpha: float = 0.5, tau: float = 1.0,
                      label_smoothing: float = 0.0) -> torch.Tensor:
    """Per-sample losses ``(B,)``: ``(1 - alpha) * CE(cls, y) + alpha * L_distill(dist)``.

    ``kind="hard"``: cross-entropy of the distillation head against the teacher's argmax.
    ``kind="soft"``: ``tau^2 * KL(softmax(teacher / tau) || softmax(dist / tau))``.
    """
    base = F.cross_entropy(cls_logits, labels, reduction="none", label_smoothing=label_smoothing)
    if kind == "hard":
        distill = F.cross_entropy(dist_logits, teacher_logits.argmax(dim=1), reduction="none")
    elif kind == "soft":
        distill = F.kl_div(F.log_softmax(dist_logits / tau, dim=1),
                           F.log_softmax(teacher_logits / tau, dim=1), reduction="none",
                           log_target=True).sum(dim=1) * tau * tau
    else:
        raise ValueError(f"distillation kind {kind!r} is not 'hard' or 'soft'")
    return (1.0 - alpha) * base + alpha * distill
