"""``python -m benchmarks`` (from the repository root): the same as ``vitzoo benchmark``.

    python -m benchmarks --suites inference,matmul --models vit_ti16 vit_b16 --threads 2
"""

from __future__ import annotations

import sys

from vitzoo.cli.main import main

if __name__ == "__main__":
    sys.exit(main(["benchmark", *sys.argv[1:]]))
