"""timm's own model tests pass on vitzoo wherever they pass on timm (issue 10's acceptance).

Runs ``tests/test_models.py`` of the installed timm twice in child processes, through
``timm_compat/vitzoo_timm_plugin.py``: on timm itself and redirected to vitzoo, restricted to
the plugin's architectures (plain ViT, a 384 model, DeiT distilled, two hybrids). Skipped
unless timm is importable (``pip install "vitzoo[compat]"``) and ``VITZOO_TIMM_TESTS`` names
timm's test file (``python benchmarks/timm_suite.py --fetch DIR`` fetches it). timm's run is
kept in pytest's cache, keyed by the test file, timm's version and the plugin.
"""

from __future__ import annotations

import hashlib
import importlib.util
from pathlib import Path

import pytest

from timm_compat import suite

PLUGIN = Path(suite.__file__).with_name("vitzoo_timm_plugin.py")


def _test_file() -> Path:
    if importlib.util.find_spec("timm") is None:
        pytest.skip('timm is not installed (pip install "vitzoo[compat]")')
    path = suite.test_file_from_env()
    if path is None:
        pytest.skip(f"{suite.TESTS_ENV} does not name timm's tests/test_models.py "
                    "(python benchmarks/timm_suite.py --fetch DIR)")
    return path


def _baseline(request: pytest.FixtureRequest, test_file: Path, out: Path) -> dict:
    digest = hashlib.sha256(test_file.read_bytes() + PLUGIN.read_bytes()).hexdigest()[:16]
    key = f"vitzoo/timm_suite/{suite.installed_timm_version()}-{digest}"
    cache = getattr(request.config, "cache", None)
    report = cache.get(key, None) if cache is not None else None
    if report is None:
        report = suite.run_side("timm", test_file, out)
        if cache is not None:
            cache.set(key, report)
    return report


def test_every_timm_model_test_that_passes_for_timm_passes_for_vitzoo(request, tmp_path):
    test_file = _test_file()
    timm_report = _baseline(request, test_file, tmp_path)
    vitzoo_report = suite.run_side("vitzoo", test_file, tmp_path)
    assert suite.summary(timm_report).get("passed", 0) > 0, "timm passed nothing: a broken run"
    lost = suite.regressions(timm_report, vitzoo_report)
    ours = {r["test"]: r for r in vitzoo_report["results"]}
    problems = [f"{t}: {suite.describe(ours.get(t))}" for t in lost]
    problems += [f"API gap: {k}: {v}" for k, v in vitzoo_report["api_gaps"].items()]
    assert not problems, f"{len(lost)} of timm's passing tests fail on vitzoo:\n" + \
        "\n".join(problems)
