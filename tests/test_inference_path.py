"""The evaluation path without autograd: the same values as the plain path, bit for bit,
with the activation and the residual sums written into buffers nobody else can see; the
plain path whenever a hook, autograd, a tracer or TorchScript could tell the difference."""

from __future__ import annotations

import warnings
from functools import partial

import pytest
import torch
from torch import nn
from torch.profiler import profile

import vitzoo
from vitzoo.layers import Block, QuickGELU, SwiGLU

IN_PLACE_OPS = ("aten::gelu_", "aten::add_", "aten::mul_", "aten::silu_")

BLOCKS = {
    "gelu": {},
    "gelu_tanh": {"act_layer": partial(nn.GELU, approximate="tanh")},
    "quick_gelu": {"act_layer": QuickGELU},
    "swiglu": {"mlp_layer": SwiGLU},
    "layer_scale": {"init_values": 0.5},
}


def _block(kind: str) -> Block:
    torch.manual_seed(0)
    block = Block(32, num_heads=4, **BLOCKS[kind]).eval()
    with torch.no_grad():
        for p in block.parameters():
            p.copy_(torch.randn_like(p) * 0.2)
    return block


def _ops(fn) -> set[str]:
    with profile() as prof:
        fn()
    return {e.key for e in prof.key_averages()}


@pytest.mark.parametrize("kind", sorted(BLOCKS))
@pytest.mark.parametrize("mode", ["no_grad", "inference_mode"])
def test_the_in_place_path_gives_the_plain_paths_values_bit_for_bit(kind, mode):
    block = _block(kind)
    x = torch.randn(3, 7, 32)
    kept = x.clone()
    plain = block(x)  # autograd on: the plain path
    with getattr(torch, mode)():
        ops = _ops(lambda: block(x))
        fast = block(x)
    assert torch.equal(fast, plain)
    assert torch.equal(x, kept), "the block's input must never be overwritten"
    in_place = {"aten::add_"} | ({"aten::silu_"} if kind == "swiglu" else set())
    assert in_place <= ops, f"{kind}: the in-place path was not taken ({sorted(ops)})"
    assert "aten::add" not in ops  # both residual sums went into the branches' buffers


def test_a_whole_model_is_unchanged_and_its_input_untouched():
    torch.manual_seed(0)
    model = vitzoo.create_model("vit_tiny_patch16_224", img_size=32, num_classes=5).eval()
    x = torch.randn(2, 3, 32, 32)
    kept = x.clone()
    plain = model(x)
    with torch.inference_mode():
        assert torch.equal(model(x), plain)
        assert "aten::gelu_" in _ops(lambda: model(x))
    assert torch.equal(x, kept)


def _hooked_runs(block: Block, register) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor,
                                                   list[torch.Tensor]]:
    """``block(x)`` with autograd on (the plain path), then under ``no_grad``, with the hook
    ``register(keep)`` installs appending what it sees to ``keep``: the plain output, the
    no_grad output, a copy of what the hook kept on the plain run, and what it kept after."""
    x = torch.randn(2, 5, 32)
    seen: list[torch.Tensor] = []
    handle = register(seen)
    try:
        plain = block(x)
        expected = seen.pop().detach().clone()
        with torch.no_grad():
            out = block(x)
    finally:
        handle.remove()
    return plain, out, expected, seen


@pytest.mark.parametrize("where", ["mlp.fc1", "mlp.act", "attn", "attn.proj", "mlp",
                                   "mlp.fc2"])
def test_a_forward_hook_sees_the_values_the_plain_path_computes(where):
    block = _block("gelu")
    plain, out, expected, seen = _hooked_runs(
        block, lambda keep: block.get_submodule(where).register_forward_hook(
            lambda module, args, out: keep.append(out)))
    assert torch.equal(out, plain)
    assert torch.equal(seen.pop(), expected), f"the output hooked at {where} was overwritten"


@pytest.mark.parametrize("kind", ["gelu", "quick_gelu", "swiglu"])
def test_a_pre_hook_on_the_activation_still_runs_and_sees_the_plain_values(kind):
    block = _block(kind)
    plain, out, expected, seen = _hooked_runs(
        block, lambda keep: block.mlp.act.register_forward_pre_hook(
            lambda m, args: keep.append(args[0])))
    assert torch.equal(out, plain)
    assert len(seen) == 1, "the in-place path skipped the activation's pre-hook"
    assert torch.equal(seen[0], expected), "what the pre-hook kept was overwritten"


def test_a_global_forward_hook_turns_the_in_place_path_off():
    block = _block("gelu")
    x = torch.randn(2, 5, 32)
    seen: list[torch.Tensor] = []
    handle = nn.modules.module.register_module_forward_hook(
        lambda module, args, out: seen.append(out.clone()) if module is block.mlp.fc1 else None)
    try:
        with torch.no_grad():
            ops = _ops(lambda: block(x))
    finally:
        handle.remove()
    assert not ops & set(IN_PLACE_OPS)


def test_eval_with_autograd_still_differentiates():
    block = _block("gelu")
    x = torch.randn(2, 5, 32, requires_grad=True)
    block(x).square().sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_an_injected_attention_or_mlp_takes_the_plain_path():
    class Passthrough(nn.Module):  # returns its input: adding into it would alter the caller's
        def __init__(self, dim: int, **_: object) -> None:
            super().__init__()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x

    block = Block(32, num_heads=4, attn_layer=Passthrough).eval()
    x = torch.randn(2, 5, 32)
    with torch.no_grad():
        h = block.norm1(x)
        expected = block.mlp(block.norm2(x + h)) + (x + h)
        out = block(x)
    torch.testing.assert_close(out, expected, atol=0, rtol=0)


def test_scripting_and_tracing_record_the_plain_arithmetic():
    torch.manual_seed(0)
    model = vitzoo.create_model("vit_tiny_patch16_224", img_size=32, depth=2).eval()
    x = torch.randn(1, 3, 32, 32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # TorchScript's deprecation notice
        scripted = torch.jit.script(model)
        with torch.no_grad():
            traced = torch.jit.trace(model, x)
            graph = torch.fx.symbolic_trace(model).graph
    with torch.no_grad():
        assert torch.equal(scripted(x), model(x))
        assert torch.equal(traced(x), model(x))
    for text in (str(scripted.graph), str(traced.inlined_graph), str(graph)):
        assert "gelu_" not in text and "add_(" not in text
    # The traced graph carries no in-place op, so it still trains.
    traced.train()
    traced(x).sum().backward()
