"""The fuzz suite: hostile and malformed inputs on every surface vitzoo reads, each classified.

Run by ``tests/test_fuzz.py`` in a child process (so its memory cap and signals stay there),
or by hand for a longer run::

    python tests/fuzz_inputs.py --cases 5000                 # CI's budget
    python tests/fuzz_inputs.py --profile long --cases 100000 --report fuzz.json

Every case gets a fresh directory inside a sandbox (the vitzoo and Hugging Face caches point
into it, the network is off) and one of these surfaces:

- ``file``: the bytes of a checkpoint (a valid seed of each format - vitzoo safetensors, timm
  ``.pth``, Google ``.npz``, big_vision two-tower ``.npz``, DINOv2 / DeiT III / OpenAI CLIP
  releases - cut, bit-flipped, overwritten or spliced, or a structurally generated file:
  safetensors headers, npz arrays and pickles of random shapes, dtypes and keys), under a
  random suffix, read by ``load_model``, ``load_checkpoint``, ``read_state_dict`` or
  ``convert_checkpoint``;
- ``dir``: a hub, transformers or open_clip directory whose JSON side files are generated;
- ``config``: ``ViTConfig`` / ``create_model`` / ``TrainConfig`` with generated field values;
- ``input``: a model called on tensors of generated rank, dtype and size;
- ``name``: cache commands (``vitzoo cache rm / verify / ls``) and ``create_model`` with
  generated names, some of them path-like;
- ``cli``: the command line's file arguments (``vitzoo convert``, ``vitzoo predict`` with
  generated images, cut or bit-flipped PNGs and JPEGs, ``vitzoo info``); a command passes when
  it returns a status (vitzoo's commands turn a ``VitzooError`` into status 2).

A case passes when it ends in a result or a ``VitzooError`` (for model inputs and
configurations also a ``ValueError`` / ``TypeError`` raised by vitzoo's own code). It fails on
any other exception, on a hang (a per-case timer), on ``MemoryError`` (the process runs under
``RLIMIT_AS``), and when anything outside the case's directory changed.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import io as _io
import json
import math
import os
import resource
import shutil
import signal
import sys
import tempfile
import time
import traceback
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "tests" / "data"
CASE_SECONDS = 20.0
"""A case that has not ended after this long is a hang."""
AS_LIMIT = 3 << 30
"""RLIMIT_AS of the fuzzing process (3 GiB; torch itself maps about 0.7 GiB)."""


class CaseTimeout(BaseException):
    """Raised by the per-case timer; a BaseException so no ``except Exception`` swallows it."""


def _alarm(signum: int, frame: Any) -> None:
    raise CaseTimeout


# -- seeds: one small valid file of every format ---------------------------------------------
def _tiny_cfg(**overrides: Any):
    import vitzoo

    base = dict(img_size=16, patch_size=8, embed_dim=16, depth=2, num_heads=2, mlp_dim=32,
                num_classes=5)
    return vitzoo.ViTConfig(**{**base, **overrides})


def make_seeds(directory: Path) -> dict[str, bytes]:
    """Valid files of each format vitzoo reads, by name (their bytes)."""
    import torch

    import vitzoo
    from vitzoo.adapters import jax_npz

    directory.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    model = vitzoo.build_model(_tiny_cfg())
    vitzoo.io.save_model(model, directory / "vitzoo.safetensors")
    state = {k: v.clone() for k, v in model.state_dict().items()}
    torch.save(state, directory / "timm.pth")
    torch.save({"model": state, "epoch": 3}, directory / "wrapped.pth")
    jax_model = vitzoo.build_model(_tiny_cfg(gelu_approximate="tanh"))
    arrays = jax_npz.from_vitzoo({k: v.numpy() for k, v in jax_model.state_dict().items()},
                                 num_heads=2)
    np.savez(directory / "google.npz", **arrays)
    siglip = vitzoo.build_model(_tiny_cfg(class_token=False, global_pool="map", num_classes=0,
                                          gelu_approximate="tanh"))
    tower = jax_npz.from_vitzoo({k: v.numpy() for k, v in siglip.state_dict().items()},
                                num_heads=2, layout="big_vision")
    np.savez(directory / "two_tower.npz", **{f"params/img/{k}": v for k, v in tower.items()},
             **{"params/t": np.zeros(()), "params/txt/x": np.zeros((2, 2))})
    try:
        from PIL import Image

        picture = Image.fromarray((np.arange(16 * 16 * 3) % 251).astype(np.uint8)
                                  .reshape(16, 16, 3))
        picture.save(directory / "image.png")
        picture.save(directory / "image.jpg")
    except ImportError:  # Pillow is the `image` extra
        pass
    seeds = {p.name: p.read_bytes() for p in sorted(directory.iterdir())}
    for name in ("dinov2/reg4.pth", "deit3/deit3_tiny.pth", "clip/openai_tiny.pt"):
        if (DATA / name).is_file():
            seeds[name.replace("/", "_")] = (DATA / name).read_bytes()
    return seeds


# -- the sandbox --------------------------------------------------------------------------------
def _snapshot(root: Path, skip: Path) -> dict[str, tuple[int, int]]:
    """Every path under ``root`` outside ``skip`` with its size and mtime."""
    found = {}
    own = root / "hypothesis"  # hypothesis's own caches
    for path in root.rglob("*"):
        if skip in path.parents or path == skip or own in path.parents or path == own:
            continue
        try:
            st = path.lstat()
        except OSError:
            continue
        found[str(path.relative_to(root))] = (st.st_size, st.st_mtime_ns)
    return found


class EscapeAttempt(BaseException):
    """Code under test tried to delete or rename a path outside the sandbox (refused)."""


def guard_deletions(root: Path) -> None:
    """Make every deleting or renaming call of this process refuse paths outside ``root``, so
    that a path-escape bug under test cannot harm the machine: it raises
    :class:`EscapeAttempt`, which the run counts as an escape."""
    import shutil as _shutil

    root = root.resolve()

    def inside(path: Any) -> bool:
        try:
            resolved = Path(os.fsdecode(path)).absolute()
        except (TypeError, ValueError):
            return True  # not a path: the call itself will complain
        parent = Path(os.path.normpath(resolved))
        return parent == root or root in parent.parents

    def guarded(fn: Any, *positions: int) -> Any:
        def call(*args: Any, **kwargs: Any) -> Any:
            if kwargs.get("dir_fd") is not None or kwargs.get("src_dir_fd") is not None:
                return fn(*args, **kwargs)  # inside a tree rmtree already checked
            for i in positions:
                if i < len(args) and not inside(args[i]):
                    raise EscapeAttempt(f"{fn.__name__}({args[i]!r}) outside the sandbox")
            return fn(*args, **kwargs)
        return call

    for module, name, positions in ((os, "remove", (0,)), (os, "unlink", (0,)),
                                    (os, "rmdir", (0,)), (os, "rename", (0, 1)),
                                    (os, "replace", (0, 1)), (_shutil, "rmtree", (0,)),
                                    (_shutil, "move", (0, 1))):
        setattr(module, name, guarded(getattr(module, name), *positions))
    original_unlink = Path.unlink

    def unlink(self: Path, missing_ok: bool = False) -> None:
        if not inside(self):
            raise EscapeAttempt(f"unlink({self}) outside the sandbox")
        original_unlink(self, missing_ok=missing_ok)

    Path.unlink = unlink  # type: ignore[method-assign]


class Sandbox:
    """A root with a sentinel tree, the caches, and one fresh directory per case."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.cases = root / "cases"
        self.cases.mkdir(parents=True)
        self.tmp = self.cases / "tmp"  # the temporary files of the code under test, per case
        self.tmp.mkdir()
        tempfile.tempdir = os.environ["TMPDIR"] = str(self.tmp)
        (root / "sentinel").mkdir()
        (root / "sentinel" / "keep.txt").write_text("nothing may touch this\n")
        os.environ.update({"VITZOO_CACHE": str(self.cases / "cache"),
                           "HF_HOME": str(self.cases / "hf"), "VITZOO_OFFLINE": "1",
                           "HF_HUB_OFFLINE": "1"})
        os.environ.pop("VITZOO_WEIGHTS_DIR", None)
        self.before = _snapshot(root, self.cases)

    def fresh(self) -> Path:
        shutil.rmtree(self.cases, ignore_errors=True)
        self.cases.mkdir()
        self.tmp.mkdir()
        return self.cases

    def changed_outside(self) -> list[str]:
        now = _snapshot(self.root, self.cases)
        return sorted(k for k in set(now) | set(self.before) if now.get(k) != self.before.get(k))


