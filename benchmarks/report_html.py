"""How long the HTML report of the gate's session takes, and the screenshot in the README.

Runs the synthetic gate (`-n 2`) into a store of its own, then times `python -m harness report
--html` on that session as a user runs it (a fresh process: imports included), --repeats
times, and once in-process by phase (tables, figures built, figures rendered to SVG). The
table goes into docs/benchmarks.md; with Chromium and selenium installed, a screenshot of the
flagship study's first section goes to docs/report.png.

    python benchmarks/report_html.py [--repeats 5] [--store PATH (skip the gate, use its latest)]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from docs_section import stamp, write_section
from gate import ROOT, pytest_gate
from tabulate import tabulate

SCREENSHOT = ROOT / "docs" / "report.png"
FLAGSHIP = "ablation_tests/test_chord_heads.py::test_chord_heads"


def time_cli(store: Path, out: Path) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "harness", "report", "--store", str(store), "--html",
                    str(out)], cwd=ROOT, check=True, capture_output=True)
    return time.perf_counter() - start


def phases(store: Path) -> tuple[dict[str, float], int, int]:
    """Seconds per phase of one report in this process; the figure and section counts."""
    sys.path.insert(0, str(ROOT))
    from harness.core import figures
    from harness.core.plots import section_plots
    from harness.core.store import Store
    from harness.core.tables import session_sections

    took = {}
    with Store(store, readonly=True) as db:
        session = db.latest_session()
        options = db.study_options(session)
        start = time.perf_counter()
        sections = session_sections(db, session, options)
        took["tables"] = time.perf_counter() - start
        start = time.perf_counter()
        plots = section_plots(db, session, sections, options)
        took["figures built"] = time.perf_counter() - start
    start = time.perf_counter()
    for mine in plots.values():
        for plot in mine:
            figures.render(plot.figure, "svg")
    took["figures rendered (SVG)"] = time.perf_counter() - start
    return took, sum(map(len, plots.values())), len(sections)


def screenshot(page: Path) -> str:
    """The flagship's first section in headless Chromium, 1280 px wide."""
    browser, driver = shutil.which("chromium"), shutil.which("chromedriver")
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        return "no screenshot: selenium is not installed"
    if not (browser and driver):
        return "no screenshot: chromium and chromedriver are not installed"
    options = webdriver.ChromeOptions()
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1280,1500",
                 "--hide-scrollbars"):
        options.add_argument(flag)
    options.binary_location = browser
    chrome = webdriver.Chrome(service=Service(driver), options=options)
    try:
        chrome.get(page.as_uri())
        heading = next(h for h in chrome.find_elements("css selector", "section.study > h2")
                       if h.text == FLAGSHIP)
        chrome.execute_script("arguments[0].scrollIntoView()", heading)
        chrome.save_screenshot(str(SCREENSHOT))
    finally:
        chrome.quit()
    return f"screenshot: {SCREENSHOT.relative_to(ROOT)}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--store", type=Path, help="use this store's latest session")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=ROOT / ".ablation", prefix="bench-report-") as tmp:
        store = args.store
        if store is None:
            store = Path(tmp) / "results.sqlite"
            wall, status = pytest_gate(store, "-n", "2")
            print(f"gate: {wall:.1f} s, exit {status}")
        page = Path(tmp) / "report.html"
        times = [time_cli(store, page) for _ in range(args.repeats)]
        took, count, sections = phases(store)
        size = page.stat().st_size / 1e6
        shot = screenshot(page)
    rows = [["`python -m harness report --html` (fresh process, median)",
             f"{statistics.median(times):.2f}"],
            *([f"of which, in-process: {name}", f"{seconds:.2f}"]
              for name, seconds in took.items())]
    body = (f"The gate's session ({sections} sections, {count} figures; the page is "
            f"{size:.1f} MB): {args.repeats} runs of the report, min "
            f"{min(times):.2f} s, max {max(times):.2f} s. Target: under 10 s on 2 cores.\n\n"
            + tabulate(rows, ["step", "seconds"], tablefmt="github"))
    command = "python benchmarks/report_html.py" + (f" --store {args.store}" if args.store
                                                      else "")
    print(write_section("report", f"{stamp(command)}.\n\n{body}"))
    print(shot)


if __name__ == "__main__":
    main()
