"""Export a model for deployment: ``torch.export`` programs and ONNX files checked in onnxruntime.

Both capture the forward pass (``model(x) -> logits``) as one graph with a dynamic batch
dimension and, for models built with ``dynamic_img_size=True``, dynamic height and width.
ONNX goes through ``torch.onnx.export(..., dynamo=True)``, the ``torch.export``-based exporter
that is PyTorch's default since 2.9 (the TorchScript-based one is deprecated there); its
symbolic shapes come from the same ``torch.export`` trace as :func:`export_program`.
"""

from __future__ import annotations

import contextlib
import importlib.util
import inspect
import logging
import os
import re
import tempfile
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .config import ViTConfig
from .errors import ConfigError, ExportError, MissingDependencyError, VerificationError

__all__ = ["ONNX_ATOL", "PROGRAM_ATOL", "OnnxExport", "check_onnx", "example_input", "export_onnx",
           "export_program"]

ONNX_ATOL = 1e-4
"""The largest difference between onnxruntime's and eager PyTorch's outputs that passes."""
PROGRAM_ATOL = 1e-5
"""The same for a ``torch.export`` program (PyTorch's own kernels on both sides)."""

_EXPORT_EXTRA = 'pip install "vitzoo[export]"'
# The exporter logs a warning per torchvision operator it cannot register when torchvision is
# not installed; vitzoo never uses torchvision.
_QUIET_LOGGERS = ("torch.onnx._internal.exporter._registration",)


@dataclass(frozen=True)
class OnnxExport:
    """What :func:`export_onnx` wrote and how it was checked."""

    path: Path
    opset: int
    input_shape: tuple[int | str, ...]
    """The ONNX input's shape: an int for a fixed dimension, a name for a dynamic one."""
    max_abs_diff: float | None = None
    """Largest difference between onnxruntime and eager PyTorch; None when not verified."""
    checked_shapes: list[tuple[int, ...]] = field(default_factory=list)
    """The input shapes the file was run at in onnxruntime."""

    @property
    def verified(self) -> bool:
        return self.max_abs_diff is not None


# -- inputs and shapes ----------------------------------------------------------------------------
def _vit_config(model: nn.Module) -> ViTConfig:
    """The config of ``model`` or of the first vitzoo model inside it (a features wrapper)."""
    for module in model.modules():
        cfg = getattr(module, "cfg", None)
        if isinstance(cfg, ViTConfig):
            return cfg
    raise ConfigError(f"{type(model).__name__} is not a vitzoo model (no ViTConfig in it); "
                      "export models made by vitzoo.create_model or vitzoo.load_model")


def _image_size(cfg: ViTConfig, img_size: int | Sequence[int] | None) -> tuple[int, int]:
    if img_size is None:
        return cfg.img_size
    size = (img_size, img_size) if isinstance(img_size, int) else tuple(img_size)
    if len(size) != 2 or not all(isinstance(s, int) and s > 0 for s in size):
        raise ConfigError(f"img_size must be an int or (height, width), got {img_size!r}")
    return size


def example_input(model: nn.Module, *, img_size: int | Sequence[int] | None = None,
                  batch_size: int = 1, seed: int = 0) -> torch.Tensor:
    """A reproducible random batch ``(B, in_chans, H, W)`` on the model's device and dtype.

    Args:
        model: a vitzoo model.
        img_size: ``H`` or ``(H, W)``; default the model's ``img_size``.
        batch_size: B.
        seed: the generator's seed.
    """
    cfg = _vit_config(model)
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ConfigError(f"batch_size must be a positive int, got {batch_size!r}")
    h, w = _image_size(cfg, img_size)
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    dtype = param.dtype if param is not None and param.is_floating_point() else torch.float32
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(batch_size, cfg.in_chans, h, w, generator=generator)
    return x.to(device=device, dtype=dtype)