# -- outcome classification ----------------------------------------------------------------------
def _raised_by_vitzoo(err: BaseException) -> bool:
    """A ValueError / TypeError that vitzoo's own code raised (the innermost frame is vitzoo's)."""
    tb = err.__traceback__
    last = None
    while tb is not None:
        last = tb.tb_frame.f_code.co_filename
        tb = tb.tb_next
    return last is not None and f"{os.sep}vitzoo{os.sep}" in last


def classify(err: BaseException | None, surface: str) -> str:
    """``"ok"``, ``"refused"`` (a clear error) or ``"failed"``."""
    from vitzoo.errors import VitzooError

    if err is None:
        return "ok"
    if isinstance(err, VitzooError):
        return "refused"
    if surface in ("input", "config") and isinstance(err, (ValueError, TypeError)) \
            and _raised_by_vitzoo(err):
        return "refused"
    return "failed"


def signature(err: BaseException) -> str:
    """Where an unexpected exception came from: its type and the innermost frame."""
    frames = traceback.extract_tb(err.__traceback__)
    where = f"{Path(frames[-1].filename).name}:{frames[-1].lineno}" if frames else "?"
    return f"{type(err).__name__} at {where}: {str(err)[:160]}"


# -- the surfaces ---------------------------------------------------------------------------------
SUFFIXES = ("", ".npz", ".safetensors", ".pth", ".pt", ".bin", ".json", ".npz.pth")


