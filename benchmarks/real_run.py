"""Real-tier benchmark: the flagship study's real tier, run by pytest exactly as a user runs it.

The synthetic gate says nothing about real chroma. This runs

    pytest ablation_tests/test_chord_heads.py --real -k real -n WORKERS --ablation-store ...

in a subprocess (the study's own train_and_score, checkpoint selection, hypotheses and paired
tests: nothing re-implemented here), then reads the session back from its store and writes the
section between ``<!-- real -->`` markers in docs/benchmarks.md: the plugin's tables and
verdicts, the session's wall time, the peak RSS of its largest process, and trivial baselines
scored through the same mir_eval path, which the plugin cannot know.

    python benchmarks/real_run.py                  # the real tier's seeds x 3 variants, -n 2
    python benchmarks/real_run.py --workers 0
    python benchmarks/real_run.py --resume         # go on after an interruption: --reuse keeps
                                                   # finished runs, checkpoints resume the others
    python benchmarks/real_run.py --report-only    # write the section again from the last session

Without --resume the benchmark folder is wiped first, so every run trains from scratch.

Baselines:
- majority: the most frequent class of the training frames on every frame;
- chance: segments with lengths drawn from the training songs' chord runs, each a class drawn
  uniformly from the vocabulary, averaged over CHANCE_DRAWS draws.

Published figures (PUBLISHED) go beside the study's majmin, for scale only: they come from other
songs and whole audio-to-label systems.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from tabulate import tabulate

from harness.chords.billboard import RealSong
from harness.chords.fixtures import ChordData, real_data
from harness.chords.metrics import Estimate, evaluate, frames_to_segments
from harness.chords.vocab import DEFAULT_VOCAB
from harness.core.store import Store
from harness.core.tables import render_markdown, session_sections

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from docs_section import stamp, write_section

from ablation_tests.test_chord_heads import REAL

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "../shared/data/billboard"
CACHE = REPO / ".ablation" / "cache" / "billboard"
BENCH = REPO / ".ablation" / "bench" / "real"
STORE = BENCH / "results.sqlite"  # checkpoints go beside it, in BENCH / "checkpoints"
STUDY_FILE = "ablation_tests/test_chord_heads.py"  # other studies have real tiers of their own
STUDY = f"{STUDY_FILE}::test_chord_heads"
MEASURED = BENCH / "session.json"  # what only this script measures: wall time, peak RSS, exit
COLUMNS = {"majmin": "labels", "root": "labels", "seg": "alignment", "seq_err": "labels"}
CHANCE_DRAWS = 5
# (system, majmin, source): published McGill Billboard majmin (MIREX WCSR) of other systems. No
# figure for Chordino or a simple HMM/template system could be retrieved where this was written
# (the stored MIREX result pages hold only their introductions); these are MIREX's, quoted from a
# third-party summary of its pages and not checked against them.
PUBLISHED = (
    ("HL2 (Ku & Lee), MIREX 2020's only ACE submission", 0.6594,
     "MIREX 2020 ACE, Billboard2012 test set: "
     "https://music-ir.org/mirex/wiki/2020:Audio_Chord_Estimation_Results"),
    ("JLCX2 (Jiang, Chen, Li, Xia; CNN-LSTM, large vocabulary)", 0.8331,
     "MIREX 2018 ACE, Billboard2012 test set: "
     "https://music-ir.org/mirex/wiki/2018:Audio_Chord_Estimation_Results"),
    ("JLCX2 (same)", 0.7792, "MIREX 2018 ACE, Billboard2013 test set (same page)"),
)
# The study's rows in the comparison: (variant, head, what it is).
STUDY_ROWS = (
    ("ctc_only", "ctc", "CTC head: per-frame labels of a linear CTC classifier over chroma"),
    ("ar_only", "joint", "AR head alone: its chord sequence, uniform timing"),
    ("combined", "joint", "combined: AR sequence timed by CTC alignment"),
)


def run_session(workers: str, resume: bool, seed_offset: int = 0) -> tuple[float, float, int]:
    """The study's real tier under pytest: (wall seconds, peak MB of its largest process, exit)."""
    if not resume:
        shutil.rmtree(BENCH, ignore_errors=True)
    command = [sys.executable, "-m", "pytest", STUDY_FILE, "--real", "-k", "real",
               "-n", workers, "--ablation-store", str(STORE), "-p", "no:cacheprovider",
               "--billboard-root", str(DATA.resolve()),  # the data the report describes
               "--seed-offset", str(seed_offset), *(["--reuse"] if resume else [])]
    print("$", " ".join(command[1:]), flush=True)
    start = time.perf_counter()
    exitstatus = subprocess.run(command, cwd=REPO, check=False).returncode
    wall = time.perf_counter() - start
    # each run records its process's peak RSS while it ran (harness.core.resources resets the
    # kernel's high-water mark per run, so RUSAGE_CHILDREN no longer sees a worker's peak)
    with Store(STORE, readonly=True) as store:
        session = store.latest_session()
        peaks = [r.resources.get("peak_rss_mb") for kind in ("run", "stage")
                 for r in store.runs(session, kind=kind)]
    peak_mb = max((p for p in peaks if p is not None), default=float("nan"))
    return wall, peak_mb, exitstatus


