"""The flagship study: which head of a chord recognizer helps, CTC, AR or both?

Every variant is the same ChordModel from the same init seed; `parts` says which of its two
parts (CTC, AR) is trained, the other is frozen. `combined` trains both and decodes jointly:
the AR chord sequence timed by a monotonic alignment to the CTC frame posteriors. Scores are
mir_eval's, computed from Harte labels exactly as the production pipeline does.

    pytest ablation_tests -k synthetic -n 2     # the CI gate
    pytest ablation_tests --real                # the same study on McGill Billboard
"""

from __future__ import annotations

from harness import ablation
from harness.chords.evaluation import score_heads, selector
from harness.chords.fixtures import data_metrics
from harness.chords.model import ModelConfig, build_model
from harness.chords.train import TrainConfig, fit

TABLES = {
    "alignment": ["frame_acc", "seg", "overseg", "underseg"],
    "labels": ["root", "thirds", "majmin", "mirex", "sevenths", "tetrads", "seq_err"],
    "data": ["unmapped_share"],
    "selection": ["best_step"],  # real tier: the step whose weights each part kept
}
NOISE = [0.4, 0.5]  # per-frame decisions noisy, segment-level ones easy (docs/benchmarks.md)
SEEDS = 5  # paired t-test with Holm over 4 hypotheses: 5 seeds decide robustly

# Billboard chroma: ~21.5 frames/s, chords ~38 frames (median), songs of 3,000-6,000 frames.
# Wider kernels, training on 600-frame windows, windowed AR decoding, checkpoints every 100
# steps (an interrupted --real session resumes). Each part keeps its best weights of steps
# 150/300/450/600, by its own head's score on train songs held out from fitting (never the eval
# songs; per part, so combined's heads stay the single-part variants' heads). Measured in
# benchmarks/real_run.py.
# The CTC part: at frame rate (~52 frames per chord token) its blank posterior sat at ~0.97 on
# every frame and greedy decoding emitted nothing on any seed. One output per 8 frames (their
# mean; ~6.5 outputs per token) over 3 outputs (1.1 s), at its own learning rate 0.003, it
# learns to emit chords, and its frame labels get better too. Greedy decoding lowers the blank
# by 3 nats (the value that minimised ctc/labels/seq_err on the held-out train songs, over 5
# seeds; it changes no frame label or alignment). benchmarks/chord_heads_probe.py --real.
REAL = {
    "model": {"ctc_kernel": 3, "ctc_pool": 8, "ctc_blank_penalty": 3.0, "ar_kernel": 9,
              "read_frames": 8, "segment_rate": 0.03, "decode_frames": 600},
    "train": {"steps": 600, "batch_size": 16, "lr": 0.001, "part_lr": {"ctc": 0.003},
              "crop_frames": 600, "log_every": 50, "checkpoint_every": 100,
              "validate_every": 150},
    "select": {"held_out": 0.125,
               "metrics": {"ctc": "ctc/labels/majmin", "ar": "ar/labels/seq_err"}},
}


def train_and_score(run, chord_data):
    """One run: fresh model from the run's seed, train the variant's parts, score every head."""
    config = run.config
    model_config = ModelConfig(feature_dim=chord_data.feature_dim, **config.get("model", {}))
    model = build_model(model_config, seed=run.seed, train_parts=config["parts"])
    train_config = TrainConfig(**config.get("train", {}))
    songs, validate = chord_data.train, None
    if "select" in config:  # best checkpoint per part, on train songs held out from fitting
        songs, validation = chord_data.held_out(config["select"]["held_out"])
        validate = selector(validation, config["select"]["metrics"])
    run.log.steps(train_config.steps)
    trained = fit(model, songs, train_config, seed=run.seed, validate=validate,
                  log=lambda step, values: run.log(step, **values),
                  checkpoint=run.checkpoint if train_config.checkpoint_every else None)
    metrics = score_heads(model, chord_data.eval, parts=config["parts"],
                          label_shift=config.get("label_shift", 0))
    for part in config["parts"]:
        if f"best_step/{part}" in trained:
            metrics[part]["selection"] = {"best_step": trained[f"best_step/{part}"]}
    extra = data_metrics(chord_data)  # real tier: frames the vocabulary cannot map
    if extra:
        metrics["data"] = extra
    return metrics