def run_file(data: bytes, suffix: str, reader: str, case: Path) -> None:
    import vitzoo
    from vitzoo.loading import read_state_dict

    path = case / f"input{suffix}"
    path.write_bytes(data)
    if reader == "load_model":
        vitzoo.load_model(path)
    elif reader == "read_state_dict":
        read_state_dict(path)
    elif reader == "load_checkpoint":
        vitzoo.load_checkpoint(vitzoo.build_model(_tiny_cfg()), path, strict=False)
    elif reader == "convert":
        vitzoo.convert_checkpoint(path, case / "out.safetensors")
    else:  # create_model around a checkpoint
        vitzoo.create_model("vit_tiny_patch16_224", checkpoint_path=path, img_size=16,
                            patch_size=8, embed_dim=16, depth=2, num_heads=2, mlp_dim=32,
                            num_classes=5)


def run_dir(files: dict[str, bytes], case: Path) -> None:
    import vitzoo

    directory = case / "repo"
    directory.mkdir()
    for name, data in files.items():
        (directory / name).write_bytes(data)
    vitzoo.load_model(directory)


def run_config(fields: dict[str, Any], through: str) -> None:
    import vitzoo

    if through == "config":
        vitzoo.ViTConfig(**fields)
    elif through == "train":
        from vitzoo.train import TrainConfig

        TrainConfig(**fields)
    else:
        vitzoo.create_model("vit_tiny_patch16_224", device="meta", **fields)


_INPUT_MODEL: dict[str, Any] = {}


def run_input(x: Any) -> None:
    import torch

    import vitzoo

    if "model" not in _INPUT_MODEL:
        _INPUT_MODEL["model"] = vitzoo.build_model(_tiny_cfg()).eval()
    with torch.no_grad():
        _INPUT_MODEL["model"](x)


def run_name(name: str, action: str, case: Path) -> None:
    import vitzoo
    from vitzoo import hub

    entry = hub.cache_dir() / "weights" / "vit_tiny_patch16_224.augreg_in21k" / "model.safetensors"
    entry.parent.mkdir(parents=True, exist_ok=True)
    entry.write_bytes(b"not really weights")
    if action == "rm":
        hub.remove_cached(name)
    elif action == "create":
        vitzoo.create_model(name, device="meta")
    else:
        from vitzoo.cli import main

        with contextlib.redirect_stdout(_io.StringIO()), contextlib.redirect_stderr(_io.StringIO()):
            main(["cache", action])


def run_cli(data: bytes, suffix: str, command: str, case: Path, seeds: Path) -> None:
    from vitzoo.cli import main

    path = case / f"input{suffix}"
    path.write_bytes(data)
    argv = {"convert": ["convert", str(path), str(case / "out.safetensors"), "--quiet"],
            "predict": ["predict", str(seeds / "vitzoo.safetensors"), str(path)],
            "info": ["info", str(path)]}[command]
    with contextlib.redirect_stdout(_io.StringIO()), contextlib.redirect_stderr(_io.StringIO()):
        status = main(argv)
    if not isinstance(status, int):
        raise TypeError(f"the command returned {status!r}, not an exit status")


