"""Release quality: ``python -m build`` makes an sdist and a wheel; the wheel installs into a
fresh virtual environment next to torch 2.13.0, pulling no torchvision and no CUDA package,
and ``import vitzoo``, ``vitzoo list`` and a forward pass work there; the version has one
source; ruff is clean."""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

import vitzoo

ROOT = Path(__file__).resolve().parent.parent
TORCH = "torch==2.13.0"
FORBIDDEN = re.compile(r"^(torchvision|torchaudio|triton|nvidia-.*|cuda-.*)$")

needs_build = pytest.mark.skipif(
    importlib.util.find_spec("build") is None or importlib.util.find_spec("hatchling") is None,
    reason='needs pip install "vitzoo[dev]" (build, hatchling)')


@pytest.fixture(scope="module")
def dist(tmp_path_factory) -> Path:
    """sdist and wheel of this checkout (the wheel built from the sdist, as ``python -m build``
    does); no build isolation, so no download: hatchling comes from the dev extra."""
    out = tmp_path_factory.mktemp("dist")
    subprocess.run([sys.executable, "-m", "build", "--no-isolation", "--outdir", str(out),
                    str(ROOT)], check=True, capture_output=True, text=True, timeout=300)
    return out


@needs_build
def test_build_makes_an_sdist_and_a_wheel_with_everything_needed(dist):
    (sdist,) = dist.glob("vitzoo-*.tar.gz")
    (wheel,) = dist.glob("vitzoo-*-py3-none-any.whl")
    assert sdist.name == f"vitzoo-{vitzoo.__version__}.tar.gz"
    names = zipfile.ZipFile(wheel).namelist()
    assert "vitzoo/py.typed" in names and "vitzoo/data/resources/imagenet1k_classes.txt" in names
    assert not [n for n in names if n.startswith(("tests/", "docs/", "benchmarks/"))]
    entry_points = zipfile.ZipFile(wheel).read(
        f"vitzoo-{vitzoo.__version__}.dist-info/entry_points.txt").decode()
    assert "vitzoo = vitzoo.cli:main" in entry_points
    with tarfile.open(sdist) as archive:
        top = {Path(n).parts[1] for n in archive.getnames() if len(Path(n).parts) > 1}
    assert {"src", "tests", "docs", "examples", "tools", "README.md", "CHANGELOG.md",
            "pyproject.toml", "mkdocs.yml", "LICENSE"} <= top


@needs_build
@pytest.mark.skipif(shutil.which("uname") is None, reason="POSIX only")
def test_the_wheel_runs_in_a_fresh_virtual_environment(dist, tmp_path):
    (wheel,) = dist.glob("vitzoo-*.whl")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    install = subprocess.run(
        [str(python), "-m", "pip", "install", "--disable-pip-version-check", "--quiet",
         "--report", str(tmp_path / "report.json"), TORCH, str(wheel)],
        capture_output=True, text=True, timeout=900)
    assert install.returncode == 0, install.stdout[-3000:] + install.stderr[-3000:]
    installed = {item["metadata"]["name"].lower(): item["metadata"]["version"]
                 for item in json.loads((tmp_path / "report.json").read_text())["install"]}
    assert installed["vitzoo"] == vitzoo.__version__
    assert installed["torch"].startswith("2.13.0")
    assert not [name for name in installed if FORBIDDEN.match(name)], sorted(installed)
    script = ("import torch, vitzoo; m = vitzoo.create_model('vit_ti16', img_size=32, "
              "patch_size=8).eval(); x = torch.rand(2, 3, 32, 32)\n"
              "with torch.no_grad(): y = m(x)\n"
              "print(vitzoo.__version__, tuple(y.shape), bool(torch.isfinite(y).all()))")
    run = subprocess.run([str(python), "-c", script], capture_output=True, text=True,
                         timeout=300, cwd=tmp_path)  # not the checkout: the wheel's vitzoo
    assert run.stdout.split() == [vitzoo.__version__, "(2,", "1000)", "True"], run.stderr
    listed = subprocess.run([str(venv / "bin" / "vitzoo"), "list", "deit_tiny*"],
                            capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert listed.stdout.split() == ["deit_tiny_distilled_patch16_224", "deit_tiny_patch16_224"]
    where = subprocess.run([str(python), "-c", "import vitzoo; print(vitzoo.__file__)"],
                           capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert where.stdout.strip().startswith(str(venv))


def test_the_version_has_one_source():
    text = (ROOT / "src" / "vitzoo" / "_version.py").read_text()
    (version,) = re.findall(r'__version__ = "([^"]+)"', text)
    assert vitzoo.__version__ == version
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert 'dynamic = ["version"]' in pyproject and "\nversion =" not in pyproject
    changelog = (ROOT / "CHANGELOG.md").read_text()
    assert "## [Unreleased]" in changelog


@pytest.mark.skipif(shutil.which("ruff") is None and importlib.util.find_spec("ruff") is None,
                    reason="needs ruff (the dev extra)")
def test_ruff_is_clean():
    result = subprocess.run([sys.executable, "-m", "ruff", "check", "src", "tests", "benchmarks",
                             "tools", "examples"], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-4000:]


@pytest.mark.skipif(importlib.util.find_spec("mypy") is None, reason="needs mypy (the dev extra)")
def test_mypy_strict_is_clean(tmp_path):
    # the configuration ([tool.mypy] in pyproject.toml) is strict on src/vitzoo
    result = subprocess.run([sys.executable, "-m", "mypy", "--cache-dir", str(tmp_path / "cache")],
                            cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-4000:]
    assert "no issues found" in result.stdout