heads = ablation(
    variants={
        "ctc_only": {"parts": ["ctc"]},
        "ar_only": {"parts": ["ar"]},
        "combined": {"parts": ["ctc", "ar"]},
    },
    seeds=SEEDS,
    # On Billboard, with a CTC head that learns, joint decoding and the CTC frames are close
    # (per-seed majmin differences of about 0.013 SD): 10 seeds decide the non-inferiority
    # claim where 5 left it open (docs/benchmarks.md#real).
    tier_seeds={"real": 10},
    tiers={"synthetic": {"noise_sigma": NOISE}, "real": {"dataset": ["billboard"]}},
    tier_config={"real": REAL},
    tables=TABLES,
)


@heads
def test_chord_heads(run, chord_data):
    return train_and_score(run, chord_data)


# Joint decoding gives cleaner labels than per-frame CTC decisions on synthetic data, whose
# frames are noisy by construction ...
heads.expect("combined >= ctc_only", metric="joint/labels/majmin", margin=0.01,
             tiers=["synthetic"])
# ... while on Billboard chroma, once the CTC head learns, joint decoding ties the CTC frames
# within 2 points: found exploring 5 and 10 seeds (diffs -0.001 and -0.003), claimed here and
# checked on fresh seeds (docs/benchmarks.md#real).
heads.expect("combined == ctc_only", metric="joint/labels/majmin", margin=0.02, tiers=["real"])
# ... and real timing, which the AR head alone does not have.
heads.expect("combined > ar_only", metric="joint/alignment/seg")
# Nothing is shared: combined's heads are exactly the single-head variants' heads (margin 0
# claims identity: equal values on every seed, checked without a test).
heads.expect("combined == ctc_only", metric="ctc/labels/majmin", margin=0,
             name="combined_ctc_head==ctc_only")
heads.expect("combined == ar_only", metric="ar/labels/seq_err", margin=0,
             name="combined_ar_head==ar_only")
# Against a baseline session (--ablation-baseline, e.g. main's CI store): no variant's system
# output may lose half a point of mir_eval majmin or of segmentation quality, seed by seed.
heads.guard("joint/labels/majmin", margin=0.005)
heads.guard("joint/alignment/seg", margin=0.005)


# Known-answer controls: an A/A pair and a planted regression, at one noise level.
controls = ablation(
    variants={
        "ctc_only": {"parts": ["ctc"]},
        "ctc_again": {"parts": ["ctc"]},  # A/A: the same config under another name
        "semitone_bug": {"parts": ["ctc"], "label_shift": 1},  # Harte labels one semitone up
    },
    seeds=3,  # the controls' effects are exact (A/A) or huge (a semitone off)
    tiers={"synthetic": {"noise_sigma": NOISE[:1]}},
    tables={**TABLES, "proxy": ["token_acc"]},
)


@controls
def test_chord_controls(run, chord_data):
    return train_and_score(run, chord_data)


controls.expect("ctc_again == ctc_only", metric="joint/labels/majmin", margin=0)  # identical
controls.expect("semitone_bug < ctc_only", metric="joint/labels/majmin", margin=0.1)


def test_synthetic_aa_pair_is_not_declared_different(ablation_results):
    results = ablation_results(controls)
    for claim in ("ctc_again > ctc_only", "ctc_again < ctc_only"):
        verdict = results.decide(claim, metric="joint/labels/majmin")
        assert verdict.status != "supported", verdict.message()


def test_synthetic_planted_regression_caught_by_mir_eval_not_token_accuracy(ablation_results):
    results = ablation_results(controls)
    production = results.decide("semitone_bug >= ctc_only", metric="joint/labels/majmin",
                                margin=0.01)
    # token ids do not move when the labels are shifted: the proxy calls the bug identical
    proxy = results.decide("semitone_bug == ctc_only", metric="joint/proxy/token_acc", margin=0)
    numbers = (f"mir_eval majmin: {production.message()}\n"
               f"token-accuracy proxy: {proxy.message()}")
    assert production.status == "contradicted", numbers
    assert proxy.status == "supported", numbers
