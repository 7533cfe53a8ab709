"""The figures and the HTML report of real sessions: studies run by pytest (a sweep with a
failed run, a NaN and logged steps; a two-knob grid; a single seed without logs), drawn from
the store alone, written as files by --ablation-plots and opened in headless Chromium."""

from __future__ import annotations

import base64
import os
import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import matplotlib.image
import numpy as np
import pytest

import harness.core.verdicts  # noqa: F401  (loaded before pytester's sessions)
from harness.core.plots import section_plots
from harness.core.report import main
from harness.core.store import Store
from harness.core.tables import session_sections
from tests.wandb_offline import offline_runs, read_offline_run

STUDIES = """
import math

import numpy as np

from harness import ablation

VARIANTS = {"base": {"gain": 0.0}, "better": {"gain": 1.0}, "broken": {"gain": 0.0}}
sweep = ablation(variants=VARIANTS, seeds=4, tiers={"synthetic": {"lr": [0.001, 0.01, 0.1]}})


@sweep
def test_sweep(run):
    lr = run.knobs["lr"]
    rng = np.random.default_rng([run.seed, list(VARIANTS).index(run.variant),
                                 round(-math.log10(lr))])
    if run.variant == "broken" and run.seed == 3 and lr == 0.01:
        raise RuntimeError("diverged")
    for step in range(10, 60, 10):
        run.log(step, loss=1.0 / step + 0.01 * rng.standard_normal())
    acc = 0.6 + 0.1 * run.config["gain"] + 0.05 * math.log10(lr) + 0.02 * rng.standard_normal()
    if run.variant == "broken" and run.seed == 1:
        acc = float("nan")
    spectrum = {f"sv{i}": 2.0 ** -i * (1 + 0.1 * rng.random()) for i in range(1, 5)}
    return {"acc": acc, "layer": {"spectrum": spectrum}}


sweep.expect("better > base", metric="acc")
sweep.expect("broken >= base", metric="acc", margin=0.01)
sweep.guard("acc", margin=0.05, variants=["better"])

grid = ablation(variants={"a": {}, "b": {"shift": 0.1}}, seeds=2,
                tiers={"synthetic": {"width": [8, 16], "depth": [1, 2, 3]}})


@grid
def test_grid(run):
    rng = np.random.default_rng([run.seed, run.knobs["width"], run.knobs["depth"]])
    return {"auc": 0.5 + 0.01 * run.knobs["width"] + 0.02 * run.knobs["depth"]
            + run.config.get("shift", 0.0) + 0.01 * rng.standard_normal()}


single = ablation(variants={"x": {}, "y": {"up": 1.0}}, seeds=1)


@single
def test_single(run):
    return {"score": 0.5 + 0.1 * run.config.get("up", 0.0)}


single.expect("y > x", metric="score")
"""
SWEEP = "test_report_studies.py::test_sweep"
GRID = "test_report_studies.py::test_grid"
SINGLE = "test_report_studies.py::test_single"


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One session of the three studies, with --ablation-plots and W&B offline."""
    folder = tmp_path_factory.mktemp("report")
    (folder / "test_report_studies.py").write_text(STUDIES)
    (folder / "pytest.ini").write_text("[pytest]\n")
    env = {k: v for k, v in os.environ.items()
           if k not in ("WANDB_API_KEY", "SLURM_JOB_ID", "SLURM_ARRAY_JOB_ID")}
    env.update(WANDB_MODE="offline", HOME=str(folder / "home"))
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "--wandb",
         "--ablation-plots", "figures", "test_report_studies.py"],
        cwd=folder, env=env, capture_output=True, text=True, timeout=600)
    # the broken variant's runs fail (a RuntimeError) and so do its claim and the single-seed
    # claim: the session fails, and every figure is drawn all the same
    assert "ablation figures:" in result.stdout, result.stdout + result.stderr
    assert re.search(r"\d+ failed", result.stdout), result.stdout
    return folder


def _plots(project: Path) -> tuple[list, dict]:
    with Store(project / ".ablation" / "results.sqlite", readonly=True) as store:
        session = store.latest_session()
        options = store.study_options(session)
        sections = session_sections(store, session, options)
        return sections, section_plots(store, session, sections, options)


def _find(sections, plots, study: str, setting: str) -> dict:
    found = {}
    for index, section in enumerate(sections):
        if section.study == study and section.setting.startswith(setting):
            found.update({p.name: p for p in plots.get(index, [])})
    return found


def test_a_setting_gets_verdicts_paired_seeds_learning_curves_and_screes(project) -> None:
    sections, plots = _plots(project)
    mine = _find(sections, plots, SWEEP, "synthetic-lr=0.01")
    assert set(mine) == {"verdicts", "paired-seeds", "learning-loss", "scree-layer/spectrum"}
    verdicts = mine["verdicts"].figure
    labels = [ax.get_yticklabels()[0].get_text() for ax in verdicts.axes]
    assert labels == ["better > base\nacc", "broken >= base\nacc"]
    assert "supported" in [t.get_text() for t in verdicts.axes[0].texts]
    paired = mine["paired-seeds"]
    better, broken = paired.figure.axes[:2]
    assert len(better.lines) == 4 + 1  # four seeds and the means
    assert len(broken.lines) == 2 + 1  # seed 1 is NaN, seed 3 failed: two seeds left
    assert any("non-finite acc left out" in n for n in paired.notes)
    assert any("not done" in n and "broken-seed3" in n for n in paired.notes)
    curves = mine["learning-loss"].figure.axes[0]
    assert [line.get_label() for line in curves.lines] == [
        "base (n=4)", "better (n=4)", "broken (n=3)"]  # the failed run logged nothing to draw
    assert curves.lines[0].get_xdata().tolist() == [10, 20, 30, 40, 50]
    scree = mine["scree-layer/spectrum"].figure.axes[0]
    assert scree.get_yscale() == "log" and len(scree.lines) == 3


def test_a_sweep_is_drawn_per_knob_on_a_log_axis_and_a_grid_as_heatmaps(project) -> None:
    sections, plots = _plots(project)
    sweep = _find(sections, plots, SWEEP, "synthetic · across lr")
    ax = sweep["sweep-lr-acc"].figure.axes[0]
    assert ax.get_xscale() == "log"
    assert [line.get_label() for line in ax.lines] == ["base", "better", "broken"]
    assert ax.lines[1].get_xdata().tolist() == [0.001, 0.01, 0.1]
    assert any("non-finite" in n for n in sweep["sweep-lr-acc"].notes)
    grid = _find(sections, plots, GRID, "synthetic · width x depth")
    assert set(grid) == {"grid-auc-a", "grid-auc-b"}
    heat = grid["grid-auc-b"].figure.axes[0]
    assert len(heat.texts) == 6  # every cell of the 2 x 3 grid annotated
    assert (heat.get_ylabel(), heat.get_xlabel()) == ("width", "depth")


def test_a_single_seed_without_logs_still_renders_with_a_note(project) -> None:
    sections, plots = _plots(project)
    mine = _find(sections, plots, SINGLE, "default")
    assert set(mine) == {"verdicts", "paired-seeds"}  # no steps logged: no learning curve
    assert any("single seed" in n for n in mine["paired-seeds"].notes)


def test_ablation_plots_wrote_png_and_svg_files_and_logged_them_to_wandb(project) -> None:
    folder = project / "figures"
    pngs = sorted(folder.rglob("*.png"))
    svgs = sorted(folder.rglob("*.svg"))
    _sections, plots = _plots(project)
    assert len(pngs) == len(svgs) == sum(map(len, plots.values()))
    for png in pngs:
        height, width = matplotlib.image.imread(png).shape[:2]
        assert width > 300 and height > 150, png
    verdicts = next(p for p in svgs if p.stem == "verdicts" and "lr=0.01" in p.parent.name)
    texts = {t.text for t in ET.parse(verdicts).iter("{http://www.w3.org/2000/svg}text")}
    assert {"supported", "a − b: mean paired difference and its CI"} <= texts
    [session_dir] = (project / ".ablation" / "runs").iterdir()
    logged = {run["name"]: run for run in map(read_offline_run, offline_runs(session_dir))}
    verdict_run = logged[f"{SWEEP}-verdicts"]
    images = [k for k in verdict_run["summary"] if k.startswith("figures/")]
    mine = [p for p in pngs if "test_sweep" in str(p.relative_to(folder).parts[0])]
    assert len(images) == len(mine) > 0
    media = list(next(session_dir.rglob("offline-run-*")).parent.rglob("media/images/**/*.png"))
    assert media


def _html(project: Path, tmp_path: Path) -> tuple[str, Path]:
    path = tmp_path / "report.html"
    assert main(["--store", str(project / ".ablation" / "results.sqlite"),
                 "--html", str(path)]) == 0
    return path.read_text(), path


def test_the_html_report_is_one_self_contained_file(project, tmp_path) -> None:
    text, _ = _html(project, tmp_path)
    _sections, plots = _plots(project)
    sources = re.findall(r'(?:src|href)="([^"]*)"', text)
    assert sources and all(s.startswith(("data:image/svg+xml;base64,", "#")) for s in sources)
    assert "<script" not in text and "http://" not in text.replace(
        "http://www.w3.org", "")  # nothing fetched from anywhere
    images = re.findall(r'src="data:image/svg\+xml;base64,([^"]+)"', text)
    assert len(images) == sum(map(len, plots.values()))
    for image in images:
        ET.fromstring(base64.b64decode(image))  # each a whole SVG document
    for study in (SWEEP, GRID, SINGLE):
        assert f"<h2>{study}</h2>" in text
    assert text.count('<table><caption>hypotheses</caption>') == 4  # 3 sweep settings + single


def test_against_a_baseline_the_report_has_the_guards_table_and_plot(project, tmp_path) -> None:
    with Store(project / ".ablation" / "results.sqlite", readonly=True) as store:
        session = store.latest_session()
    path = tmp_path / "against.html"
    assert main(["--store", str(project / ".ablation" / "results.sqlite"), "--html", str(path),
                 "--baseline", session]) == 0
    text = path.read_text()
    assert text.count(f"<caption>vs baseline (session {session})</caption>") == 3  # per lr
    assert text.count('data-plot="baseline"') == 3


BROWSER = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")


@pytest.fixture(scope="module")
def browser():
    """Headless Chromium driven through chromedriver (Debian: chromium, chromium-driver)."""
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is in the dev extra")
    if not (BROWSER and DRIVER):
        pytest.skip("Chromium is not installed: apt-get install chromium chromium-driver "
                    "(.ci/run does)")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--window-size=1280,1600"):
        options.add_argument(flag)
    options.binary_location = BROWSER
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)
    yield driver
    driver.quit()


def test_the_report_renders_in_chromium_without_errors(project, tmp_path, browser) -> None:
    _, path = _html(project, tmp_path)
    _sections, plots = _plots(project)
    browser.get(path.as_uri())
    errors = [e for e in browser.get_log("browser") if e["level"] in ("SEVERE", "WARNING")]
    assert errors == []
    assert browser.find_element("tag name", "h1").text == "Ablation report"
    studies = [e.text for e in browser.find_elements("css selector", "section.study > h2")]
    assert studies == [SWEEP, GRID, SINGLE]
    loaded = browser.execute_script(
        "return Array.from(document.images).map(i => [i.complete, i.naturalWidth, i.alt])")
    assert len(loaded) == sum(map(len, plots.values()))
    assert all(complete and width > 300 for complete, width, _ in loaded), loaded
    captions = [e.text for e in browser.find_elements("css selector", "figcaption")]
    assert any(c.startswith("paired seeds") and "non-finite" in c for c in captions)
    assert any(c.startswith("learning curve: loss") for c in captions)
    # the hypotheses' rows are coloured by verdict, and a table wider than the page scrolls
    rows = browser.find_elements("css selector", "section.setting tr[style]")
    assert rows and all("background" in r.get_attribute("style") for r in rows)
    width = browser.execute_script("return document.documentElement.scrollWidth")
    assert width <= 1280
    # a link in the table of contents leads to its study's first section
    browser.find_element("link text", GRID).click()
    assert browser.execute_script("return window.location.hash").startswith("#s")
    assert np.isfinite(browser.execute_script("return window.scrollY"))


LOGGED = """
from harness import ablation

