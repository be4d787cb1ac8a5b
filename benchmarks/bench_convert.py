"""Time and peak memory of converting a ViT-B/16-sized Google .npz to vitzoo safetensors.

    python benchmarks/bench_convert.py [--arch vit_base_patch16_224] [--verify]

Writes a published-layout .npz of random float32 arrays with the architecture's exact shapes,
then converts it in a fresh child process (Linux: its peak RSS, VmHWM, is reset after the
imports, so the peak is the conversion's own) and prints
the wall time, the peak resident memory above the process's size after imports, and that peak
as a multiple of the checkpoint size. ``vitzoo benchmark --suites convert`` measures the same
against a read-and-write-the-bytes baseline.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from vitzoo.benchmark.peers import ModelSpec
from vitzoo.benchmark.processes import write_random_npz

CHILD = r"""
import json, sys, time
import vitzoo

def status(field):
    for line in open("/proc/self/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1])  # KiB

with open("/proc/self/clear_refs", "w") as f:  # reset the peak (VmHWM) to the current RSS
    f.write("5")
before = status("VmRSS")
start = time.perf_counter()
vitzoo.convert_checkpoint(sys.argv[1], sys.argv[2], verify=sys.argv[3] == "1")
took = time.perf_counter() - start
print(json.dumps({"seconds": took, "rss_before_kib": before, "rss_peak_kib": status("VmHWM")}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--arch", default="vit_base_patch16_224")
    parser.add_argument("--verify", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        src, dst = Path(tmp) / "model.npz", Path(tmp) / "model.safetensors"
        nbytes = write_random_npz(ModelSpec(args.arch), src)
        result = subprocess.run([sys.executable, "-c", CHILD, str(src), str(dst),
                                 "1" if args.verify else "0"],
                                capture_output=True, text=True, check=True)
        stats = json.loads(result.stdout.strip().splitlines()[-1])
        out_size = dst.stat().st_size
    extra = (stats["rss_peak_kib"] - stats["rss_before_kib"]) * 1024
    print(f"{args.arch}: {nbytes / 2**20:.0f} MiB of float32 arrays -> "
          f"{out_size / 2**20:.0f} MiB safetensors{' with --verify' if args.verify else ''}")
    print(f"  time            {stats['seconds']:.2f} s")
    print(f"  peak memory     {extra / 2**20:.0f} MiB above the process after imports "
          f"= {extra / nbytes:.2f}x the checkpoint")


if __name__ == "__main__":
    main()