def _dynamic_dims(cfg: ViTConfig, *, dynamic_batch: bool, dynamic_size: bool) -> dict[int, Any]:
    """``torch.export`` dims of the image argument: batch, and height/width when asked."""
    Dim = torch.export.Dim
    dims: dict[int, Any] = {}
    if dynamic_batch:
        dims[0] = Dim("batch")
    if dynamic_size:
        if not cfg.dynamic_img_size:
            raise ConfigError(
                "dynamic_size=True needs a model that accepts any image size: build it with "
                "vitzoo.create_model(name, dynamic_img_size=True) (or vitzoo export "
                "--dynamic-size, which does)"
            )
        # The model's own checks decide which sizes are valid (whole patches unless
        # dynamic_img_pad, the hybrid stem's strides); DYNAMIC lets the trace keep them.
        dims[2] = Dim.DYNAMIC
        dims[3] = Dim.DYNAMIC
    return dims


def _trace_input(model: nn.Module, img_size: int | Sequence[int] | None, batch_size: int,
                 dynamic_batch: bool) -> torch.Tensor:
    # torch.export specialises a dimension of size 1 to a constant, so a dynamic batch is
    # traced at two images (the program then runs at any batch size, 1 included).
    return example_input(model, img_size=img_size,
                         batch_size=max(batch_size, 2) if dynamic_batch else batch_size)


@contextlib.contextmanager
def _eval_mode(model: nn.Module) -> Iterator[None]:
    """Export the inference graph (no dropout, no stochastic depth); restore the mode after."""
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


def _token_stride(model: nn.Module) -> int:
    """Input pixels per token (the patch, times the hybrid stem's stride)."""
    for module in model.modules():
        feat_ratio = getattr(module, "feat_ratio", None)
        if callable(feat_ratio):
            return int(feat_ratio())
    return max(_vit_config(model).patch_size)


def _check_shapes(x: torch.Tensor, model: nn.Module,
                  dims: dict[int, Any]) -> list[torch.Tensor]:
    """Inputs to run the file at: the traced one, and each dynamic dimension changed."""
    inputs = [x]
    b, c, h, w = x.shape
    if 0 in dims:
        inputs.append(torch.randn(b + 1, c, h, w, generator=torch.Generator().manual_seed(1)))
    if 2 in dims:
        stride = _token_stride(model)
        # rectangular: one token row more, two token columns more
        inputs.append(torch.randn(b, c, h + stride, w + 2 * stride,
                                  generator=torch.Generator().manual_seed(2)))
    return [t.to(device=x.device, dtype=x.dtype) for t in inputs]


def _outputs(value: Any) -> list[torch.Tensor]:
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, (list, tuple)):
        return [t for v in value for t in _outputs(v)]
    if isinstance(value, dict):
        return [t for v in value.values() for t in _outputs(v)]
    raise ExportError(f"the model returned {type(value).__name__}; only tensors, lists, tuples "
                      "and dicts of tensors can be checked against ONNX")


