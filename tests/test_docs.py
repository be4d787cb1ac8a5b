"""The documentation cannot rot: the generated pages match the code, every code block marked
``<!-- runnable -->`` runs (offline, in a scratch directory), every example script runs on a
tiny model, and the site builds with ``mkdocs build --strict``."""

from __future__ import annotations

import contextlib
import importlib.util
import io
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
MARK = "<!-- runnable -->"
# a python block, or a text block of ``$ vitzoo ...`` lines each followed by its exact output
BLOCK = re.compile(r"^<!-- runnable -->\n```(python|text)\n(.*?)\n```", re.S | re.M)


def _docs_pages():
    spec = importlib.util.spec_from_file_location("docs_pages", ROOT / "tools" / "docs_pages.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def runnable_blocks() -> list[tuple[str, int, str, str]]:
    """(page, block number, kind, code) of every block marked runnable, in page order."""
    found = []
    for page in sorted(DOCS.glob("*.md")):
        text = page.read_text()
        blocks = BLOCK.findall(text)
        marks = len(re.findall(rf"^{re.escape(MARK)}$", text, re.M))  # a mark on its own line
        assert len(blocks) == marks, f"{page.name}: a {MARK} mark not before ```python/text"
        found += [(page.name, i, kind, code) for i, (kind, code) in enumerate(blocks, 1)]
    return found


BLOCKS = runnable_blocks()


def test_the_site_has_runnable_blocks_on_the_pages_users_start_from():
    pages = {page for page, _, _, _ in BLOCKS}
    assert {"index.md", "faq.md", "api.md", "backbone.md", "cli.md"} <= pages, pages


def _run_session(page: str, number: int, text: str, capsys) -> None:
    """Each ``$ vitzoo ARGS`` line runs through the CLI; what it prints must be the lines that
    follow it, exactly."""
    from vitzoo.cli import main

    sessions = re.split(r"^\$ ", text, flags=re.M)
    assert sessions[0] == "" and len(sessions) > 1, f"{page} block {number}: no $ command"
    for session in sessions[1:]:
        command, _, expected = session.partition("\n")
        argv = shlex.split(command)
        assert argv[0] == "vitzoo", f"{page} block {number}: {command}"
        capsys.readouterr()
        assert main(argv[1:]) == 0, command
        printed = capsys.readouterr().out.rstrip("\n")
        assert printed == expected.rstrip("\n"), f"{page}: `{command}` printed\n{printed}"


@pytest.mark.parametrize("page, number, kind, code", BLOCKS,
                         ids=[f"{page}-{number}" for page, number, _, _ in BLOCKS])
def test_runnable_block(page, number, kind, code, tmp_path, monkeypatch, capsys,
                        clean_registry):
    """Each block runs on its own, in a scratch directory, offline, with the registry restored
    afterwards; a ``print(...)  # text`` line must print exactly ``text``."""
    monkeypatch.chdir(tmp_path)
    if kind == "text":
        _run_session(page, number, code, capsys)
        return
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