# -- generated data -------------------------------------------------------------------------------
def mutate(data: bytes, ops: list[tuple[str, int, int]]) -> bytes:
    """Apply ``(kind, position, value)`` edits: cut, flip a bit, set a byte, insert, zero a run."""
    out = bytearray(data)
    for kind, pos, value in ops:
        if not out:
            break
        at = pos % (len(out) + 1)
        if kind == "cut":
            del out[at:]
        elif kind == "flip" and at < len(out):
            out[at] ^= 1 << (value % 8)
        elif kind == "set" and at < len(out):
            out[at] = value % 256
        elif kind == "insert":
            out[at:at] = bytes([value % 256]) * (1 + value % 7)
        elif kind == "zero":
            out[at:at + 1 + value % 64] = bytes(min(1 + value % 64, len(out) - at))
    return bytes(out)


def safetensors_bytes(header: Any, payload: bytes, length_delta: int = 0) -> bytes:
    """A safetensors file with this (generated) JSON header."""
    text = json.dumps(header).encode() if not isinstance(header, bytes) else header
    return max(len(text) + length_delta, 0).to_bytes(8, "little") + text + payload


def npz_bytes(arrays: dict[str, Any], members: dict[str, bytes]) -> bytes:
    buf = _io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, value in arrays.items():
            member = _io.BytesIO()
            np.lib.format.write_array(member, np.asarray(value), allow_pickle=True)
            zf.writestr(name + ".npy", member.getvalue())
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