# -- torch.export ---------------------------------------------------------------------------------
def export_program(model: nn.Module, *, img_size: int | Sequence[int] | None = None,
                   batch_size: int = 1, dynamic_batch: bool = True, dynamic_size: bool = False,
                   strict: bool = False, verify: bool = True,
                   atol: float = PROGRAM_ATOL) -> torch.export.ExportedProgram:
    """Capture ``model``'s inference forward pass with :func:`torch.export.export`.

    Args:
        model: a vitzoo model (put in eval mode for the trace, its mode restored after).
        img_size: the traced image size; default the model's ``img_size``.
        batch_size: the batch size of the program when ``dynamic_batch=False``.
        dynamic_batch: any batch size at run time.
        dynamic_size: any height and width at run time; needs a model built with
            ``dynamic_img_size=True``.
        strict: ``torch.export``'s strict (TorchDynamo) tracing instead of the default
            non-strict mode.
        verify: run the program at the traced shape and at another batch size and image size
            when those are dynamic, and compare it with the eager model.
        atol: the largest difference that passes.

    Returns:
        The ``ExportedProgram``; ``program.module()(x)`` runs it,
        ``torch.export.save(program, path)`` stores it.

    Raises:
        ConfigError: ``dynamic_size`` on a fixed-size model, or bad sizes.
        ExportError: ``torch.export`` failed (the message carries its reason).
        VerificationError: the program fails or differs from the model at a checked shape.
    """
    cfg = _vit_config(model)
    dims = _dynamic_dims(cfg, dynamic_batch=dynamic_batch, dynamic_size=dynamic_size)
    x = _trace_input(model, img_size, batch_size, dynamic_batch)
    with _eval_mode(model), torch.no_grad():
        model(x)  # the model's own input checks (ImageSizeError) before tracing
        try:
            program = torch.export.export(model, (x,),
                                          dynamic_shapes=(dims,) if dims else None,
                                          strict=strict)
        except Exception as err:  # the exporter's errors have no common base class
            raise ExportError(f"torch.export could not capture {_name(model)}: "
                              f"{_first_line(err)}") from err
        if verify:
            _check_program(program, model, _check_shapes(x, model, dims), atol)
    return program


def _check_program(program: torch.export.ExportedProgram, model: nn.Module,
                   inputs: Sequence[torch.Tensor], atol: float) -> None:
    module = program.module()
    for x in inputs:
        try:
            got = _outputs(module(x))
        except Exception as err:  # a guard of the trace that this shape does not meet
            raise VerificationError(
                f"the torch.export program of {_name(model)} fails at input shape "
                f"{tuple(x.shape)}: {_first_line(err)}; the trace fixed something of the traced "
                "shape. Report it with the model's name and the input shape") from err
        diff = max((a.float() - e.float()).abs().max().item()
                   for a, e in zip(got, _outputs(model(x)), strict=True))
        if not diff <= atol:  # also catches NaN
            raise VerificationError(f"the torch.export program of {_name(model)} differs from "
                                    f"the model by {diff:.3g} (> {atol:g}) at input shape "
                                    f"{tuple(x.shape)}")


# -- ONNX -----------------------------------------------------------------------------------------
def _require(*modules: str, why: str) -> None:
    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        raise MissingDependencyError(f"{why} needs {', '.join(missing)}, not installed: "
                                     f"{_EXPORT_EXTRA}")


def _has_onnxruntime() -> bool:
    return importlib.util.find_spec("onnxruntime") is not None


@contextlib.contextmanager
def _quiet_exporter() -> Iterator[None]:
    loggers = [logging.getLogger(name) for name in _QUIET_LOGGERS]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            # PyTorch 2.13's exporter trips over its own deprecation of pytree's LeafSpec
            warnings.filterwarnings("ignore", message=".*LeafSpec.*", category=FutureWarning)
            yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


