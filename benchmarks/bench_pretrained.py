"""Time to a ready ViT-L/16 from a cached file: create_model(pretrained=True) against building
the model (random initialisation) and then loading the same file with load_state_dict.

    python benchmarks/bench_pretrained.py [--arch vit_large_patch16_224] [--rounds 3]

The weights are random tensors with the real shapes, placed where vitzoo finds cached weights
(VITZOO_WEIGHTS_DIR); both ways read the same file, each in a fresh process, interleaved, and
the medians are compared.
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
from vitzoo.pretrained import get_entry

CHILD = r"""
import json, sys, time
t0 = time.perf_counter()
import torch, vitzoo
from safetensors.torch import load_file
t1 = time.perf_counter()
name, mode, path = sys.argv[1], sys.argv[2], sys.argv[3]
if mode == "pretrained":
    model = vitzoo.create_model(name, pretrained=True)
else:
    arch = name.split(".")[0]
    model = vitzoo.create_model(arch)
    model.load_state_dict(load_file(path))
    model.eval()
t2 = time.perf_counter()
with torch.inference_mode():
    model(torch.randn(1, 3, 224, 224))
t3 = time.perf_counter()
print(json.dumps({"import": t1 - t0, "ready": t2 - t1, "first_forward": t3 - t1}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--arch", default="vit_large_patch16_224")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    entry = get_entry(args.arch, None)
    with tempfile.TemporaryDirectory() as tmp:
        target = Path(tmp) / entry.name / "model.safetensors"
        target.parent.mkdir(parents=True)
        with torch.device("meta"):
            shapes = {k: v.shape for k, v in
                      vitzoo.create_model(args.arch, num_classes=entry.num_classes)
                      .state_dict().items()}
        save_file({k: torch.randn(s) * 0.02 for k, s in shapes.items()}, str(target))
        env = dict(os.environ, VITZOO_WEIGHTS_DIR=tmp, HF_HUB_OFFLINE="1", VITZOO_OFFLINE="1")
        runs: dict[str, list[dict[str, float]]] = {"pretrained": [], "build": []}
        for _ in range(args.rounds):
            for mode in runs:
                out = subprocess.run([sys.executable, "-c", CHILD, entry.name, mode,
                                      str(target)], env=env, capture_output=True, text=True,
                                     check=True)
                runs[mode].append(json.loads(out.stdout.strip().splitlines()[-1]))
        size = target.stat().st_size
    print(f"{entry.name}: {size / 2**20:.0f} MiB file, median of {args.rounds} fresh processes, "
          f"{torch.get_num_threads()} threads")
    for key, label in (("ready", "model ready"), ("first_forward", "ready + first forward")):
        fast = statistics.median(r[key] for r in runs["pretrained"])
        slow = statistics.median(r[key] for r in runs["build"])
        print(f"  {label}: create_model(pretrained=True) {fast:6.2f} s, create_model() + "
              f"load_state_dict {slow:6.2f} s, ratio {fast / slow:.2f} "
              f"({slow / fast:.1f}x faster)")


if __name__ == "__main__":
    main()