study = ablation(variants={"a": {}, "b": {"up": 0.1}}, seeds=2)


@study
def test_logged(run):
    for step in (1, 2, 3):
        run.log(step, loss=1.0 / step + 0.01 * run.seed)
    return {"acc": 0.5 + run.config.get("up", 0.0) + 0.01 * run.seed}
"""


def test_runs_reused_from_an_earlier_session_keep_their_learning_curves(
        pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_logged=LOGGED)
    pytester.runpytest_subprocess("-p", "no:cacheprovider").assert_outcomes(passed=4)
    pytester.runpytest_subprocess("-p", "no:cacheprovider", "--reuse").assert_outcomes(passed=4)
    with Store(pytester.path / ".ablation" / "results.sqlite", readonly=True) as store:
        first, second = (s["session"] for s in store.sessions())
        assert {r.source for r in store.runs(session=second)} == {"store"}
        assert not (pytester.path / ".ablation" / "runs" / second).exists()  # nothing ran
        for session in (first, second):
            sections = session_sections(store, session, store.study_options(session))
            [plots] = section_plots(store, session, sections).values()
            [curve] = [p for p in plots if p.name == "learning-loss"]
            assert [line.get_label() for line in curve.figure.axes[0].lines] == [
                "a (n=2)", "b (n=2)"]


ADAPTIVE = """
from harness import ablation

