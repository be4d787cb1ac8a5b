"""The suites measured in fresh child processes: time and peak memory to a ready model from a
local file (load), and of converting a Google ``.npz`` (convert).

Each measurement runs in a new Python process, interleaved with the other ways (one process of
each way per round), so no cache of the parent helps. On Linux the child resets its peak
resident size (``/proc/self/clear_refs``) after its imports and reads it back (``VmHWM``)
after the work, so the peak is the work's own.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..adapters import jax_npz
from ..io import save_model
from ..pretrained import get_entry
from .machine import library_version
from .peers import ModelSpec
from .report import new_row
from .timing import median

__all__ = ["LOAD_WAYS", "convert_rows", "load_rows", "write_random_npz"]

_PRELUDE = r"""
import json, os, sys, time
job = json.loads(sys.argv[1])
if job["way"] != "baseline":  # copying bytes needs neither (their RSS is not counted anyway)
    import torch
    torch.set_num_threads(job["threads"])
    import vitzoo

def status(field):
    try:
        for line in open("/proc/self/status"):
            if line.startswith(field + ":"):
                return int(line.split()[1])  # KiB
    except OSError:
        pass
    return 0

def start():
    try:
        with open("/proc/self/clear_refs", "w") as f:  # the peak (VmHWM) := the current RSS
            f.write("5")
    except OSError:
        pass
    return status("VmRSS"), time.perf_counter()

def done(before, t0):
    took = time.perf_counter() - t0
    print(json.dumps({"seconds": took, "rss_before_kib": before, "rss_peak_kib": status("VmHWM")}))
"""

_LOAD = _PRELUDE + r"""
name, arch, ov, path, way = job["name"], job["arch"], job["overrides"], job["path"], job["way"]
if job["library"] == "timm":
    import timm
    from safetensors.torch import load_file
before, t0 = start()
if way == "checkpoint_path":
    model = vitzoo.create_model(name, checkpoint_path=path, **ov)
elif way == "load_model":
    model = vitzoo.load_model(path)
elif way == "pretrained":
    model = vitzoo.create_model(name, pretrained=True, **ov)
elif way == "pretrained_cfg_overlay":
    model = timm.create_model(arch, pretrained=True, pretrained_cfg_overlay=dict(file=path),
                              **ov)
else:  # create + load_state_dict
    model = timm.create_model(arch, pretrained=False, **ov)
    model.load_state_dict(load_file(path))
model.eval()
done(before, t0)
"""

_CONVERT = _PRELUDE + r"""
import zipfile
before, t0 = start()
if job["way"] == "convert":
    vitzoo.convert_checkpoint(job["src"], job["dst"], verify=job.get("verify", False))
else:  # read every member of the .npz and write the same bytes, flushed to disk
    with zipfile.ZipFile(job["src"]) as archive, open(job["dst"], "wb") as out:
        for info in archive.infolist():
            with archive.open(info) as member:
                while chunk := member.read(1 << 24):
                    out.write(chunk)
        out.flush()
        os.fsync(out.fileno())