def check_onnx(path: str | Path, model: nn.Module, inputs: Sequence[torch.Tensor], *,
               atol: float = ONNX_ATOL) -> float:
    """Run the ONNX file at ``path`` in onnxruntime (CPU) on each input and compare it with
    ``model`` in eval mode.

    Returns:
        The largest absolute difference over all inputs and outputs.

    Raises:
        MissingDependencyError: onnxruntime is not installed.
        VerificationError: a difference exceeds ``atol`` or the outputs do not match in number
            or shape.
    """
    _require("onnxruntime", why="checking an ONNX file")
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.log_severity_level = 4  # its errors come back as exceptions; no log lines too
    session = onnxruntime.InferenceSession(str(path), options,
                                           providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    worst = 0.0
    for x in inputs:
        with _eval_mode(model), torch.no_grad():
            expected = [t.detach().float().cpu() for t in _outputs(model(x))]
        try:
            arrays = session.run(None, {name: x.detach().cpu().numpy()})
        except Exception as err:  # onnxruntime's errors have no public base class
            raise VerificationError(f"{path}: onnxruntime cannot run the file at input shape "
                                    f"{tuple(x.shape)}: {_first_line(err)}") from err
        got = [torch.from_numpy(a).float() for a in arrays]
        if [t.shape for t in got] != [t.shape for t in expected]:
            raise VerificationError(
                f"{path}: onnxruntime gave outputs {[tuple(t.shape) for t in got]} for input "
                f"{tuple(x.shape)}, PyTorch {[tuple(t.shape) for t in expected]}")
        diff = max((a - e).abs().max().item() for a, e in zip(got, expected, strict=True))
        worst = max(worst, diff)
        if not diff <= atol:  # also catches NaN
            raise VerificationError(f"{path}: onnxruntime differs from PyTorch by {diff:.3g} "
                                    f"(> {atol:g}) at input shape {tuple(x.shape)}")
    return worst


def _check_staged(staged: Path, target: Path, model: nn.Module,
                  inputs: Sequence[torch.Tensor], atol: float) -> float:
    try:
        return check_onnx(staged, model, inputs, atol=atol)
    except VerificationError as err:
        reason = str(err).removeprefix(f"{staged}: ").replace(str(staged), str(target))
        raise VerificationError(
            f"{target}: {reason}; nothing was written. Report it with the model's name and the "
            "input shape; verify=False (vitzoo export --no-verify) keeps the file to inspect it"
        ) from None


def _move_into_place(staging: Path, target: Path) -> None:
    # external weights first, the model last: once the .onnx appears, its weights are there
    staged = sorted(staging.iterdir(), key=lambda p: p.name == target.name)
    for file in staged:
        os.replace(file, target.parent / file.name)


_INPUT_DIM_NAMES = ("batch", None, "height", "width")


def _name_dims(program: Any) -> None:
    """Call the input's dynamic height and width ``height`` and ``width`` (the exporter numbers
    them, ``s53``), in every shape expression of the graph."""
    import onnx_ir

    graph = program.model.graph
    names = {str(d): name for d, name in zip(graph.inputs[0].shape.dims, _INPUT_DIM_NAMES,
                                              strict=True)
             if name and isinstance(d, onnx_ir.SymbolicDim) and str(d) != name}
    if not names:
        return
    symbol = re.compile(r"\b(" + "|".join(map(re.escape, names)) + r")\b")
    values = [*graph.inputs, *graph.outputs, *(v for node in graph for v in node.outputs)]
    for value in values:
        if value.shape is None:
            continue
        dims = [d if isinstance(d, int) or d.value is None
                else onnx_ir.SymbolicDim(symbol.sub(lambda m: names[m.group(1)], d.value))
                for d in value.shape.dims]
        value.shape = onnx_ir.Shape(dims)


def _onnx_input_shape(program: Any) -> tuple[int | str, ...]:
    dims = program.model.graph.inputs[0].shape.dims
    return tuple(d if isinstance(d, int) else str(d) for d in dims)


def export_onnx(model: nn.Module, path: str | Path, *,
                img_size: int | Sequence[int] | None = None, batch_size: int = 1,
                dynamic_batch: bool = True, dynamic_size: bool = False, opset: int | None = None,
                verify: bool | None = None, atol: float = ONNX_ATOL,
                external_data: bool | None = None) -> OnnxExport:
    """Write ``model``'s inference forward pass to an ONNX file and check it in onnxruntime.

    The input is named ``images`` ``(B, C, H, W)``, the output ``logits`` (``features`` for a
    model without a head, ``features_0``, ``features_1``, ... for a ``features_only`` one). The
    file is written atomically: it is staged next to ``path`` and moved into place only after
    export and verification succeeded, so a failure leaves no file behind and an existing
    ``path`` untouched.

    Args:
        model: a vitzoo model (exported in eval mode, its mode restored after).
        path: the ``.onnx`` file to write.
        img_size: the traced image size; default the model's ``img_size``.
        batch_size: the batch size of the file when ``dynamic_batch=False``.
        dynamic_batch: any batch size at run time (ONNX dimension ``batch``).
        dynamic_size: any height and width (``height``, ``width``); needs a model built with
            ``dynamic_img_size=True``.
        opset: the ONNX opset; default the exporter's (20 in PyTorch 2.13).
        verify: run the file in onnxruntime and compare it with eager PyTorch (at the traced
            shape, and at another batch size and image size when those are dynamic). ``None``
            verifies when onnxruntime is installed; ``True`` requires it.
        atol: the largest difference that passes.
        external_data: store the weights in ``<path>.data`` next to the file; ``None`` does so
            only above ONNX's 2 GB limit (ViT-H).

    Returns:
        An :class:`OnnxExport` with the path, opset, input shape and the measured difference.

    Raises:
        MissingDependencyError: onnx / onnxscript (or onnxruntime with ``verify=True``) are
            not installed; the message names the extra ``vitzoo[export]``.
        ConfigError: ``dynamic_size`` on a fixed-size model, or bad sizes.
        ImageSizeError: ``img_size`` is not accepted by the model.
        ExportError: the exporter failed.
        VerificationError: onnxruntime disagrees with PyTorch beyond ``atol``.
    """
    _require("onnx", "onnxscript", why="ONNX export")
    if verify:
        _require("onnxruntime", why="verifying an ONNX export")
    if "dynamo" not in inspect.signature(torch.onnx.export).parameters:
        raise ExportError(f"ONNX export uses the torch.export-based exporter of PyTorch >= 2.5; "
                          f"this is PyTorch {torch.__version__}")
    cfg = _vit_config(model)
    target = Path(path)
    dims = _dynamic_dims(cfg, dynamic_batch=dynamic_batch, dynamic_size=dynamic_size)
    x = _trace_input(model, img_size, batch_size, dynamic_batch)
    program = _onnx_program(model, x, dims, opset=opset)
    _name_dims(program)
    check = _has_onnxruntime() if verify is None else verify
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{target.name}.", dir=target.parent) as staging:
        staged = Path(staging) / target.name
        program.save(staged, external_data=external_data)
        inputs = _check_shapes(x, model, dims) if check else []
        worst = _check_staged(staged, target, model, inputs, atol) if check else None
        _move_into_place(Path(staging), target)
    return OnnxExport(path=target, opset=program.model.opset_imports[""],
                      input_shape=_onnx_input_shape(program), max_abs_diff=worst,
                      checked_shapes=[tuple(t.shape) for t in inputs])


def _onnx_program(model: nn.Module, x: torch.Tensor, dims: dict[int, Any], *,
                  opset: int | None) -> Any:
    with _eval_mode(model), torch.no_grad():
        # the model's own input checks (ImageSizeError) before tracing, and its outputs' names
        names = _output_names(model, len(_outputs(model(x))))
        try:
            with _quiet_exporter():
                return torch.onnx.export(model, (x,), None, dynamo=True,
                                         dynamic_shapes=(dims,) if dims else None,
                                         input_names=["images"], output_names=names,
                                         opset_version=opset, verbose=False)
        except Exception as err:  # the exporter's errors have no common base class
            raise ExportError(f"torch.onnx.export could not export {_name(model)}: "
                              f"{_first_line(err)}") from err


def _output_names(model: nn.Module, count: int) -> list[str]:
    """``logits``; ``features`` without a head; ``features_0`` ... for a features_only model."""
    if count > 1:
        return [f"features_{i}" for i in range(count)]
    return ["logits" if getattr(model, "num_classes", 0) else "features"]


def _name(model: nn.Module) -> str:
    architecture = (getattr(model, "pretrained_cfg", None) or {}).get("architecture")
    return str(architecture or type(model).__name__)


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return (text.splitlines()[0] if text else type(err).__name__)[:500]
