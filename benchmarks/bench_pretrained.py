"""Time and peak memory to a ready ViT-L/16 from a local safetensors file, each way in a fresh
process: vitzoo's ``create_model(name, checkpoint_path=f)``, ``create_model(pretrained=True)``
from the cache, ``load_model(f)``, and timm's ``create_model(name, pretrained=True,
pretrained_cfg_overlay=dict(file=f))`` (when ``--timm-python`` names a Python with timm).

    python benchmarks/bench_pretrained.py [--arch vit_large_patch16_224] [--rounds 3]
        [--timm-python /tmp/vz-peer/bin/python] [--checkpoint-path]

The weights are random tensors with the real shapes, written where vitzoo finds cached
weights (VITZOO_WEIGHTS_DIR, offline); every way reads the same file. The rounds are
interleaved; the medians are compared. Peak memory is the child's VmHWM (Linux) above its
size after the imports (reset there), as a multiple of the weights' bytes. ``--checkpoint-path``
measures only the ``checkpoint_path`` way (and timm's).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
from safetensors.torch import save_file

import vitzoo
from vitzoo.io import vitzoo_metadata
from vitzoo.pretrained import get_entry

CHILD = r"""
import json, sys, time
t0 = time.perf_counter()
import torch
name, mode, path = sys.argv[1], sys.argv[2], sys.argv[3]
if mode == "timm":
    import timm
else:
    import vitzoo

def status(field):
    for line in open("/proc/self/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1])  # KiB

with open("/proc/self/clear_refs", "w") as f:  # reset the peak (VmHWM) to the current RSS
    f.write("5")
before = status("VmRSS")
t1 = time.perf_counter()
arch = name.split(".")[0]
if mode == "pretrained":
    model = vitzoo.create_model(name, pretrained=True)
elif mode == "checkpoint_path":
    model = vitzoo.create_model(arch, checkpoint_path=path).eval()
elif mode == "load_model":
    model = vitzoo.load_model(path)
else:
    model = timm.create_model(arch, pretrained=True,
                              pretrained_cfg_overlay=dict(file=path)).eval()
t2 = time.perf_counter()
peak = status("VmHWM")
with torch.inference_mode():
    model(torch.randn(1, 3, 224, 224))
t3 = time.perf_counter()
print(json.dumps({"import": t1 - t0, "ready": t2 - t1, "first_forward": t3 - t1,
                  "rss_before_kib": before, "rss_peak_kib": peak}))
"""

LABELS = {"checkpoint_path": "vitzoo create_model(checkpoint_path=f)",
          "pretrained": "vitzoo create_model(pretrained=True)",
          "load_model": "vitzoo load_model(f)",
          "timm": "timm create_model(pretrained=True, overlay file=f)"}


def _write_weights(arch: str, tmp: str) -> tuple[str, Path]:
    """Random weights of ``arch``'s default tag, as a self-describing vitzoo file where the
    cache finds them (so ``load_model`` reads it too; timm ignores the metadata)."""
    entry = get_entry(arch, None)
    target = Path(tmp) / entry.name / "model.safetensors"
    target.parent.mkdir(parents=True)
    with torch.device("meta"):
        model = vitzoo.create_model(arch, num_classes=entry.num_classes)
    state = {k: torch.randn(v.shape) * 0.02 for k, v in model.state_dict().items()}
    save_file(state, str(target), metadata=vitzoo_metadata(model.cfg))
    return entry.name, target


def _run(python: str, name: str, mode: str, target: Path, env: dict[str, str]
         ) -> dict[str, float]:
    out = subprocess.run([python, "-c", CHILD, name, mode, str(target)], env=env,
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--arch", default="vit_large_patch16_224")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--timm-python", default=None,
                        help="a Python interpreter that imports timm (the peer environment)")
    parser.add_argument("--checkpoint-path", action="store_true",
                        help="only create_model(checkpoint_path=f), and timm's way")
    args = parser.parse_args()
    modes = ["checkpoint_path"] if args.checkpoint_path else ["checkpoint_path", "pretrained",
                                                               "load_model"]
    if args.timm_python:
        modes.append("timm")
    with tempfile.TemporaryDirectory() as tmp:
        name, target = _write_weights(args.arch, tmp)
        env = dict(os.environ, VITZOO_WEIGHTS_DIR=tmp, HF_HUB_OFFLINE="1", VITZOO_OFFLINE="1")
        runs: dict[str, list[dict[str, float]]] = {mode: [] for mode in modes}
        for _ in range(args.rounds):
            for mode in modes:
                python = args.timm_python if mode == "timm" else sys.executable
                runs[mode].append(_run(python, name, mode, target, env))
        size = target.stat().st_size
    print(f"{name}: {size / 2**20:.0f} MiB file, median of {args.rounds} fresh processes each, "
          f"interleaved, {torch.get_num_threads()} threads")
    ready = {m: statistics.median(r["ready"] for r in runs[m]) for m in modes}
    for mode in modes:
        peak = statistics.median((r["rss_peak_kib"] - r["rss_before_kib"]) * 1024
                                 for r in runs[mode])
        forward = statistics.median(r["first_forward"] for r in runs[mode])
        versus = f", {ready[mode] / ready['timm']:.2f}x timm's time" if "timm" in ready else ""
        print(f"  {LABELS[mode]:52s} ready {ready[mode]:6.2f} s{versus}; + first forward "
              f"{forward:6.2f} s; peak memory {peak / size:.2f}x the weights")


if __name__ == "__main__":
    main()