def load() -> ChordData:
    """The study's real data, exactly as the real tier's `chord_data` fixture loads it."""
    return real_data(DATA.resolve(), CACHE)


def _columns(metrics: dict) -> dict[str, float]:
    return {
        name: metrics[group][name]
        for name, group in COLUMNS.items()
        if name in metrics.get(group, {})
    }


def baselines(data: ChordData, seed: int = 0) -> dict[str, dict[str, float]]:
    """Majority class and chance, scored like a head's frames (module docstring)."""
    train_frames = np.concatenate([song.frames for song in data.train])
    majority = int(np.bincount(train_frames[train_frames >= 0]).argmax())
    runs = np.concatenate([_run_lengths(song.frames) for song in data.train])
    rng = np.random.default_rng(seed)
    result = {
        f"majority ({DEFAULT_VOCAB.label(majority)})": _score_frames(
            data.eval, [np.full(len(song.frames), majority) for song in data.eval]
        )
    }
    draws = []
    for _ in range(CHANCE_DRAWS):
        guesses = []
        for song in data.eval:
            lengths = rng.choice(runs, size=len(song.frames))  # more than enough
            classes = rng.integers(DEFAULT_VOCAB.size, size=len(lengths))
            guesses.append(np.repeat(classes, lengths)[: len(song.frames)])
        draws.append(_score_frames(data.eval, guesses))
    result["chance"] = {key: statistics.fmean(d[key] for d in draws) for key in draws[0]}
    return result


def _run_lengths(frames: np.ndarray) -> np.ndarray:
    """Lengths of the runs of equal mapped classes (unmapped frames left out)."""
    mapped = frames[frames >= 0]
    return np.diff(np.flatnonzero(np.diff(mapped, prepend=-1, append=-1)))


def _score_frames(songs: list[RealSong], guesses: list[np.ndarray]) -> dict[str, float]:
    estimates = []
    for song, frames in zip(songs, guesses, strict=True):
        intervals, labels = frames_to_segments(DEFAULT_VOCAB.labels(frames), song.frame_rate)
        ref_intervals, ref_labels = song.reference(DEFAULT_VOCAB)
        ref_sequence = DEFAULT_VOCAB.labels([c for c in song.sequence if c >= 0])
        estimates.append(
            Estimate(song.id, ref_intervals, ref_labels, intervals, labels, ref_sequence, labels)
        )
    metrics, _ = evaluate(estimates)
    return _columns(metrics)


def comparison(runs: list, base: dict[str, dict[str, float]], eval_songs: int) -> str:
    """The study's majmin beside the trivial baselines and the published figures."""
    ours = f"{eval_songs} eval songs of this 100-song subset, Chordino chroma (this session)"
    rows = []
    for variant, head, what in STUDY_ROWS:
        values = [r.metrics[f"{head}/labels/majmin"] for r in runs
                  if r.variant == variant and f"{head}/labels/majmin" in r.metrics]
        if values:
            spread = statistics.stdev(values) if len(values) > 1 else 0.0
            rows.append([f"{variant} `{head}`: {what}",
                         f"{statistics.fmean(values):.3f} ± {spread:.3f}", ours])
    rows += [[name, f"{scores['majmin']:.3f}", ours] for name, scores in base.items()]
    rows += [[system, f"{majmin:.3f}", source] for system, majmin, source in PUBLISHED]
    return tabulate(rows, ["system", "majmin", "data / source"], tablefmt="github")


