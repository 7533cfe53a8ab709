"""The plugin installs light: a wheel in a fresh virtualenv with only the core dependencies
(pytest, numpy, scipy, tabulate) runs a numpy-only study to its verdicts, and a project that
merely has the plugin installed loads no extra (torch, W&B, tqdm, xdist, a domain)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXTRAS = ("torch", "wandb", "tqdm", "xdist", "mir_eval", "sklearn", "yaml", "submitit",
          "ray")

STUDY = """
import numpy as np
from harness import ablation

study = ablation(variants={"mean": {"shrink": 0.0}, "shrunk": {"shrink": 0.5}}, seeds=5)

@study
def test_estimators(run):
    rng = np.random.default_rng(run.seed)
    truth, sample = 0.0, rng.normal(1.0, 1.0, size=8)  # a biased sample: shrinking helps
    estimate = (1 - run.config["shrink"]) * sample.mean()
    return {"error": abs(estimate - truth) + rng.normal(0, 0.01)}

study.expect("shrunk < mean", metric="error")
"""

LOADED = """
import sys
import pytest
code = pytest.main(["-q", "-p", "no:cacheprovider", *sys.argv[1:]])
extras = [m for m in {extras!r} if m in sys.modules]
domains = sorted(m for m in sys.modules if m.startswith("harness.") and
                 m.split(".")[1] in ("chords", "signs", "distill", "tinycnn", "peptides"))
print("LOADED", extras, domains)
sys.exit(code)
"""


@pytest.fixture(scope="module")
def core_only(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh virtualenv with the wheel and its core dependencies only (from the package
    index, or pip's cache); skipped where no index can be reached."""
    folder = tmp_path_factory.mktemp("install")
    wheel = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps",
                            "--no-build-isolation", "-q", "-w", str(folder / "dist"), str(ROOT)],
                           capture_output=True, text=True)
    assert wheel.returncode == 0, wheel.stderr
    built = next((folder / "dist").glob("pytest_ablation-*.whl"))
    env = folder / "venv"
    venv.create(env, with_pip=True)
    python = env / "bin" / "python"
    install = subprocess.run([str(python), "-m", "pip", "install", "-q", "--disable-pip-version-"
                              "check", str(built)], capture_output=True, text=True, timeout=600)
    if install.returncode != 0 and ("Could not find" in install.stderr
                                    or "connection" in install.stderr.lower()):
        pytest.skip(f"no package index reachable for the core dependencies: {install.stderr}")
    assert install.returncode == 0, install.stderr
    return python


def test_a_core_only_install_runs_a_numpy_study_to_its_verdicts(core_only: Path,
                                                                tmp_path: Path) -> None:
    missing = subprocess.run([str(core_only), "-c", "import importlib.util as u; print("
                              f"[m for m in {EXTRAS!r} if u.find_spec(m)])"],
                             capture_output=True, text=True)
    assert missing.stdout.strip() == "[]", "the core install pulled an extra"
    (tmp_path / "test_estimators.py").write_text(STUDY)
    (tmp_path / "loaded.py").write_text(LOADED.format(extras=EXTRAS))
    run = subprocess.run([str(core_only), "loaded.py"], cwd=tmp_path, capture_output=True,
                         text=True, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "shrunk<mean[error]" in run.stdout and "SUPPORTED" in run.stdout
    assert "LOADED [] []" in run.stdout
    # what needs an extra says which one
    wandb = subprocess.run([str(core_only), "-m", "pytest", "-p", "no:cacheprovider",
                            "--wandb"], cwd=tmp_path, capture_output=True, text=True)
    assert wandb.returncode == 4
    assert "--wandb needs wandb: pip install 'pytest-ablation[wandb]'" in wandb.stderr


def test_a_project_without_studies_loads_no_extra_in_the_full_install(
        pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_plain="def test_one():\n    assert 1 + 1 == 2\n")
    # (pytest itself loads pytest-xdist's plugin wherever it is installed)
    ours = tuple(m for m in EXTRAS if m != "xdist")
    pytester.path.joinpath("loaded.py").write_text(LOADED.format(extras=ours))
    run = subprocess.run([sys.executable, "loaded.py"], cwd=pytester.path, capture_output=True,
                         text=True, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "LOADED [] []" in run.stdout, run.stdout
    assert not (pytester.path / ".ablation").exists()  # and leaves nothing behind
    shutil.rmtree(pytester.path / "__pycache__", ignore_errors=True)
