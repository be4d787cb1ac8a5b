"""Run timm's ``tests/test_models.py`` on timm and on vitzoo, and compare the two runs.

Shared by ``benchmarks/timm_suite.py`` (the command that writes the comparison table) and
``tests/test_timm_suite.py`` (the acceptance check). Each run is a child ``pytest`` process
with ``vitzoo_timm_plugin`` loaded; the plugin writes one JSON report per run.

timm's test file is never copied into vitzoo: its path comes from ``VITZOO_TIMM_TESTS`` (or
``--tests``), and :func:`fetch_test_file` takes it from the sdist of the installed timm.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
import tempfile
from collections import defaultdict
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
SRC = HERE.parent.parent / "src"
TESTS_ENV = "VITZOO_TIMM_TESTS"
MAX_MESSAGE = 200  # characters of an exception message in the table

SYMBOL = {"passed": "P", "failed": "F", "skipped": "s", None: "-"}


def installed_timm_version() -> str | None:
    try:
        from importlib.metadata import version
        return version("timm")
    except Exception:  # not installed
        return None


def test_file_from_env() -> Path | None:
    """The path in ``VITZOO_TIMM_TESTS`` when it names an existing file."""
    value = os.environ.get(TESTS_ENV)
    return Path(value) if value and Path(value).is_file() else None


def fetch_test_file(dest: Path) -> Path:
    """``tests/test_models.py`` of the installed timm, from its sdist (``pip download``)."""
    ver = installed_timm_version()
    if ver is None:
        raise RuntimeError('timm is not installed: pip install "vitzoo[compat]"')
    target = dest / f"timm-{ver}" / "test_models.py"
    if target.is_file():
        return target
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps",
                        "--no-binary", ":all:", f"timm=={ver}", "-d", tmp], check=True)
        sdist = next(Path(tmp).glob("timm-*.tar.gz"))
        with tarfile.open(sdist) as tar:
            member = tar.getmember(f"timm-{ver}/tests/test_models.py")
            data = tar.extractfile(member).read()
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(data)
    return target


def run_side(target: str, test_file: Path, out_dir: Path, *, archs: list[str] | None = None,
             slow: bool = False, network: bool = False, timeout: float = 3600) -> dict[str, Any]:
    """One child pytest run of ``test_file`` on ``target`` ("timm" or "vitzoo"); its report."""
    out_dir.mkdir(parents=True, exist_ok=True)
    ini = out_dir / "pytest.ini"  # an empty config: neither vitzoo's nor timm's ini applies
    ini.write_text("[pytest]\n")
    report = out_dir / f"{target}.json"
    report.unlink(missing_ok=True)
    cmd = [sys.executable, "-m", "pytest", str(test_file), "-c", str(ini),
           "--rootdir", str(test_file.parent), "-p", "vitzoo_timm_plugin",
           "-p", "no:cacheprovider", "-q", "-W", "ignore::DeprecationWarning",
           f"--timm-target={target}", f"--timm-report={report}"]
    if archs:
        cmd.append("--timm-archs=" + ",".join(archs))
    if network:
        cmd.append("--timm-network")
    if slow:
        cmd.append("--timm-slow")
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(HERE), str(SRC), env.get("PYTHONPATH", "")])
    if not network:
        env["HF_HUB_OFFLINE"] = "1"
        env["VITZOO_OFFLINE"] = "1"
    log = out_dir / f"{target}.log"
    with open(log, "w") as f:
        subprocess.run(cmd, env=env, stdout=f, stderr=subprocess.STDOUT, timeout=timeout,
                       check=False)
    if not report.is_file():
        tail = log.read_text()[-3000:]
        raise RuntimeError(f"the {target} run wrote no report; the end of {log}:\n{tail}")
    return json.loads(report.read_text())


def _by_nodeid(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {r["test"]: r for r in report["results"]}


def outcome_kind(record: dict[str, Any] | None) -> str | None:
    if record is None:
        return None
    outcome = record["outcome"]
    return "failed" if outcome.startswith(("failed", "error")) else outcome


def regressions(timm: dict[str, Any], vitzoo: dict[str, Any]) -> list[str]:
    """Tests that pass for timm and do not pass (or are not collected) for vitzoo."""
    ours = _by_nodeid(vitzoo)
    return [nodeid for nodeid, rec in _by_nodeid(timm).items()
            if rec["outcome"] == "passed" and outcome_kind(ours.get(nodeid)) != "passed"]


def describe(record: dict[str, Any] | None) -> str:
    """One line: the exception, its message, where in test_models.py and where it was raised."""
    if record is None:
        return "not collected for vitzoo (list_models / list_pretrained did not name it)"
    err = record.get("error") or {}
    if "type" not in err:
        return err.get("message", record["outcome"])
    message = err["message"]
    if len(message) > MAX_MESSAGE:  # its first sentence, e.g. without a list of valid names
        message = message.split(". ", 1)[0][:MAX_MESSAGE] + " ..."
    where = f"test_models.py:{err['test_line']} `{err['test_source']}`"
    return f"{err['type']}: {message} — at {where} (raised at {err['raised_at']})"


def summary(report: dict[str, Any]) -> dict[str, int]:
    counts: dict[str, int] = defaultdict(int)
    for rec in report["results"]:
        counts[outcome_kind(rec)] += 1
    return dict(counts)


def _matrix(timm: dict[str, Any], vitzoo: dict[str, Any]) -> list[str]:
    """Test function x architecture; a cell is timm's outcomes / vitzoo's (P, F, s)."""
    cells: dict[tuple[str, str], list[str]] = defaultdict(lambda: ["", ""])
    for side, report in enumerate((timm, vitzoo)):
        for rec in report["results"]:
            arch = (rec["model_name"] or "(fixed)").split(".", 1)[0]
            cells[rec["function"], arch][side] += SYMBOL[outcome_kind(rec)]
    archs = list(timm["archs"])
    if any(arch == "(fixed)" for _, arch in cells):
        archs.append("(fixed)")
    functions = sorted({f for f, _ in cells})
    lines = ["| test | " + " | ".join(f"`{a}`" for a in archs) + " |",
             "|---" * (len(archs) + 1) + "|"]
    for fn in functions:
        row = []
        for arch in archs:
            t, v = cells.get((fn, arch), ["", ""])
            row.append(f"{t or '-'} / {v or '-'}" if (t or v) else "")
        lines.append(f"| `{fn}` | " + " | ".join(row) + " |")
    return lines


def _detail(timm: dict[str, Any], vitzoo: dict[str, Any]) -> list[str]:
    theirs, ours = _by_nodeid(timm), _by_nodeid(vitzoo)
    lines = ["| test | timm | vitzoo | vitzoo's error |", "|---|---|---|---|"]
    for nodeid in sorted(set(theirs) | set(ours)):
        t, v = theirs.get(nodeid), ours.get(nodeid)
        name = nodeid
        error = describe(v) if v is None or outcome_kind(v) == "failed" else ""
        error = error.replace("|", "\\|")
        lines.append(f"| `{name}` | {outcome_kind(t) or '-'} | {outcome_kind(v) or '-'} | "
                     f"{error} |")
    return lines


def _list_difference(call: dict[str, Any]) -> str:
    only_timm = sorted(set(call["timm"]) - set(call["vitzoo"]))
    only_vitzoo = sorted(set(call["vitzoo"]) - set(call["timm"]))
    return (f"- `{call['call']}`: only timm lists {only_timm or 'nothing more'}; "
            f"only vitzoo lists {only_vitzoo or 'nothing more'}")


def render(timm: dict[str, Any], vitzoo: dict[str, Any]) -> str:
    """The comparison as Markdown: summary, matrix, API gaps, list differences, every test."""
    lost = regressions(timm, vitzoo)
    out = [f"# timm {timm['timm_version']} `test_models.py` on timm and on vitzoo", "",
           f"test file: `{timm['test_file']}`; torch {timm['torch_version']}", "",
           "| run | seconds | passed | failed | skipped |", "|---|---|---|---|---|"]
    for name, rep in (("timm", timm), ("vitzoo", vitzoo)):
        c = summary(rep)
        out.append(f"| {name} | {rep['seconds']} | {c.get('passed', 0)} | {c.get('failed', 0)} "
                   f"| {c.get('skipped', 0)} |")
    out += ["", f"**{len(lost)} of the tests that pass for timm do not pass for vitzoo.**", "",
            "## Per test function and architecture (timm / vitzoo; P passed, F failed, "
            "s skipped, one letter per parametrisation)", ""] + _matrix(timm, vitzoo)
    out += ["", "## vitzoo API gaps the harness had to stand in for", ""]
    out += [f"- `{k}`: {v}" for k, v in vitzoo["api_gaps"].items()] or ["none"]
    out += ["", "## list_models / list_pretrained calls where vitzoo's answer differs", ""]
    out += [_list_difference(c) for c in vitzoo["list_calls"]] or ["none"]
    out += ["", "## Every test", ""] + _detail(timm, vitzoo)
    return "\n".join(out) + "\n"
