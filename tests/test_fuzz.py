"""The fuzz suite in CI: thousands of hostile and malformed inputs, each ending in a result or a
clear vitzoo error (tests/fuzz_inputs.py says what is generated and how outcomes are judged).

It runs in a child process under ``RLIMIT_AS`` (3 GiB), so an allocation a hostile file asks for
fails there as a ``MemoryError``, which the suite counts as a failure; deleting or renaming
anything outside its sandbox is refused there and counted as an escape. ``VITZOO_FUZZ_CASES``
(default 6,000, above the 5,000 issue 12 asks for, to keep CI's run in its time budget)
raises the count for a longer local run.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("hypothesis")

HERE = Path(__file__).parent
CASES = int(os.environ.get("VITZOO_FUZZ_CASES", "6000"))


def test_every_generated_input_ends_in_a_result_or_a_clear_error(tmp_path):
    report_path = tmp_path / "fuzz.json"
    result = subprocess.run(
        [sys.executable, str(HERE / "fuzz_inputs.py"), "--cases", str(CASES),
         "--report", str(report_path)],
        capture_output=True, text=True, timeout=1200)
    assert report_path.is_file(), result.stderr[-4000:]
    report = json.loads(report_path.read_text())
    print(json.dumps({k: report[k] for k in ("cases", "seconds", "counts")}, indent=1))
    assert report["cases"] >= min(CASES, 5000)
    assert report["failures"] == {}, json.dumps(report["failures"], indent=1)[:6000]
    for surface in ("file", "dir", "config", "input", "name", "cli"):  # every surface ran
        assert sum(n for k, n in report["counts"].items() if k.startswith(surface + ":")) > 100


def test_the_harness_catches_what_it_must():
    """The classification itself: a raw exception from deep inside is a failure, a vitzoo error
    is a refusal, a hang is caught by the timer."""
    sys.path.insert(0, str(HERE))
    import fuzz_inputs
    import vitzoo

    assert fuzz_inputs.classify(None, "file") == "ok"
    assert fuzz_inputs.classify(vitzoo.CheckpointError("bad file"), "file") == "refused"
    assert fuzz_inputs.classify(KeyError("cls_token"), "file") == "failed"
    try:
        vitzoo.ViTConfig(depth=-1)
    except vitzoo.ConfigError as err:
        assert fuzz_inputs.classify(err, "config") == "refused"
    try:
        {}["x"]
    except KeyError as err:
        assert fuzz_inputs.classify(err, "input") == "failed"
    assert fuzz_inputs.mutate(b"abcdef", [("cut", 3, 0)]) == b"abc"
    assert fuzz_inputs.mutate(b"\x00", [("flip", 0, 1)]) == b"\x02"
