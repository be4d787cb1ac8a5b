"""A pytest plugin that runs timm's own ``tests/test_models.py`` against vitzoo's models.

Load it with ``-p vitzoo_timm_plugin`` (this folder on ``PYTHONPATH``) and pass timm's test
file as the only test path; ``benchmarks/timm_suite.py`` does both and compares the two runs.
Before the test file is imported, the names it takes from timm are pointed at vitzoo's public
API (``--timm-target=vitzoo``, the default), or left as timm's (``--timm-target=timm``, the
baseline). Either way ``list_models`` / ``list_pretrained`` answer only for the chosen
architectures (``--timm-archs``), and the file's tests that concern other models are
deselected, so both runs see the same architectures.

The redirection is thin on purpose: what vitzoo lacks is a vitzoo gap, not something to patch
here. Where a missing vitzoo function would stop the whole file from being collected
(``list_models`` without timm's keywords, ``get_pretrained_cfg_value``), the plugin answers
with a stand-in and records the gap in the report (``api_gaps``); the acceptance test fails
on any gap.

Consumers of model attributes that the file takes from timm (``timm.models.FeatureInfo``,
``group_parameters``, ``timm.layers.get_channel_dim``, torchvision's FX feature extractor)
stay timm's: they check that vitzoo's ``feature_info`` / ``group_matcher()`` work with timm.
"""

from __future__ import annotations

import inspect
import json
import time
from pathlib import Path
from typing import Any

import pytest

DEFAULT_ARCHS = (
    "vit_tiny_patch16_224",  # plain ViT
    "vit_base_patch32_224",  # plain ViT, B/32
    "vit_small_patch16_384",  # a 384 model
    "deit_tiny_distilled_patch16_224",  # DeiT with the distillation token
    "vit_tiny_r_s16_p8_224",  # R+ViT hybrid (ResNet stem without stages)
    "vit_small_r26_s32_224",  # R26+ViT hybrid
)

# the tests that download pretrained weights (the test machines are offline)
NETWORK_TESTS = ("test_model_inference", "test_model_load_pretrained",
                 "test_model_features_pretrained")

# tests with no CI marker in timm ("slow, excluded from CI for now"): minutes per model
SLOW_TESTS = ("test_prune_intermediate_layers_contract",)

# markers of timm's pyproject.toml, registered here so that no ini file is needed
TIMM_MARKERS = ("base", "forward", "backward", "cfg", "cfg_nonstd", "torchscript", "features",
                "fxforward", "fxbackward")


class _State:
    target = "vitzoo"
    archs: tuple[str, ...] = DEFAULT_ARCHS
    report: Path | None = None
    gaps: dict[str, str] = {}
    list_calls: list[dict[str, Any]] = []
    results: dict[str, dict[str, Any]] = {}
    started = 0.0


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("vitzoo-timm")
    group.addoption("--timm-target", choices=("vitzoo", "timm"), default="vitzoo",
                    help="whose models timm's tests run on (default vitzoo)")
    group.addoption("--timm-archs", default=",".join(DEFAULT_ARCHS),
                    help="comma-separated architecture names the tests are restricted to")
    group.addoption("--timm-report", default=None, help="write the per-test results as JSON")
    group.addoption("--timm-network", action="store_true",
                    help="also run the tests that download pretrained weights")
    group.addoption("--timm-slow", action="store_true",
                    help="also run " + ", ".join(SLOW_TESTS) + " (timm's CI leaves it out)")


def _arch(name: str) -> str:
    return name.split(".", 1)[0]


def _chosen(names: list[str]) -> list[str]:
    return [n for n in names if _arch(n) in _State.archs]


def _call_repr(args: tuple, kwargs: dict) -> str:
    parts = [repr(a) for a in args] + [f"{k}={v!r}" for k, v in kwargs.items()]
    return ", ".join(parts)


def _is_signature_error(err: TypeError) -> bool:
    text = str(err)
    return "unexpected keyword argument" in text or "positional argument" in text


