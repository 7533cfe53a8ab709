"""What the plugin costs a project that has no study: pytest's start-up with and without it.

In a throwaway project with one plain test, `python -m pytest -q` runs with the plugin and with
`-p no:ablation`, interleaved, and the medians are compared; `python -X importtime` lists the
harness modules the plugin imports. The table goes into docs/benchmarks.md ("import cost").

    python benchmarks/import_cost.py [--repeats 15]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from docs_section import stamp, write_section
from tabulate import tabulate


def session(folder: Path, *extra: str) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *extra],
                   cwd=folder, check=True, capture_output=True)
    return time.perf_counter() - start


def import_times() -> list[tuple[str, float]]:
    """(module, cumulative ms) of the plugin's own modules, as `-X importtime` reports them
    after pytest is imported (pytest's own cost is not the plugin's)."""
    out = subprocess.run([sys.executable, "-X", "importtime", "-c",
                          "import pytest; import harness.plugin"],
                         capture_output=True, text=True, check=True).stderr
    rows = []
    for line in out.splitlines():
        parts = line.split("|")
        if len(parts) == 3 and parts[2].strip().startswith("harness"):
            rows.append((parts[2].strip(), int(parts[1]) / 1000))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "test_plain.py").write_text("def test_one():\n    assert True\n")
        session(folder)  # warm the file cache
        with_plugin, without = [], []
        for _ in range(args.repeats):
            with_plugin.append(session(folder))
            without.append(session(folder, "-p", "no:ablation"))
    a, b = statistics.median(with_plugin), statistics.median(without)
    modules = import_times()
    plugin_ms = next(ms for name, ms in modules if name == "harness.plugin")
    body = "\n".join([
        f"Measured by {stamp('python benchmarks/import_cost.py')}: `pytest -q` in a project "
        f"with one plain test and no study, {args.repeats} interleaved repeats each.",
        "",
        tabulate([["with pytest-ablation", f"{a:.3f}"], ["-p no:ablation", f"{b:.3f}"],
                  ["difference", f"{a - b:+.3f} ({a / b:.2f}x)"]],
                 ["pytest start-up to exit", "median s"], tablefmt="github"),
        "",
        f"`import harness.plugin` after pytest: {plugin_ms:.0f} ms cumulative "
        f"(`-X importtime`); the heaviest of its modules:",
        "",
        tabulate([[name, f"{ms:.1f}"] for name, ms in
                  sorted(modules, key=lambda m: -m[1])[1:8]],
                 ["module", "cumulative ms"], tablefmt="github"),
        "",
        "None of torch, wandb, tqdm, mir_eval, scikit-learn, PyYAML or a domain package is "
        "imported (tests/test_install.py checks it).",
    ])
    print(write_section("import-cost", body))


if __name__ == "__main__":
    main()