def pickle_bytes(obj: Any) -> bytes:
    import torch

    buf = _io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def _strategies(seeds: dict[str, bytes]):
    """The hypothesis strategy of one case: ``(surface, arguments)``."""
    import torch
    from hypothesis import strategies as st

    json_leaf = st.one_of(st.none(), st.booleans(), st.integers(-2**40, 2**40),
                          st.floats(allow_nan=True), st.text(max_size=12))
    json_value = st.recursive(json_leaf, lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=10), inner, max_size=4)),
        max_leaves=12)
    ops = st.lists(st.tuples(st.sampled_from(["cut", "flip", "set", "insert", "zero"]),
                             st.integers(0, 2**20), st.integers(0, 255)), min_size=1,
                   max_size=4)
    readers = st.sampled_from(["load_model", "read_state_dict", "load_checkpoint", "convert",
                               "create_model"])
    mutated = st.builds(lambda s, o: mutate(seeds[s], o), st.sampled_from(sorted(seeds)), ops)
    dtypes = st.sampled_from(["F32", "F16", "BF16", "F64", "I64", "I8", "U8", "BOOL", "F8_E4M3",
                              "X9", 7, None])
    shapes = st.lists(st.integers(-2, 2**33), max_size=4)
    tensor_info = st.fixed_dictionaries({"dtype": dtypes, "shape": shapes,
                                         "data_offsets": st.lists(st.integers(-4, 2**40),
                                                                  max_size=3)})
    header = st.one_of(
        st.dictionaries(st.sampled_from(["cls_token", "pos_embed", "patch_embed.proj.weight",
                                         "__metadata__", "head.weight"]),
                        st.one_of(tensor_info, json_value), max_size=4),
        json_value, st.binary(max_size=40))
    safetensors = st.builds(safetensors_bytes, header, st.binary(max_size=64),
                            st.integers(-8, 8))
    np_dtypes = st.sampled_from([np.dtype(d) for d in (
        "float32", "float16", "float64", "int8", "bool", "complex64", "U3", "O", "V4",
        [("a", "<f4"), ("b", "<i2")])])
    np_array = st.builds(lambda d, shape: np.zeros(shape, dtype=d), np_dtypes,
                         st.lists(st.integers(0, 4), max_size=4))
    npz_names = st.sampled_from(["embedding/kernel", "cls", "Transformer/posembed_input/"
                                 "pos_embedding", "params/img/embedding/kernel", "head/bias",
                                 "Transformer/encoderblock_0/LayerNorm_0/scale", "../evil"])
    npz = st.builds(npz_bytes, st.dictionaries(npz_names, np_array, max_size=4),
                    st.dictionaries(st.sampled_from(["notes.txt", "x.npy", "../../y.npy"]),
                                    st.binary(max_size=32), max_size=2))
    torch_dtypes = st.sampled_from([torch.float32, torch.float16, torch.bfloat16, torch.int64,
                                    torch.bool, torch.complex64, torch.uint8])
    tensor = st.builds(lambda d, shape: torch.zeros(shape, dtype=d), torch_dtypes,
                       st.lists(st.integers(0, 3), max_size=4))
    key = st.one_of(st.sampled_from(["cls_token", "pos_embed", "module.cls_token",
                                     "patch_embed.proj.weight", "blocks.0.norm1.weight",
                                     "mask_token", "visual.class_embedding", "model"]),
                    st.integers(-3, 3), st.text(max_size=8))
    pickled = st.builds(pickle_bytes, st.one_of(
        st.dictionaries(key, st.one_of(tensor, json_leaf), max_size=5),
        st.lists(tensor, max_size=3), json_value,
        st.builds(lambda d: {"model": d}, st.dictionaries(key, tensor, max_size=4))))
    file_case = st.tuples(st.just("file"), st.tuples(
        st.one_of(mutated, mutated, safetensors, npz, pickled, st.binary(max_size=64)),
        st.sampled_from(SUFFIXES), readers))
    weights = st.one_of(st.just(seeds["vitzoo.safetensors"]), mutated, pickled)
    side = st.builds(lambda v: json.dumps(v).encode(), json_value)
    config_json = st.one_of(side, st.builds(lambda arch, extra: json.dumps(
        {"architecture": arch, **extra}).encode(), st.sampled_from(
            ["vit_tiny_patch16_224", "../x", "nope", 3]), st.dictionaries(
            st.sampled_from(["num_classes", "pretrained_cfg", "model_type", "vitzoo_config",
                             "hidden_size", "image_size"]), json_value, max_size=3)),
        st.binary(max_size=20))
    dir_case = st.tuples(st.just("dir"), st.tuples(st.fixed_dictionaries({}, optional={
        "config.json": config_json, "model.safetensors": weights, "pytorch_model.bin": weights,
        "preprocessor_config.json": side, "open_clip_config.json": side,
        "open_clip_model.safetensors": weights})))
    field_values = st.one_of(json_leaf, st.lists(st.integers(-3, 2**31), max_size=3),
                             st.floats(), st.text(max_size=6))
    fields = st.dictionaries(st.sampled_from(
        ["img_size", "patch_size", "in_chans", "num_classes", "embed_dim", "depth", "num_heads",
         "mlp_dim", "qkv_bias", "class_token", "global_pool", "norm_eps", "drop_rate",
         "drop_path_rate", "reg_tokens", "pos_embed", "act_layer", "mlp_layer", "init_values",
         "backbone_layers", "pos_embed_resample", "dynamic_img_size", "representation_size"]),
        field_values, max_size=4)
    train_fields = st.dictionaries(st.sampled_from(
        ["steps", "batch_size", "micro_batch", "optimizer", "lr", "momentum", "weight_decay",
         "layer_decay", "betas", "warmup_steps", "schedule", "clip_grad_norm", "label_smoothing",
         "eval_every", "checkpoint_every", "amp", "seed", "train_scale", "train_ratio", "hflip",
         "augment", "distill", "distill_alpha", "distill_tau"]), field_values, max_size=4)
    config_case = st.one_of(
        st.tuples(st.just("config"), st.tuples(fields, st.sampled_from(["config",
                                                                         "create_model"]))),
        st.tuples(st.just("config"), st.tuples(train_fields, st.just("train"))))
    input_shape = st.lists(st.sampled_from([0, 1, 2, 3, 4, 15, 16, 17, 24, 32]), max_size=5)
    input_tensor = st.builds(lambda shape, d: torch.zeros(shape, dtype=d), input_shape.filter(
        lambda shape: math.prod(shape) <= 1 << 20), torch_dtypes)
    input_case = st.tuples(st.just("input"), st.tuples(st.one_of(
        input_tensor, json_leaf, st.lists(st.floats(), max_size=3))))
    names = st.one_of(st.text(max_size=20), st.sampled_from(
        ["../x", "../../sentinel", "../../../sentinel", "../../../../sentinel", "/nonexistent",
         "a/../../b", "vit_tiny_patch16_224.augreg_in21k", "weights/../../../sentinel",
         "..", ".", "", "vit_tiny_patch16_224/../..", "hf-hub:../x", "x\x00y"]))
    name_case = st.tuples(st.just("name"), st.tuples(names, st.sampled_from(
        ["rm", "create", "ls", "verify"])))
    images = [k for k in seeds if k.startswith("image")]
    cli_data = st.one_of(mutated, st.builds(lambda s, o: mutate(seeds[s], o),
                                            st.sampled_from(images or sorted(seeds)), ops))
    cli_case = st.tuples(st.just("cli"), st.tuples(
        cli_data, st.sampled_from([".png", ".jpg", ".safetensors", ".npz", ""]),
        st.sampled_from(["convert", "predict", "predict", "info"])))
    return st.one_of(file_case, file_case, file_case, dir_case, config_case, input_case,
                     name_case, cli_case)