study = ablation(variants={"a": {}, "b": {"up": 1.0}}, seeds={"min": 3, "max": 9, "batch": 3})


@study
def test_adaptive(run):
    noise = 0.01 * ((7 * run.seed + 3 * (run.variant == "b")) % 5)  # differs per run
    return {"acc": 0.5 + run.config.get("up", 0.0) + noise}


study.expect("b > a", metric="acc")
"""


def test_an_adaptive_claim_shows_the_look_that_decided_it(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_adaptive=ADAPTIVE)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=7, skipped=12)  # 6 runs and the claim; 12 runs not needed
    with Store(pytester.path / ".ablation" / "results.sqlite", readonly=True) as store:
        session = store.latest_session()
        sections = session_sections(store, session, store.study_options(session))
        [plots] = section_plots(store, session, sections).values()
    verdicts = next(p for p in plots if p.name == "verdicts").figure
    texts = [t.get_text() for t in verdicts.axes[0].texts]
    assert "supported" in texts and "look 1/3, 3 seeds" in texts
    paired = next(p for p in plots if p.name == "paired-seeds").figure
    assert len(paired.axes[0].lines) == 3 + 1  # the seeds that ran, and the means


@pytest.mark.parametrize(("args", "error"), [
    (["--smooth", "1"], "--smooth 1.0: give an EMA weight from 0"),
    (["--html", "x.html", "-o", "y"], "--html FILE is where the report goes: drop -o")])
def test_report_options_that_cannot_work_are_one_line(capsys, args, error) -> None:
    with pytest.raises(SystemExit) as exc:
        main(args)
    assert exc.value.code == 2 and error in capsys.readouterr().err


def test_figures_that_cannot_be_written_are_one_line_and_exit_2(project, tmp_path,
                                                               capsys) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with pytest.raises(SystemExit) as exc:
        main(["--store", str(project / ".ablation" / "results.sqlite"), "--plots",
              str(blocker / "figures")])
    err = capsys.readouterr().err.strip()
    assert exc.value.code == 2 and len(err.splitlines()) == 1
    assert f"cannot write the figures under {blocker / 'figures'}" in err