def _unsupported(fn, kwargs: dict) -> list[str]:
    params = inspect.signature(fn).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return sorted(kwargs)
    return sorted(k for k in kwargs if k not in params)


def _gap(name: str, text: str) -> None:
    _State.gaps.setdefault(name, text)


def _lister(timm_fn, vitzoo_fn, label: str):
    """``list_models`` / ``list_pretrained`` restricted to the chosen architectures."""
    def listed(*args: Any, **kwargs: Any) -> list[str]:
        expected = _chosen(list(timm_fn(*args, **kwargs)))
        if vitzoo_fn is None:
            return expected
        try:
            found = _chosen(list(vitzoo_fn(*args, **kwargs)))
        except TypeError as err:
            if not _is_signature_error(err):
                raise
            for key in _unsupported(vitzoo_fn, kwargs) or [str(err)]:
                _gap(f"{label}({key}=)", f"vitzoo.{label} takes no {key!r}; the harness "
                     "listed timm's names that vitzoo.is_model accepts instead")
            import vitzoo
            found = [n for n in expected if vitzoo.is_model(n)]
        call = {"call": f"{label}({_call_repr(args, kwargs)})", "timm": expected,
                "vitzoo": found}
        if call not in _State.list_calls:
            _State.list_calls.append(call)
        return found
    return listed


def _vitzoo_cfg_value():
    """``get_pretrained_cfg_value`` from vitzoo, or a recorded gap and a stand-in."""
    import torch

    import vitzoo
    if hasattr(vitzoo, "get_pretrained_cfg_value"):
        return vitzoo.get_pretrained_cfg_value

    def value(model_name: str, cfg_key: str) -> Any:
        _gap("get_pretrained_cfg_value",
             "vitzoo has no get_pretrained_cfg_value(model_name, cfg_key); the harness read "
             "the pretrained_cfg of create_model(name) built on the meta device instead")
        with torch.device("meta"):
            cfg = vitzoo.create_model(model_name).pretrained_cfg
        return cfg.get(cfg_key)
    return value


def _redirect_to_vitzoo() -> None:
    import timm
    import timm.data
    import timm.models

    import vitzoo

    redirects: dict[str, Any] = {
        "create_model": vitzoo.create_model,
        "is_model": vitzoo.is_model,
        "list_models": _lister(timm.list_models, vitzoo.list_models, "list_models"),
        "list_pretrained": _lister(timm.list_pretrained, vitzoo.list_pretrained,
                                   "list_pretrained"),
        "get_pretrained_cfg_value": _vitzoo_cfg_value(),
    }
    # vitzoo's models script without a switch; timm's set_scriptable only flips timm's layers
    if hasattr(vitzoo, "set_scriptable"):
        redirects["set_scriptable"] = vitzoo.set_scriptable
    for name, fn in redirects.items():
        setattr(timm, name, fn)
        if hasattr(timm.models, name):
            setattr(timm.models, name, fn)
    # FX leaf modules / autowrapped functions are timm's own classes: vitzoo's models must
    # trace with vitzoo's lists (none, unless vitzoo exports them)
    for name in ("get_notrace_modules", "get_notrace_functions"):
        setattr(timm.models, name, getattr(vitzoo, name, lambda: []))
    timm.data.resolve_data_config = vitzoo.resolve_data_config
    timm.data.create_transform = vitzoo.create_transform


def _restrict_timm() -> None:
    import timm
    import timm.models
    for name in ("list_models", "list_pretrained"):
        fn = _lister(getattr(timm, name), None, name)
        setattr(timm, name, fn)
        setattr(timm.models, name, fn)


def pytest_configure(config: pytest.Config) -> None:
    for marker in TIMM_MARKERS:
        config.addinivalue_line("markers", f"{marker}: timm test_models.py marker")
    if not config.pluginmanager.hasplugin("timeout"):
        config.addinivalue_line("markers", "timeout(seconds): needs pytest-timeout to apply")
    _State.target = config.getoption("--timm-target")
    _State.archs = tuple(a.strip() for a in config.getoption("--timm-archs").split(",")
                         if a.strip())
    report = config.getoption("--timm-report")
    _State.report = Path(report) if report else None
    _State.started = time.perf_counter()
    if _State.target == "vitzoo":
        _redirect_to_vitzoo()
    else:
        _restrict_timm()


