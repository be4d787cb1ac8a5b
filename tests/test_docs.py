"""The documentation cannot rot: the generated pages match the code, every code block marked
``<!-- runnable -->`` runs (offline, in a scratch directory), every example script runs on a
tiny model, and the site builds with ``mkdocs build --strict``."""

from __future__ import annotations

import contextlib
import importlib.util
import io
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
MARK = "<!-- runnable -->"
BLOCK = re.compile(r"^<!-- runnable -->\n```python\n(.*?)\n```", re.S | re.M)


def _docs_pages():
    spec = importlib.util.spec_from_file_location("docs_pages", ROOT / "tools" / "docs_pages.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def runnable_blocks() -> list[tuple[str, int, str]]:
    """(page, block number, code) of every block marked runnable, in page order."""
    found = []
    for page in sorted(DOCS.glob("*.md")):
        text = page.read_text()
        blocks = BLOCK.findall(text)
        marks = len(re.findall(rf"^{re.escape(MARK)}$", text, re.M))  # a mark on its own line
        assert len(blocks) == marks, f"{page.name}: a {MARK} mark not before ```python"
        found += [(page.name, i, code) for i, code in enumerate(blocks, 1)]
    return found


BLOCKS = runnable_blocks()


def test_the_site_has_runnable_blocks_on_the_pages_users_start_from():
    pages = {page for page, _, _ in BLOCKS}
    assert {"index.md", "faq.md", "api.md", "backbone.md"} <= pages, pages


@pytest.mark.parametrize("page, number, code", BLOCKS,
                         ids=[f"{page}-{number}" for page, number, _ in BLOCKS])
def test_runnable_block(page, number, code, tmp_path, monkeypatch, clean_registry):
    """Each block runs on its own, in a scratch directory, offline, with the registry restored
    afterwards; a ``print(...)  # text`` line must print exactly ``text``."""
    monkeypatch.chdir(tmp_path)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, f"{page} block {number}", "exec"), {"__name__": "__doc_block__"})
    expected = [line.split("#", 1)[1].strip() for line in code.splitlines()
                if line.lstrip().startswith("print(") and "#" in line]
    printed = out.getvalue().splitlines()
    if expected:
        assert printed == expected, f"{page} block {number}: printed {printed}, says {expected}"


def test_generated_pages_match_the_code():
    assert _docs_pages().main(["--check"]) == 0, "run python tools/docs_pages.py"


@pytest.mark.skipif(shutil.which("mkdocs") is None and importlib.util.find_spec("mkdocs") is None,
                    reason='needs pip install "vitzoo[docs]"')
def test_the_site_builds_strictly(tmp_path):
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    result = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-q",
                             "-d", str(tmp_path / "site")], cwd=ROOT, env=env,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    nav = (ROOT / "mkdocs.yml").read_text()
    for page in ("index.md", "zoo.md", "checkpoints.md", "backbone.md", "finetune.md",
                 "performance.md", "cli-reference.md", "reference.md", "faq.md"):
        assert page in nav and (tmp_path / "site" / page.removesuffix(".md")).is_dir() or (
            page == "index.md" and (tmp_path / "site" / "index.html").is_file()), page
    api = (tmp_path / "site" / "reference" / "index.html").read_text()
    assert "checkpoint_path" in api and "ZeroHeadWarning" in api  # docstrings rendered
