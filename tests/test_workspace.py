"""The MLP's scratch buffer (vitzoo.layers.workspace): one per thread, reused by every block,
the same values as the plain path bit for bit, and never visible outside the MLP."""

from __future__ import annotations

import gc
import threading
from functools import partial

import pytest
import torch
from torch import nn

import vitzoo
from vitzoo.errors import ConfigError
from vitzoo.layers import Mlp, QuickGELU
from vitzoo.layers import workspace as ws

ACTS = {"gelu": nn.GELU, "gelu_tanh": partial(nn.GELU, approximate="tanh"),
        "quick_gelu": QuickGELU}


@pytest.fixture(autouse=True)
def _fresh_workspace():
    previous = ws.set_workspace_limit(ws.DEFAULT_WORKSPACE_LIMIT)
    ws.release_workspace()
    yield
    ws.set_workspace_limit(previous)
    ws.release_workspace()


def _mlp(act: str = "gelu", bias: bool = True, dim: int = 16) -> Mlp:
    torch.manual_seed(0)
    mlp = Mlp(dim, hidden_features=3 * dim, act_layer=ACTS[act], bias=bias).eval()
    with torch.no_grad():
        for p in mlp.parameters():
            p.copy_(torch.randn_like(p) * 0.3)
    return mlp


def _own_bytes() -> int:
    return sum(b.numel() * b.element_size() for b in ws._own_buffers().by_key.values())


@pytest.mark.parametrize("act", sorted(ACTS))
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("shape", [(5, 16), (2, 7, 16)])
@pytest.mark.parametrize("mode", ["no_grad", "inference_mode"])
def test_the_scratch_path_gives_the_plain_values_bit_for_bit(act, bias, shape, mode):
    mlp = _mlp(act, bias)
    x = torch.randn(*shape)
    plain = mlp(x)  # autograd on: the plain path, no scratch
    assert _own_bytes() == 0
    with getattr(torch, mode)():
        fast = mlp(x)
    rows = x.numel() // 16
    assert _own_bytes() == rows * 48 * 4, "the scratch path was not taken"
    assert fast.shape == plain.shape and fast.is_contiguous()
    assert torch.equal(fast, plain)


def test_a_model_uses_one_buffer_for_all_its_blocks_and_keeps_its_logits():
    torch.manual_seed(0)
    model = vitzoo.create_model("vit_tiny_patch16_224", img_size=32, num_classes=5,
                                depth=4).eval()
    x = torch.randn(3, 3, 32, 32)
    plain = model(x)
    with torch.inference_mode():
        fast = model(x)
        again = model(x)
    tokens = 3 * (4 + 1)
    assert _own_bytes() == tokens * 4 * 192 * 4  # one tokens x 4D buffer, not one per block
    assert torch.equal(fast, plain) and torch.equal(again, plain)


def test_the_output_does_not_share_the_buffer():
    mlp = _mlp()
    x1, x2 = torch.randn(4, 16), torch.randn(4, 16)
    with torch.no_grad():
        out1 = mlp(x1)
        kept = out1.clone()
        out2 = mlp(x2)
        buffer = ws._own_buffers().by_key[(torch.float32, False)]
    assert torch.equal(out1, kept), "a later call changed an earlier output"
    assert not torch.equal(out1, out2)
    for out in (out1, out2):
        assert out.untyped_storage().data_ptr() != buffer.untyped_storage().data_ptr()


def test_inference_mode_and_no_grad_keep_separate_buffers():
    # A buffer made under inference_mode is an inference tensor: writing into it outside
    # inference_mode would raise, so each mode has its own.
    mlp = _mlp()
    x = torch.randn(2, 3, 16)
    plain = mlp(x)
    with torch.inference_mode():
        a = mlp(x)
    with torch.no_grad():
        b = mlp(x)
    with torch.inference_mode():
        c = mlp(x)
    assert all(torch.equal(t, plain) for t in (a, b, c))
    assert set(ws._own_buffers().by_key) == {(torch.float32, True), (torch.float32, False)}


