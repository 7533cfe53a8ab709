"""Probe of the chord-heads study outside pytest: metrics, hypothesis margins and run times.

For each noise level and seed it trains ctc_only, ar_only and combined exactly as the study does
(same init seed, same batches, frozen parts), scores every head with mir_eval through
``evaluation.score_heads``, and times each run's stages (data generation, fit, score = predict +
mir_eval) on one torch thread.

    python benchmarks/chord_heads_probe.py --sigmas 0.4,0.5 --seeds 10
    python benchmarks/chord_heads_probe.py --model read_frames=2 --train steps=60 --data n_train=512

With --real it diagnoses the CTC part on McGill Billboard instead: trained alone with the real
tier's config (plus --model/--train overrides), it is scored every 150 steps on the train songs
held out for checkpoint selection (never eval songs): the blank's mean posterior and the share
of frames where the blank wins, chords emitted by greedy decoding against the reference count,
their sequence error and the frame accuracy. At the end, the sequence error of the weights that
checkpoint selection keeps (as in the study) for each --penalties value: the decoding blank
penalty is tuned there.

    python benchmarks/chord_heads_probe.py --real --seeds 5 --model ctc_pool=1,ctc_kernel=9 \
        --train part_lr=0                # the unpooled head of before: blank on every frame
    python benchmarks/chord_heads_probe.py --real --seeds 5 --penalties 0,1,2,2.5,3,3.5,4
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch

from harness.chords.decode import ctc_best_path, ctc_greedy
from harness.chords.evaluation import score_heads, selector
from harness.chords.metrics import edit_distance
from harness.chords.model import ModelConfig, build_model
from harness.chords.synthetic import Song, SyntheticConfig, make_dataset
from harness.chords.train import Batches, TrainConfig, fit

REPO = Path(__file__).resolve().parents[1]

VARIANTS = {"ctc_only": ("ctc",), "ar_only": ("ar",), "combined": ("ctc", "ar")}
METRICS = {"majmin": "labels", "seg": "alignment", "frame_acc": "alignment", "seq_err": "labels"}


def overrides(text: str) -> dict[str, int | float]:
    """'a=1,b=0.5' -> {'a': 1, 'b': 0.5}."""
    pairs = (item.split("=") for item in text.split(",") if item)
    return {key: float(value) if "." in value else int(value) for key, value in pairs}


def run(data: SyntheticConfig, model: ModelConfig, train: TrainConfig, seed: int, parts: tuple):
    """One run as the study does it; returns (per-head metrics, seconds per stage)."""
    clock = [time.perf_counter()]
    dataset = make_dataset(data, seed=seed)
    clock.append(time.perf_counter())
    chords = build_model(model, seed=seed, train_parts=parts)
    fit(chords, dataset.train, train, seed=seed)
    clock.append(time.perf_counter())
    metrics = score_heads(chords, dataset.eval, parts=parts)  # predict + mir_eval
    clock.append(time.perf_counter())
    stages = dict(zip(("data", "fit", "score"), np.diff(clock), strict=True))
    return metrics, {**stages, "total": clock[-1] - clock[0]}


def ctc_diagnosis(model, songs: list[Song], penalty: float = 0.0) -> dict[str, float]:
    """How far the CTC part is off the blank on ``songs``: blank posterior and wins, chords
    emitted by greedy decoding (with ``penalty`` off the blank) and their sequence error."""
    features, lengths, _, _ = Batches(songs).take(np.arange(len(songs)))
    with torch.no_grad():
        log_probs = model.ctc(features).numpy()
    blank = log_probs.shape[2] - 1
    blanks, wins, edits, emitted, correct, known = [], 0, 0, 0, 0, 0
    for row, song in enumerate(songs):
        frames = log_probs[row, : lengths[row]]
        blanks.append(np.exp(frames[:, blank]))
        wins += int((frames.argmax(1) == blank).sum())
        sequence = ctc_greedy(ctc_best_path(frames, penalty), blank)
        edits += edit_distance([c for c in song.sequence if c >= 0], sequence.tolist())
        emitted += len(sequence)
        mapped = song.frames >= 0
        correct += int((frames[:, :blank].argmax(1)[mapped] == song.frames[mapped]).sum())
        known += int(mapped.sum())
    chords = sum(int((song.sequence >= 0).sum()) for song in songs)
    posterior = np.concatenate(blanks)
    return {"blank_mean": float(posterior.mean()), "blank_wins": wins / len(posterior),
            "emitted": emitted, "chords": chords, "seq_err": edits / chords,
            "frame_acc": correct / known}


def real_ctc(args: argparse.Namespace) -> None:
    """--real: the CTC part's training curve and blank statistics on held-out train songs."""
    sys.path.insert(0, str(REPO))
    from ablation_tests.test_chord_heads import REAL
    from harness.chords.fixtures import real_data

    data = real_data((REPO / "../shared/data/billboard").resolve(),
                     REPO / ".ablation" / "cache" / "billboard")
    fit_songs, validation = data.held_out(REAL["select"]["held_out"])
    model_config = ModelConfig(feature_dim=data.feature_dim,
                               **{**REAL["model"], **overrides(args.model)})
    train = {**REAL["train"], "checkpoint_every": 0, "log_every": 150, **overrides(args.train)}
    if not train["part_lr"]:  # part_lr=0: the shared lr, as before per-part rates
        train["part_lr"] = {}
    train_config = TrainConfig(**train)
    penalties = [float(p) for p in args.penalties.split(",")]
    print(model_config, train_config, sep="\n")
    at_penalty = defaultdict(list)
    for seed in range(args.seeds):
        model = build_model(model_config, seed=seed, train_parts=["ctc"])

        def log(step: int, values: dict, model=model, seed=seed) -> None:
            d = ctc_diagnosis(model, validation)
            print(f"seed {seed} step {step:4d} loss {values['loss/ctc']:.3f} blank posterior "
                  f"{d['blank_mean']:.3f}, wins {d['blank_wins']:.1%} of frames; emitted "
                  f"{d['emitted']}/{d['chords']} chords, seq_err {d['seq_err']:.3f}; frame acc "
                  f"{d['frame_acc']:.3f}", flush=True)

        select = selector(validation, {"ctc": REAL["select"]["metrics"]["ctc"]})
        kept = fit(model, fit_songs, train_config, seed=seed, log=log, validate=select)
        print(f"seed {seed}: kept the weights of step {kept['best_step/ctc']}")
        for penalty in penalties:
            at_penalty[penalty].append(ctc_diagnosis(model, validation, penalty)["seq_err"])
    print(f"\nseq_err of the kept weights' greedy decoding by blank penalty, {args.seeds} seeds:")
    for penalty, values in at_penalty.items():
        print(f"  {penalty:4.1f}: {_summary(values)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sigmas", default="0.4,0.5")
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--model", default="", help="ModelConfig overrides, k=v,k=v")
    parser.add_argument("--train", default="", help="TrainConfig overrides")
    parser.add_argument("--data", default="", help="SyntheticConfig overrides")
    parser.add_argument("--real", action="store_true", help="diagnose the CTC part on Billboard")
    parser.add_argument("--penalties", default="0,1,2,3,4", help="--real: blank penalties")
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.real:
        real_ctc(args)
        return
    model, train = ModelConfig(**overrides(args.model)), TrainConfig(**overrides(args.train))
    print(model, train, sep="\n")
    for sigma in map(float, args.sigmas.split(",")):
        data = SyntheticConfig(**{"noise_sigma": sigma, **overrides(args.data)})
        values = defaultdict(list)  # (variant, head, metric) -> one value per seed
        for seed in range(args.seeds):
            for variant, parts in VARIANTS.items():
                metrics, seconds = run(data, model, train, seed, parts)
                for stage, value in seconds.items():
                    values[variant, "time", stage].append(value)
                for head, groups in metrics.items():
                    for name, group in METRICS.items():
                        if name in groups.get(group, {}):
                            values[variant, head, name].append(groups[group][name])
        print(f"\n== noise_sigma {sigma}, {args.seeds} seeds: mean +- std (min..max)")
        for (variant, head, name), xs in values.items():
            print(f"{variant:9} {head:6} {name:9} {_summary(xs)}")
        print("hypotheses (paired differences per seed):")
        claims = [
            ("combined - ctc_only  joint majmin", "combined", "ctc_only", "joint", "majmin"),
            ("combined - ar_only   joint seg   ", "combined", "ar_only", "joint", "seg"),
            ("combined - ctc_only  ctc majmin  ", "combined", "ctc_only", "ctc", "majmin"),
            ("combined - ar_only   ar seq_err  ", "combined", "ar_only", "ar", "seq_err"),
        ]
        for label, a, b, head, name in claims:
            diff = np.subtract(values[a, head, name], values[b, head, name])
            print(f"  {label} {_summary(diff)}")


def _summary(xs) -> str:
    xs = np.asarray(xs, dtype=float)
    std = xs.std(ddof=1) if len(xs) > 1 else 0.0
    return f"{xs.mean():7.3f} +- {std:.3f} ({xs.min():.3f}..{xs.max():.3f})"


if __name__ == "__main__":
    main()
