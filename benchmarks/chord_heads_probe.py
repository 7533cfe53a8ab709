"""Probe of the chord-heads study outside pytest: metrics, hypothesis margins and run times.

For each noise level and seed it trains ctc_only, ar_only and combined exactly as the study does
(same init seed, same batches, frozen parts), scores every head with mir_eval through
``evaluation.score_heads``, and times each run's stages (data generation, fit, score = predict +
mir_eval) on one torch thread.

    python benchmarks/chord_heads_probe.py --sigmas 0.4,0.5 --seeds 10
    python benchmarks/chord_heads_probe.py --model read_frames=2 --train steps=60 --data n_train=512
"""

from __future__ import annotations

import argparse
import time
from collections import defaultdict

import numpy as np
import torch

from harness.chords.evaluation import score_heads
from harness.chords.model import ModelConfig, build_model
from harness.chords.synthetic import SyntheticConfig, make_dataset
from harness.chords.train import TrainConfig, fit

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sigmas", default="0.4,0.5")
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--model", default="", help="ModelConfig overrides, k=v,k=v")
    parser.add_argument("--train", default="", help="TrainConfig overrides")
    parser.add_argument("--data", default="", help="SyntheticConfig overrides")
    args = parser.parse_args()
    torch.set_num_threads(1)
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
