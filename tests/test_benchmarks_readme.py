"""benchmarks/README.md lists every script, and its commands use only the options they take."""

from __future__ import annotations

import ast
import re
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


def _options(script: Path) -> set[str]:
    """The option strings a script's argparse parser accepts (read from its source)."""
    tree = ast.parse(script.read_text())
    return {arg.value for node in ast.walk(tree) if isinstance(node, ast.Call)
            and getattr(node.func, "attr", None) == "add_argument"
            for arg in node.args if isinstance(arg, ast.Constant)} | {"--help"}


def test_the_benchmarks_readme_lists_every_script_with_options_it_takes():
    readme = (BENCHMARKS / "README.md").read_text()
    scripts = sorted(p.name for p in BENCHMARKS.glob("bench_*.py"))
    assert scripts == ["bench_attention.py", "bench_convert.py", "bench_inference.py",
                       "bench_pretrained.py"]
    for name in scripts:
        assert f"| `{name}` |" in readme, f"{name} is not in the table"
    commands = re.findall(r"python benchmarks/(bench_\w+\.py)([^\n]*)", readme)
    assert {name for name, _ in commands} == set(scripts)  # an example command for each
    for name, arguments in commands:
        used = set(re.findall(r"--[a-z][a-z0-9-]*", arguments))
        assert used <= _options(BENCHMARKS / name), (name, used - _options(BENCHMARKS / name))
