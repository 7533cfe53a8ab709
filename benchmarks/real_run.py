"""Real-tier benchmark: the chord-heads variants trained and scored on McGill Billboard.

The synthetic gate says nothing about real chroma. This checks that ``REAL`` (the ModelConfig
and TrainConfig overrides for the study's real tier) trains each variant in minutes on a 2-core
CPU, scores far above trivial baselines, and shows what the study's hypotheses look like on
real data. It writes the section between ``<!-- real -->`` markers in docs/benchmarks.md.

    python benchmarks/real_run.py                  # seed 0
    python benchmarks/real_run.py --seeds 0,1,2
    python benchmarks/real_run.py --resume         # continue interrupted runs (checkpoints)

Each variant runs in a fresh process on one torch thread (as under xdist), so its peak RSS
(getrusage maxrss: interpreter, torch, data, training, scoring) is its own. It trains with a
checkpoint under .ablation/bench/real/seed<S>/<variant>.pt; without --resume an old checkpoint
is deleted first, so the times are of whole runs.

Baselines go through the same mir_eval path (labels -> segments -> metrics.evaluate):
- majority: the most frequent class of the training frames on every frame;
- chance: segments with lengths drawn from the training songs' chord runs, each a class drawn
  uniformly from the vocabulary, averaged over CHANCE_DRAWS draws.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import re
import resource
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np
from tabulate import tabulate

from harness.chords.billboard import RealSong
from harness.chords.fixtures import ChordData, real_data
from harness.chords.metrics import Estimate, evaluate, frames_to_segments
from harness.chords.vocab import DEFAULT_VOCAB

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from ablation_tests.test_chord_heads import REAL

REPO = Path(__file__).resolve().parents[1]
DOC = REPO / "docs" / "benchmarks.md"
DATA = REPO / "../shared/data/billboard"
CACHE = REPO / ".ablation" / "cache" / "billboard"
CHECKPOINTS = REPO / ".ablation" / "bench" / "real"

VARIANTS = {"ctc_only": ["ctc"], "ar_only": ["ar"], "combined": ["ctc", "ar"]}
HEADS = {
    "ctc_only": ["ctc", "joint"],
    "ar_only": ["ar", "joint"],
    "combined": ["ctc", "ar", "joint"],
}
COLUMNS = {"majmin": "labels", "root": "labels", "seg": "alignment", "seq_err": "labels"}
CHANCE_DRAWS = 5
# The study's hypotheses: (name, a, b, head/metric, op, margin).
HYPOTHESES = [
    ("combined >= ctc_only", "combined", "ctc_only", "joint/majmin", ">=", 0.01),
    ("combined > ar_only", "combined", "ar_only", "joint/seg", ">", 0.0),
    ("combined_ctc_head == ctc_only", "combined", "ctc_only", "ctc/majmin", "==", 1e-9),
    ("combined_ar_head == ar_only", "combined", "ar_only", "ar/seq_err", "==", 1e-9),
]


def load() -> ChordData:
    """The study's real data, exactly as the real tier's `chord_data` fixture loads it."""
    return real_data(DATA.resolve(), CACHE)


def run_variant(variant: str, seed: int, resume: bool) -> dict[str, Any]:
    """Train and score one variant in this (fresh) process; its metrics, times and peak RSS."""
    import torch

    from harness.chords.evaluation import score_heads
    from harness.chords.model import ModelConfig, build_model
    from harness.chords.train import TrainConfig, fit

    torch.set_num_threads(1)
    data = load()
    checkpoint = CHECKPOINTS / f"seed{seed}" / f"{variant}.pt"
    if not resume:
        checkpoint.unlink(missing_ok=True)
    resumed = torch.load(checkpoint, weights_only=True)["step"] if checkpoint.exists() else 0
    parts = VARIANTS[variant]
    model_config = ModelConfig(feature_dim=data.feature_dim, **REAL["model"])
    model = build_model(model_config, seed=seed, train_parts=parts)
    start = time.perf_counter()
    losses = fit(model, data.train, TrainConfig(**REAL["train"]), seed=seed, checkpoint=checkpoint)
    trained = time.perf_counter()
    metrics = score_heads(model, data.eval, parts=parts)
    scored = time.perf_counter()
    return {
        "variant": variant,
        "seed": seed,
        "heads": {head: _columns(metrics[head]) for head in HEADS[variant]},
        "losses": losses,
        "train_s": trained - start,
        "score_s": scored - trained,
        "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "resumed_from": resumed,
    }


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


def hypotheses(results: list[dict[str, Any]]) -> list[list[Any]]:
    """Each hypothesis's difference a - b per seed, and whether the point estimate satisfies it
    (no statistical test: the study's paired test needs more seeds than a benchmark runs)."""
    by = {(r["variant"], r["seed"]): r for r in results}
    seeds = sorted({r["seed"] for r in results})
    rows = []
    for name, a, b, metric, op, margin in HYPOTHESES:
        if not all((v, seed) in by for v in (a, b) for seed in seeds):
            continue
        head, column = metric.split("/")
        diffs = [
            by[a, seed]["heads"][head][column] - by[b, seed]["heads"][head][column]
            for seed in seeds
        ]
        shown = ", ".join(f"{d:+.4f}" for d in diffs)
        holds = sum(_holds(op, d, margin) for d in diffs)
        rows.append([name, metric, shown, f"{holds}/{len(diffs)}"])
    return rows


def _holds(op: str, diff: float, margin: float) -> bool:
    """The claim's point-estimate reading, as harness.core.stats states it."""
    return {">=": diff >= -margin, ">": diff > margin, "==": abs(diff) <= margin}[op]


def report(args: argparse.Namespace, data: ChordData, results: list[dict], base: dict) -> str:
    """The markdown section: command, machine, data, config, table, baselines, hypotheses."""
    seeds = sorted({r["seed"] for r in results})
    rows = []
    for variant, heads in HEADS.items():
        runs = [r for r in results if r["variant"] == variant]
        for head in heads:
            values = [_mean([r["heads"][head].get(c) for r in runs], ".3f") for c in COLUMNS]
            times = [_mean([r[k] for r in runs], ".0f") for k in ("train_s", "score_s", "peak_mb")]
            rows.append([variant, head, *values, *times])
    for name, scores in base.items():
        rows.append(
            ["baseline", name, *(_mean([scores.get(c)], ".3f") for c in COLUMNS), "", "", ""]
        )
    mapping = data.notes
    unmapped = ", ".join(f"{k} {v}" for k, v in mapping["unmapped"].items())
    resumed = [
        f"{r['variant']}/seed{r['seed']} from step {r['resumed_from']}"
        for r in results
        if r["resumed_from"]
    ]
    command = " ".join(["python benchmarks/real_run.py", *args.argv])
    lines = [
        f"`{command}` on {platform.node()}: {os.cpu_count()} cores, one torch thread per run, "
        f"{dt.date.today().isoformat()}, Python {platform.python_version()}.",
        "",
        f"Data: {len(data.train)} train / {len(data.eval)} eval Billboard songs (split by song), "
        f"{mapping['frames']:,} frames; unmapped to the 61-class vocabulary: "
        f"{mapping['unmapped_share']:.2%} of frames ({unmapped}).",
        "",
        f"Config (the real tier's `model` and `train` overrides): `{json.dumps(REAL)}`.",
        "",
        f"Seeds {', '.join(map(str, seeds))}; scores are means over seeds (eval songs weighted "
        "by duration, as mir_eval's MIREX convention). `joint` is each variant's system "
        "output; `ar` has only seq_err (no timing). train s / score s / peak MB: per run, "
        "peak = process maxrss.",
        "",
        tabulate(
            rows, ["variant", "head", *COLUMNS, "train s", "score s", "peak MB"], tablefmt="github"
        ),
        "",
        f"Baselines: majority = the most frequent training class on every frame; chance = "
        f"segments with lengths drawn from the training chord runs, each a uniformly random "
        f"class of {DEFAULT_VOCAB.size}, mean of {CHANCE_DRAWS} draws.",
        "",
        "The study's hypotheses on these runs (difference a - b per seed; point estimates, "
        "no test):",
        "",
        tabulate(
            hypotheses(results),
            ["hypothesis", "metric", "a - b per seed", "holds"],
            tablefmt="github",
        ),
    ]
    if resumed:
        lines += ["", f"Resumed from checkpoints (times cover the rest): {'; '.join(resumed)}."]
    return "\n".join(lines)


def _mean(values: list[float | None], fmt: str) -> str:
    present = [v for v in values if v is not None]
    return format(statistics.fmean(present), fmt) if present else ""


def write_section(body: str) -> None:
    """Replace the text between the real markers (or append it), leaving the rest intact."""
    block = f"<!-- real -->\n{body.strip()}\n<!-- /real -->"
    text = DOC.read_text() if DOC.exists() else "# Benchmarks\n"
    pattern = re.compile(r"<!-- real -->.*?<!-- /real -->", re.S)
    text = pattern.sub(lambda _: block, text) if pattern.search(text) else f"{text}\n{block}\n"
    DOC.write_text(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", default="0", help="comma-separated seeds (default 0)")
    parser.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated")
    parser.add_argument("--resume", action="store_true", help="continue from checkpoints")
    parser.add_argument("--no-write", action="store_true", help="print, leave the docs alone")
    args = parser.parse_args()
    args.argv = [a for a in sys.argv[1:] if a != "--no-write"]
    data = load()
    results = []
    context = get_context("spawn")  # a fresh process per run: its own peak RSS, no shared state
    for seed in map(int, args.seeds.split(",")):
        for variant in args.variants.split(","):
            with ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
                result = pool.submit(run_variant, variant, seed, args.resume).result()
            print(json.dumps(result), flush=True)
            results.append(result)
    body = report(args, data, results, baselines(data))
    print(body)
    if not args.no_write:
        write_section(body)


if __name__ == "__main__":
    main()
