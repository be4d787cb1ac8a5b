"""The transformer's position-wise MLPs: Linear, activation, Linear; and the SwiGLU variant.

Dosovitskiy et al., "An Image is Worth 16x16 Words" (ICLR 2021), eq. 3; Shazeer, "GLU Variants
Improve Transformer" (2020) for SwiGLU; QuickGELU is the activation of OpenAI's CLIP (Radford
et al., 2021).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from .helpers import no_pre_hooks, overwritable
from .weight_init import init_linear_
from .workspace import scratch

__all__ = ["Mlp", "QuickGELU", "SwiGLU"]


class QuickGELU(nn.Module):
    """``x * sigmoid(1.702 * x)``: the sigmoid approximation of GELU OpenAI's CLIP trained with."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(1.702 * x)


_IN_PLACE_ACTS = (nn.GELU, QuickGELU)


class Mlp(nn.Module):
    """``fc2(drop(act(fc1(x))))`` followed by dropout.

    Args:
        in_features: input and output width D.
        hidden_features: hidden width (default ``4 * in_features``).
        act_layer: builds the activation: ``nn.GELU`` is the exact erf GELU (PyTorch);
            ``partial(nn.GELU, approximate="tanh")`` the tanh approximation JAX uses.
        bias: whether both Linears have biases.
        drop: dropout after the activation and after ``fc2``.
    """

    def __init__(self, in_features: int, *, hidden_features: int | None = None,
                 act_layer: Callable[[], nn.Module] = nn.GELU, bias: bool = True,
                 drop: float = 0.0) -> None:
        super().__init__()
        hidden_features = hidden_features or 4 * in_features
        self.fc1 = nn.Linear(in_features, hidden_features, bias=bias)
        self.act = act_layer()
        self.drop1 = nn.Dropout(drop)
        self.fc2 = nn.Linear(hidden_features, in_features, bias=bias)
        self.drop2 = nn.Dropout(drop)

    @torch.no_grad()
    def init_weights(self, mode: str) -> None:
        """``"timm"``: trunc-normal 0.02, zero biases; ``"jax"``: Xavier, N(0, 1e-6) biases."""
        for linear in (self.fc1, self.fc2):
            init_linear_(linear, mode, jax_bias_std=1e-6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            out: torch.Tensor = self.drop2(self.fc2(self.drop1(self.act(self.fc1(x)))))
            return out
        # Evaluation: dropout is the identity; the activation overwrites fc1's output when
        # nobody else can see it (the same values, one buffer fewer).
        if not torch.jit.is_scripting():  # TorchScript compiles none of this branch
            if self._act_may_overwrite():
                return self._forward_in_place(x)
        out = self.fc2(self.act(self.fc1(x)))
        return out

    def _forward_in_place(self, x: torch.Tensor) -> torch.Tensor:
        """The evaluation forward without autograd. ``fc1`` writes into the thread's scratch
        buffer (:mod:`~vitzoo.layers.workspace`) when it may: the same ``addmm`` that
        ``nn.Linear`` runs on a contiguous 2-D or 3-D input, so the same values, without a
        fresh ``tokens x hidden`` buffer per block. The activation then overwrites it and
        ``fc2`` reads it; nothing else sees it."""
        fc1 = self.fc1
        rows = x.numel() // fc1.in_features if x.dim() in (2, 3) else 0
        buf = scratch(rows * fc1.out_features, x) if rows and self._may_use_scratch(x) else None
        if buf is None:
            out: torch.Tensor = self.fc2(self._act_in_place(fc1(x)))
            return out
        hidden = buf.view(rows, fc1.out_features)
        flat = x.view(rows, fc1.in_features)
        if fc1.bias is None:
            torch.mm(flat, fc1.weight.t(), out=hidden)
        else:
            torch.addmm(fc1.bias, flat, fc1.weight.t(), out=hidden)
        out = self.fc2(self._act_in_place(hidden))
        return out.view(*x.shape[:-1], out.shape[-1])

    def _may_use_scratch(self, x: torch.Tensor) -> bool:
        """Whether ``fc1`` may be computed into the scratch buffer: both Linears are plain
        ``nn.Linear``; ``fc1``, whose call is skipped, has no pre-hook (its forward hooks are
        ruled out by the caller's :func:`overwritable`) and ``fc2``, whose input is the
        buffer, no hook at all; ``x`` is a plain contiguous ``(..., in_features)`` tensor of
        the weights' dtype; no autocast is on."""
        fc1, fc2 = self.fc1, self.fc2
        return (type(fc1) is nn.Linear and type(fc2) is nn.Linear and type(x) is torch.Tensor
                and x.is_contiguous() and x.shape[-1] == fc1.in_features
                and x.dtype == fc1.weight.dtype and not torch.is_autocast_enabled(x.device.type)
                and not fc2._forward_hooks and no_pre_hooks(fc1, fc2))

    def _act_may_overwrite(self) -> bool:
        """The activation's call is skipped (computed in place), so it may have no hook."""
        return type(self.act) in _IN_PLACE_ACTS and isinstance(self.fc1, nn.Linear) \
            and overwritable(self.fc1, self.act) and no_pre_hooks(self.act)

    def _act_in_place(self, x: torch.Tensor) -> torch.Tensor:
        """``act(x)`` written into ``x``, bit for bit the values ``act`` returns."""
        if type(self.act) is QuickGELU:
            return x.mul_(torch.sigmoid(1.702 * x))
        out: torch.Tensor = torch.ops.aten.gelu_(x, approximate=self.act.approximate)
        return out


class SwiGLU(nn.Module):
    """``fc2(drop(silu(a) * b))`` with ``[a; b] = fc1(x)``, followed by dropout.

    One packed ``fc1`` of ``2 * hidden_features`` outputs, the gate ``a`` first: the layout of
    DINOv2's ``w12`` / ``w3`` and of timm's ``SwiGLUPacked`` (keys ``fc1``, ``fc2``).

    Args:
        in_features: input and output width D.
        hidden_features: width after gating, ``fc2``'s input (default ``4 * in_features``).
        act_layer: ignored (the gate is SiLU); accepted so blocks build every MLP alike.
        bias: whether both Linears have biases.
        drop: dropout after the gating and after ``fc2``.
    """

    def __init__(self, in_features: int, *, hidden_features: int | None = None,
                 act_layer: Callable[[], nn.Module] | None = None, bias: bool = True,
                 drop: float = 0.0) -> None:
        super().__init__()
        hidden_features = hidden_features or 4 * in_features
        self.fc1 = nn.Linear(in_features, 2 * hidden_features, bias=bias)
        self.act = nn.SiLU()
        self.drop1 = nn.Dropout(drop)
        self.fc2 = nn.Linear(hidden_features, in_features, bias=bias)
        self.drop2 = nn.Dropout(drop)

    @torch.no_grad()
    def init_weights(self, mode: str) -> None:
        """As :class:`Mlp`'s (the two halves of ``fc1`` initialised as separate kernels)."""
        init_linear_(self.fc1, mode, parts=2, jax_bias_std=1e-6)
        init_linear_(self.fc2, mode, jax_bias_std=1e-6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h: torch.Tensor = self.fc1(x)
        gate, value = h.chunk(2, dim=-1)
        if self.training:
            out: torch.Tensor = self.drop2(self.fc2(self.drop1(self.act(gate) * value)))
            return out
        # Evaluation: dropout is the identity; the gate is activated in place when nobody
        # else can see fc1's output.
        if not torch.jit.is_scripting():  # TorchScript compiles none of this branch
            if self._gate_may_overwrite():
                out = self.fc2(torch.nn.functional.silu(gate, inplace=True) * value)
                return out
        out = self.fc2(self.act(gate) * value)
        return out

    def _gate_may_overwrite(self) -> bool:
        """The activation's call is skipped (computed in place), so it may have no hook."""
        return type(self.act) is nn.SiLU and isinstance(self.fc1, nn.Linear) \
            and overwritable(self.fc1, self.act) and no_pre_hooks(self.act)