def report(args: argparse.Namespace, data: ChordData, wall: float, peak_mb: float,
           exitstatus: int) -> str:
    """The markdown section: command, machine, data, config, the session's tables, baselines."""
    store = Store(STORE)
    session = store.latest_session()
    runs = [r for r in store.runs(session=session) if r.tier == "real" and r.study == STUDY]
    trained = [r for r in runs if r.source == "run" and r.status == "done"]
    per_variant = {
        variant: statistics.fmean(r.duration for r in trained if r.variant == variant)
        for variant in dict.fromkeys(r.variant for r in trained)
    }
    sections = [s for s in session_sections(store, session, store.study_options(session))
                if s.study == STUDY and "real" in s.setting]
    base = baselines(data)
    base_rows = [[name, *(format(scores[c], ".3f") for c in COLUMNS)] for name, scores in
                 base.items()]
    mapping = data.notes
    unmapped = ", ".join(f"{k} {v}" for k, v in mapping["unmapped"].items())
    fit_songs, validation = data.held_out(REAL["select"]["held_out"])
    command = " ".join(["python benchmarks/real_run.py", *args.argv])
    lines = [
        f"{stamp(command)}; it ran "
        f"`pytest {STUDY_FILE} --real -k real -n {args.workers}` (exit {exitstatus}).",
        "",
        f"Session: {len(runs)} runs ({len(trained)} trained in it) in {wall / 60:.1f} min wall; "
        f"mean time per run (train + select + score): "
        + ", ".join(f"{v} {t:.0f} s" for v, t in per_variant.items())
        + f"; peak RSS of the largest process during a run (a worker: torch, data, the run) "
        f"{peak_mb:.0f} MB.",
        "",
        f"Data: {len(fit_songs)} fit + {len(validation)} validation (checkpoint selection) / "
        f"{len(data.eval)} eval Billboard songs, split by song, {mapping['frames']:,} frames; "
        f"unmapped to the 61-class vocabulary: {mapping['unmapped_share']:.2%} of frames "
        f"({unmapped}).",
        "",
        f"Config (the real tier's overrides): `{json.dumps(REAL)}`.",
        "",
        "The plugin's tables and verdicts for the session (means ± std over seeds; eval songs "
        "weighted by duration, as mir_eval's MIREX convention):",
        "",
        render_markdown(sections).strip(),
        "",
        "Baselines through the same mir_eval path (majority = the most frequent training class "
        "on every frame; chance = segments with lengths drawn from the training chord runs, each "
        f"a uniformly random class of {DEFAULT_VOCAB.size}, mean of {CHANCE_DRAWS} draws):",
        "",
        tabulate(base_rows, ["baseline", *COLUMNS], tablefmt="github"),
        "",
        "Beside published McGill Billboard majmin figures (MIREX weighted chord symbol recall, "
        "for scale only: other songs, and whole systems that read audio with their own features "
        "and decoders, where this study trains two small heads on 80 songs of precomputed chroma; "
        "the published figures are quoted from a third-party summary of the MIREX pages, and no "
        "published Billboard figure for Chordino itself or a simple HMM/template system could be "
        "retrieved):",
        "",
        comparison([r for r in runs if r.status == "done"], base, len(data.eval)),
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", default="2", help="pytest-xdist -n value (default 2)")
    parser.add_argument("--seed-offset", type=int, default=0,
                        help="run the study on fresh seeds (pytest --seed-offset)")
    parser.add_argument("--resume", action="store_true",
                        help="keep finished runs and checkpoints of an interrupted benchmark")
    parser.add_argument("--report-only", action="store_true",
                        help="run nothing: report the last session again (after report changes)")
    parser.add_argument("--no-write", action="store_true", help="print, leave the docs alone")
    args = parser.parse_args()
    if args.report_only:
        measured = json.loads(MEASURED.read_text())
        args.argv, args.workers = measured["argv"], measured["workers"]
    else:
        args.argv = [a for a in sys.argv[1:] if a != "--no-write"]
        wall, peak_mb, exitstatus = run_session(args.workers, args.resume, args.seed_offset)
        measured = {"wall": wall, "peak_mb": peak_mb, "exitstatus": exitstatus,
                    "argv": args.argv, "workers": args.workers}
        MEASURED.write_text(json.dumps(measured))
    exitstatus = measured["exitstatus"]
    body = report(args, load(), measured["wall"], measured["peak_mb"], exitstatus)
    print(body)
    if not args.no_write:
        write_section("real", body)
    sys.exit(exitstatus)


if __name__ == "__main__":
    main()