done(before, t0)
"""

LOAD_WAYS = (("vitzoo", "checkpoint_path"), ("vitzoo", "load_model"), ("vitzoo", "pretrained"),
             ("timm", "pretrained_cfg_overlay"), ("timm", "load_state_dict"))


def _child(script: str, job: Mapping[str, Any], env: Mapping[str, str]) -> dict[str, Any]:
    done = subprocess.run([sys.executable, "-c", script, json.dumps(job)], env=dict(env),
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return {"error": f"failed: {tail[:200]}"}
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def _measure(script: str, jobs: Mapping[tuple[str, str], Mapping[str, Any]],
             env: Mapping[str, str], repeats: int) -> dict[tuple[str, str], dict[str, Any]]:
    """Median seconds and peak of each job, one fresh process of each per round. Each starts
    after ``os.sync()``: the dirty pages of the files written before it (the test files, the
    previous child's output) are on disk, so no child pays for another's writeback."""
    results: dict[tuple[str, str], list[dict[str, Any]]] = {k: [] for k in jobs}
    sync = getattr(os, "sync", lambda: None)  # not on Windows
    for _ in range(repeats):
        for key, job in jobs.items():
            sync()
            results[key].append(_child(script, job, env))
    summary = {}
    for key, runs in results.items():
        errors = [r["error"] for r in runs if "error" in r]
        summary[key] = {"error": errors[0]} if errors else {
            "seconds": median([r["seconds"] for r in runs]),
            "peak_mib": median([(r["rss_peak_kib"] - r["rss_before_kib"]) / 1024
                                for r in runs])}
    return summary


def _rows(suite: str, spec: ModelSpec, measured: Mapping[tuple[str, str], Mapping[str, Any]],
          weights_bytes: int, threads: int, repeats: int) -> list[dict[str, Any]]:
    mib = weights_bytes / 2**20
    rows = []
    for (library, way), m in measured.items():
        common = {"suite": suite, "model": spec.label, "library": library, "variant": way,
                  "dtype": "float32", "batch": 1, "threads": threads, "repeats": repeats,
                  "weights_mib": mib}
        if "error" in m:
            rows.append(new_row(**common, status=m["error"]))
            continue
        rows.append(new_row(**common, seconds=m["seconds"], latency_ms=m["seconds"] * 1e3,
                            peak_rss_mib=m["peak_mib"], rss_per_weights=m["peak_mib"] / mib))
    return rows


def _env(threads: int, **extra: str) -> dict[str, str]:
    return dict(os.environ, HF_HUB_OFFLINE="1", VITZOO_OFFLINE="1", OMP_NUM_THREADS=str(threads),
                **extra)


def load_rows(spec: ModelSpec, *, libraries: Sequence[str], repeats: int, threads: int
              ) -> list[dict[str, Any]]:
    """Seconds and peak RSS to a ready model from a local safetensors file of random weights
    with the real shapes: vitzoo's three ways against timm's two."""
    entry = get_entry(spec.arch, None)
    if entry is None:
        return [new_row(suite="load", model=spec.label, library="vitzoo", status="skipped: "
                        "no pretrained entry to fill the cache for")]
    missing = [lib for lib in libraries if lib != "vitzoo" and library_version(lib) is None]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / entry.name / "model.safetensors"  # where VITZOO_WEIGHTS_DIR looks
        path.parent.mkdir(parents=True)
        torch.manual_seed(0)
        save_model(spec.build(num_classes=entry.num_classes), path)
        base = {"name": spec.name, "arch": spec.arch, "overrides": dict(spec.overrides),
                "path": str(path), "threads": threads}
        jobs = {(lib, way): {**base, "library": lib, "way": way} for lib, way in LOAD_WAYS
                if lib in libraries and lib not in missing}
        measured = _measure(_LOAD, jobs, _env(threads, VITZOO_WEIGHTS_DIR=tmp), repeats)
        rows = _rows("load", spec, measured, path.stat().st_size, threads, repeats)
    return rows + [new_row(suite="load", model=spec.label, library=lib, variant="-",
                           dtype="float32",
                           batch=1, threads=threads, status="not installed")
                   for lib in missing if lib == "timm"]


def write_random_npz(spec: ModelSpec, path: Path) -> int:
    """A Google ``.npz`` of random float32 arrays in the published layout with the model's
    exact shapes; returns the bytes of its arrays."""
    with torch.device("meta"):
        model = spec.build(num_classes=1000, gelu_approximate="tanh")
    rng = np.random.default_rng(0)
    state = {k: rng.standard_normal(tuple(v.shape), dtype=np.float32) * 0.02
             for k, v in model.state_dict().items()}
    arrays = jax_npz.from_vitzoo(state, num_heads=model.cfg.num_heads)
    np.savez(path, **arrays)  # type: ignore[arg-type]  # stub: **arrays may fill allow_pickle
    return sum(a.nbytes for a in arrays.values())


def convert_rows(spec: ModelSpec, *, repeats: int, threads: int, verify: bool = False
                 ) -> list[dict[str, Any]]:
    """Seconds and peak RSS of ``convert_checkpoint(.npz -> .safetensors)`` (with ``verify``:
    and its comparison with Google's forward pass, variant ``convert_verify``) against reading
    the same members and writing the same bytes."""
    variant = "convert_verify" if verify else "convert"
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "model.npz"
        nbytes = write_random_npz(spec, src)
        jobs = {("vitzoo", variant): {"way": "convert", "src": str(src), "threads": threads,
                                      "verify": verify,
                                      "dst": str(Path(tmp) / "model.safetensors")},
                ("baseline", "read_write"): {"way": "baseline", "src": str(src),
                                             "threads": threads, "dst": str(Path(tmp) / "copy")}}
        measured = _measure(_CONVERT, jobs, _env(threads), repeats)
    rows = _rows("convert", spec, measured, nbytes, threads, repeats)
    baseline = measured[("baseline", "read_write")].get("seconds")
    for row in rows:
        row["baseline_seconds"] = baseline if row["status"] == "ok" else None
    return rows