def test_each_thread_has_its_own_buffer_and_the_results_stay_right():
    mlp = _mlp(dim=64)
    inputs = [torch.randn(8, 9, 64) for _ in range(4)]
    expected = [mlp(x).detach() for x in inputs]
    results: dict[int, list[bool]] = {}
    barrier = threading.Barrier(len(inputs))

    def run(i: int) -> None:
        barrier.wait()
        with torch.no_grad():
            results[i] = [torch.equal(mlp(inputs[i]), expected[i]) for _ in range(30)]
        results[i].append(_own_bytes() == 8 * 9 * 192 * 4)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(inputs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(all(r) for r in results.values()) and len(results) == len(inputs)
    gc.collect()
    assert ws.workspace_bytes() == 0, "a finished thread's buffer was kept"


# each hook keeps its module's input: (the module's path, None for a global pre-hook that
# watches fc2; whether it is a pre-hook)
HOOKS = {"fc2_pre": ("fc2", True), "fc2_post": ("fc2", False), "fc1_pre": ("fc1", True),
         "act_pre": ("act", True), "global_pre": (None, True)}


@pytest.mark.parametrize("where", sorted(HOOKS))
def test_a_hook_that_could_see_the_buffer_turns_the_scratch_path_off(where):
    mlp = _mlp()
    x = torch.randn(2, 4, 16)
    seen: list[torch.Tensor] = []
    path, pre = HOOKS[where]
    if path is None:
        handle = nn.modules.module.register_module_forward_pre_hook(
            lambda m, args: seen.append(args[0]) if m is mlp.fc2 else None)
    elif pre:
        handle = mlp.get_submodule(path).register_forward_pre_hook(
            lambda m, args: seen.append(args[0]))
    else:
        handle = mlp.get_submodule(path).register_forward_hook(
            lambda m, args, out: seen.append(args[0]))
    try:
        plain = mlp(x).detach()
        first = seen.pop().detach().clone()
        with torch.no_grad():
            out = mlp(x)
            mlp(torch.randn(2, 4, 16))
    finally:
        handle.remove()
    assert torch.equal(out, plain)
    assert len(seen) == 2, "the hook did not run on every call"
    assert torch.equal(seen[0], first), "what the hook kept was overwritten by a later call"
    assert _own_bytes() == 0


def test_a_hook_on_the_mlp_itself_sees_its_input_and_output_untouched():
    mlp = _mlp()
    x = torch.randn(2, 4, 16)
    plain = mlp(x).detach()
    seen: list[torch.Tensor] = []
    handles = [mlp.register_forward_pre_hook(lambda m, args: seen.append(args[0])),
               mlp.register_forward_hook(lambda m, args, out: seen.append(out))]
    try:
        with torch.no_grad():
            out = mlp(x)
            mlp(torch.randn(2, 4, 16))
    finally:
        for handle in handles:
            handle.remove()
    assert _own_bytes() == 8 * 48 * 4, "a hook on the MLP alone need not turn the buffer off"
    assert seen[0] is x and torch.equal(seen[1], plain) and torch.equal(out, plain)


def test_a_wrong_width_gets_linears_own_error():
    mlp = _mlp()
    with torch.no_grad(), pytest.raises(RuntimeError, match="shapes cannot be multiplied"):
        mlp(torch.randn(2, 3, 15))


def test_inputs_it_cannot_take_go_the_plain_way():
    mlp = _mlp()
    strided = torch.randn(2, 16, 5).transpose(1, 2)  # not contiguous
    four_d = torch.randn(2, 2, 3, 16)
    expected = [mlp(t).detach() for t in (strided, four_d)]
    with torch.no_grad():
        got = [mlp(t) for t in (strided, four_d)]
        with torch.autocast("cpu", dtype=torch.bfloat16):
            auto = mlp(four_d[0])
        empty = mlp(torch.randn(0, 16))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        auto_plain = mlp(four_d[0]).detach()
    assert all(torch.equal(g, e) for g, e in zip(got, expected, strict=True))
    assert auto.dtype == torch.bfloat16 and torch.equal(auto, auto_plain)
    assert empty.shape == (0, 16)
    assert _own_bytes() == 0


def test_the_limit_bounds_what_is_kept():
    mlp = _mlp()
    x = torch.randn(10, 16)  # a 10 x 48 float32 hidden: 1920 bytes
    with torch.no_grad():
        mlp(x)
        assert _own_bytes() == 1920
        assert ws.set_workspace_limit(1000) == ws.DEFAULT_WORKSPACE_LIMIT
        assert _own_bytes() == 0, "a buffer above the new limit was kept"
        assert torch.equal(mlp(x), mlp.fc2(mlp.act(mlp.fc1(x))))
        assert _own_bytes() == 0
        mlp(x[:5])  # 960 bytes: within the limit
        assert _own_bytes() == 960
        ws.set_workspace_limit(0)  # off
        assert _own_bytes() == 0
        mlp(x[:5])
        assert ws.workspace_bytes() == 0


def test_release_frees_and_the_next_forward_remakes():
    mlp = _mlp()
    x = torch.randn(3, 16)
    with torch.no_grad():
        before = mlp(x)
        assert ws.workspace_bytes() == 3 * 48 * 4
        ws.release_workspace()
        assert ws.workspace_bytes() == 0
        assert torch.equal(mlp(x), before)
    assert ws.workspace_bytes() == 3 * 48 * 4


@pytest.mark.parametrize("bad", [-1, 1.5, "64M", True, None])
def test_a_bad_limit_is_a_config_error(bad):
    with pytest.raises(ConfigError, match="number of bytes"):
        ws.set_workspace_limit(bad)
    assert ws.set_workspace_limit(ws.DEFAULT_WORKSPACE_LIMIT) == ws.DEFAULT_WORKSPACE_LIMIT


def test_training_and_autograd_never_touch_it():
    mlp = _mlp()
    x = torch.randn(2, 3, 16, requires_grad=True)
    mlp.train()(x).sum().backward()
    mlp.eval()(x).sum().backward()  # eval with autograd on (saliency maps)
    assert x.grad is not None and ws.workspace_bytes() == 0