# -- the run --------------------------------------------------------------------------------------
def run_case(surface: str, args: tuple, case: Path, seeds: Path) -> None:
    if surface == "cli":
        run_cli(*args, case, seeds)
    elif surface == "file":
        run_file(*args, case)
    elif surface == "dir":
        run_dir(*args, case)
    elif surface == "config":
        run_config(*args)
    elif surface == "input":
        run_input(*args)
    else:
        run_name(*args, case)


def fuzz(cases: int, seed: int, profile: str) -> dict[str, Any]:
    import warnings

    import torch
    from hypothesis import HealthCheck, Phase, given, settings

    torch.set_num_threads(1)
    warnings.simplefilter("ignore")
    from hypothesis.configuration import set_hypothesis_home_dir

    sandbox = Sandbox(Path(tempfile.mkdtemp(prefix="vitzoo-fuzz-")))
    set_hypothesis_home_dir(str(sandbox.root / "hypothesis"))  # its own caches, inside
    import vitzoo  # noqa: F401 - imports (filelock probes with a temporary directory) go first

    guard_deletions(sandbox.root)
    seeds = make_seeds(sandbox.root / "seeds")
    sandbox.before = _snapshot(sandbox.root, sandbox.cases)
    counts: collections.Counter[str] = collections.Counter()
    failures: dict[str, dict[str, Any]] = {}
    signal.signal(signal.SIGALRM, _alarm)

    @settings(max_examples=cases, deadline=None, database=None, derandomize=profile == "ci",
              suppress_health_check=list(HealthCheck),
              phases=(Phase.generate,) if profile == "ci" else tuple(Phase))
    @given(_strategies(seeds))
    def one(case_spec: tuple[str, tuple]) -> None:
        surface, args = case_spec
        case = sandbox.fresh()
        err: BaseException | None = None
        signal.setitimer(signal.ITIMER_REAL, CASE_SECONDS)
        try:
            run_case(surface, args, case, sandbox.root / "seeds")
        except (CaseTimeout, EscapeAttempt) as e:
            err = e
        except Exception as e:  # noqa: BLE001 - every outcome is classified
            err = e
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
        outcome = "timeout" if isinstance(err, CaseTimeout) else classify(err, surface)
        if isinstance(err, EscapeAttempt):
            outcome = "escaped"
        if isinstance(err, MemoryError):
            outcome = "memory"
        changed = sandbox.changed_outside()
        if changed:
            outcome = "escaped"
            sandbox.before = _snapshot(sandbox.root, sandbox.cases)
        counts[f"{surface}:{outcome}"] += 1
        counts[outcome] += 1
        if outcome in ("failed", "timeout", "memory", "escaped"):
            sig = (f"{surface}: " + (signature(err) if err is not None else "")
                   + (f" changed {changed[:3]}" if changed else ""))
            failures.setdefault(sig, {"count": 0, "example": repr(args)[:300]})["count"] += 1

    start = time.perf_counter()
    one()
    took = time.perf_counter() - start
    shutil.rmtree(sandbox.root, ignore_errors=True)
    total = sum(counts[k] for k in ("ok", "refused", "failed", "timeout", "memory", "escaped"))
    return {"cases": total, "seconds": round(took, 1), "counts": dict(sorted(counts.items())),
            "failures": failures}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", type=int, default=5000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--profile", choices=("ci", "long"), default="ci",
                        help="ci: derandomized, generation only; long: random, with shrinking")
    parser.add_argument("--report", type=Path, default=None, help="write the report as JSON")
    parser.add_argument("--memory-limit", type=int, default=AS_LIMIT,
                        help="RLIMIT_AS in bytes (0: none)")
    args = parser.parse_args(argv)
    if args.memory_limit:
        resource.setrlimit(resource.RLIMIT_AS, (args.memory_limit, args.memory_limit))
    sys.path.insert(0, str(ROOT / "src"))
    report = fuzz(args.cases, args.seed, args.profile)
    text = json.dumps(report, indent=1)
    if args.report:
        args.report.write_text(text + "\n")
    print(text)
    return 0 if not report["failures"] else 1


if __name__ == "__main__":
    sys.exit(main())
