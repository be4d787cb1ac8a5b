"""Time and peak memory of converting a ViT-B/16-sized Google .npz to vitzoo safetensors,
against the time to read and write the same bytes.

    python benchmarks/bench_convert.py [--arch vit_base_patch16_224] [--verify] [--rounds 3]

Writes a published-layout .npz of random float32 arrays with the architecture's exact shapes,
then, in fresh child processes, interleaved, ``--rounds`` times each: converts it (Linux: the
child's peak RSS, VmHWM, is reset after the imports, so the peak is the conversion's own), and
copies the file's bytes to a new file in 16 MiB pieces with an fsync, as the conversion's
atomic write does (the baseline: reading and writing the same bytes). Prints the medians, their
ratio, and the conversion's peak resident memory above the process after imports as a
multiple of the checkpoint size.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import vitzoo
from vitzoo.benchmark.peers import ModelSpec
from vitzoo.benchmark.processes import write_random_npz

CHILD = r"""
import json, os, sys, time
import vitzoo

def status(field):
    for line in open("/proc/self/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1])  # KiB

with open("/proc/self/clear_refs", "w") as f:  # reset the peak (VmHWM) to the current RSS
    f.write("5")
before = status("VmRSS")
start = time.perf_counter()
if sys.argv[3] == "copy":  # the baseline: the same bytes read and written, fsync'd
    with open(sys.argv[1], "rb") as src, open(sys.argv[2], "wb") as dst:
        while chunk := src.read(16 << 20):
            dst.write(chunk)
        dst.flush()
        os.fsync(dst.fileno())
else:
    vitzoo.convert_checkpoint(sys.argv[1], sys.argv[2], verify=sys.argv[3] == "1")
took = time.perf_counter() - start
print(json.dumps({"seconds": took, "rss_before_kib": before, "rss_peak_kib": status("VmHWM")}))
"""


def _child(src: Path, dst: Path, mode: str) -> dict[str, float]:
    result = subprocess.run([sys.executable, "-c", CHILD, str(src), str(dst), mode],
                            capture_output=True, text=True, check=True)
    dst.unlink()
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--arch", default="vit_base_patch16_224")
    parser.add_argument("--verify", action="store_true")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    mode = "1" if args.verify else "0"
    runs: dict[str, list[dict[str, float]]] = {mode: [], "copy": []}
    with tempfile.TemporaryDirectory() as tmp:
        src, dst = Path(tmp) / "model.npz", Path(tmp) / "model.safetensors"
        nbytes = write_random_npz(ModelSpec(args.arch), src)
        file_size = src.stat().st_size
        vitzoo.convert_checkpoint(src, dst)  # the output's size, and a warm page cache
        out_size = dst.stat().st_size
        dst.unlink()
        for _ in range(args.rounds):
            for key in runs:
                runs[key].append(_child(src, dst, key))
    convert = statistics.median(r["seconds"] for r in runs[mode])
    copy = statistics.median(r["seconds"] for r in runs["copy"])
    extra = statistics.median((r["rss_peak_kib"] - r["rss_before_kib"]) * 1024
                              for r in runs[mode])
    print(f"{args.arch}: {nbytes / 2**20:.0f} MiB of float32 arrays ({file_size / 2**20:.0f} "
          f"MiB .npz) -> {out_size / 2**20:.0f} MiB safetensors"
          f"{' with --verify' if args.verify else ''}; median of {args.rounds} fresh processes")
    print(f"  conversion      {convert:.2f} s")
    print(f"  read + write    {copy:.2f} s (the same bytes copied, fsync'd)")
    print(f"  ratio           {convert / copy:.2f}x the time to read and write the bytes")
    print(f"  peak memory     {extra / 2**20:.0f} MiB above the process after imports "
          f"= {extra / file_size:.2f}x the file")


if __name__ == "__main__":
    main()
