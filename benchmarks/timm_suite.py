"""Run timm's own ``tests/test_models.py`` on timm and on vitzoo, and write the comparison.

    python benchmarks/timm_suite.py --fetch /tmp/timm-tests        # prints the file's path
    VITZOO_TIMM_TESTS=/tmp/timm-tests/timm-1.0.31/test_models.py \\
        python benchmarks/timm_suite.py [--archs a,b] [--slow] [--only vitzoo] [--out DIR]

Needs timm (``pip install "vitzoo[compat]"``, or the peer environment of docs/development.md)
in the interpreter that runs this script; vitzoo is taken from this checkout's ``src/``.
Each side is one child pytest run with ``tests/timm_compat/vitzoo_timm_plugin.py``; the
reports (JSON), logs and ``comparison.md`` go to ``--out`` (default ``runs/timm-suite``).
``--only vitzoo`` reuses the timm report already in ``--out``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "timm_compat"))

import suite  # noqa: E402  (tests/timm_compat, found through the path above)
import vitzoo_timm_plugin  # noqa: E402


def _args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tests", type=Path, default=None,
                        help=f"timm's test_models.py (default: ${suite.TESTS_ENV})")
    parser.add_argument("--fetch", type=Path, default=None, metavar="DIR",
                        help="download the installed timm's sdist, keep its test_models.py "
                             "under DIR, print its path and stop")
    parser.add_argument("--archs", default=",".join(vitzoo_timm_plugin.DEFAULT_ARCHS),
                        help="comma-separated architectures")
    parser.add_argument("--slow", action="store_true",
                        help="also run " + ", ".join(vitzoo_timm_plugin.SLOW_TESTS))
    parser.add_argument("--network", action="store_true",
                        help="also run the tests that download pretrained weights")
    parser.add_argument("--only", choices=("timm", "vitzoo", "both"), default="both")
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "timm-suite")
    return parser.parse_args()


def main() -> int:
    args = _args()
    if args.fetch is not None:
        print(suite.fetch_test_file(args.fetch))
        return 0
    test_file = args.tests or suite.test_file_from_env()
    if test_file is None or not test_file.is_file():
        print(f"no test file: pass --tests or set {suite.TESTS_ENV} "
              "(python benchmarks/timm_suite.py --fetch DIR fetches it)", file=sys.stderr)
        return 2
    archs = [a for a in args.archs.split(",") if a]
    reports = {}
    for side in ("timm", "vitzoo"):
        if args.only in (side, "both"):
            print(f"running timm's tests on {side} ...", file=sys.stderr, flush=True)
            reports[side] = suite.run_side(side, test_file, args.out, archs=archs,
                                           slow=args.slow, network=args.network)
            print(f"  {suite.summary(reports[side])} in {reports[side]['seconds']} s",
                  file=sys.stderr)
        elif (args.out / f"{side}.json").is_file():
            reports[side] = json.loads((args.out / f"{side}.json").read_text())
    if set(reports) != {"timm", "vitzoo"}:
        print(f"only {sorted(reports)} ran; no comparison", file=sys.stderr)
        return 0
    table = suite.render(reports["timm"], reports["vitzoo"])
    (args.out / "comparison.md").write_text(table)
    print(table)
    print(f"written to {args.out / 'comparison.md'}", file=sys.stderr)
    return 1 if suite.regressions(reports["timm"], reports["vitzoo"]) else 0


if __name__ == "__main__":
    sys.exit(main())