def _model_param(item: pytest.Item) -> Any:
    callspec = getattr(item, "callspec", None)
    return None if callspec is None else callspec.params.get("model_name", None)


def _function(item: pytest.Item) -> str:
    return getattr(item, "originalname", item.name)


def _concerns_chosen(item: pytest.Item) -> bool:
    """A test of a chosen architecture: by its model_name parameter, else by its source."""
    name = _model_param(item)
    if isinstance(name, str):
        return _arch(name) in _State.archs
    callspec = getattr(item, "callspec", None)
    if callspec is not None and "model_name" in callspec.params:
        return False  # an empty parameter set
    try:
        source = inspect.getsource(item.function)
    except (OSError, TypeError, AttributeError):
        return False
    return any(f"'{a}'" in source or f'"{a}"' in source for a in _State.archs)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    slow = config.getoption("--timm-slow")
    keep, drop = [], []
    for item in items:
        wanted = _concerns_chosen(item) and (slow or _function(item) not in SLOW_TESTS)
        (keep if wanted else drop).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep
    if not config.getoption("--timm-network"):
        skip = pytest.mark.skip(reason="downloads pretrained weights (run with --timm-network)")
        for item in items:
            if _function(item) in NETWORK_TESTS:
                item.add_marker(skip)


def _test_file_line(excinfo: pytest.ExceptionInfo, item: pytest.Item) -> tuple[int, str]:
    """The last traceback line inside the test file: (line number, source text)."""
    path = Path(str(item.path))
    line, text = 0, ""
    for entry in excinfo.traceback:
        if Path(str(entry.path)) == path:
            line = entry.lineno + 1
            try:
                text = str(entry.statement).strip().splitlines()[0]
            except (IndexError, Exception):
                text = ""
    return line, text


def _innermost(excinfo: pytest.ExceptionInfo) -> str:
    entry = excinfo.traceback[-1]
    return f"{Path(str(entry.path)).name}:{entry.lineno + 1}"


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    report = yield
    record = _State.results.setdefault(item.nodeid, {
        "nodeid": item.nodeid, "test": item.name, "function": _function(item),
        "model_name": _model_param(item) if isinstance(_model_param(item), str) else None,
        "outcome": "passed", "duration": 0.0, "error": None})
    record["duration"] += report.duration
    if report.skipped and record["outcome"] == "passed":
        record["outcome"] = "skipped"
        longrepr = report.longrepr
        record["error"] = {"message": longrepr[2] if isinstance(longrepr, tuple) else
                           str(longrepr)}
    elif report.failed and record["outcome"] != "failed":
        record["outcome"] = "failed" if report.when == "call" else f"error ({report.when})"
        excinfo = call.excinfo
        if excinfo is not None:
            line, text = _test_file_line(excinfo, item)
            message = str(excinfo.value).strip().splitlines()
            record["error"] = {
                "type": excinfo.type.__name__,
                "message": message[0] if message else "",
                "test_line": line, "test_source": text,
                "raised_at": _innermost(excinfo),
            }
    return report


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if _State.report is None:
        return
    import timm
    import torch
    data = {
        "target": _State.target, "archs": list(_State.archs),
        "timm_version": timm.__version__, "torch_version": torch.__version__,
        "test_file": str(session.config.args[0]) if session.config.args else None,
        "seconds": round(time.perf_counter() - _State.started, 1),
        "exitstatus": int(exitstatus),
        "api_gaps": _State.gaps,
        "list_calls": [c for c in _State.list_calls if c["timm"] != c["vitzoo"]],
        "results": sorted(_State.results.values(), key=lambda r: r["nodeid"]),
    }
    _State.report.parent.mkdir(parents=True, exist_ok=True)
    _State.report.write_text(json.dumps(data, indent=1, default=str))


__all__ = ["DEFAULT_ARCHS", "NETWORK_TESTS", "SLOW_TESTS"]
