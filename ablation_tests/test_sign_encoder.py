"""Text-to-sign: does fine-tuning the pretrained text encoder help, and does EMA?

Every variant is the same SignModel (a text encoder and a pose decoder) from the same init per
seed, its encoder loaded from one pretraining stage per seed (computed once, shared by every
variant). `baseline` keeps the encoder frozen and evaluates an exponential moving average of the
weights; `encoder_finetuned` trains the encoder too; `no_ema` evaluates the raw weights. Scores
are pose errors of the produced sign sequences against clean references (DTW-MJE, MPJPE, in
shoulder widths; PCK).

    pytest ablation_tests/test_sign_encoder.py -k synthetic -n 2   # quick, in the CI gate
    pytest ablation_tests/test_sign_encoder.py --tier full -n 2    # the full scale (opt-in)

The synthetic world makes both claims true by construction (harness/signs/lexicon.py): text
pretraining sees a view of each word shifted away from how it is signed, which a frozen
encoder cannot undo; training poses carry jitter and SGD runs at a high constant rate, so the
raw weights are noisy and their average is better.
"""

from __future__ import annotations

from harness import ablation
from harness.signs.evaluation import score
from harness.signs.fixtures import SignData, sign_data_fixture  # noqa: F401
from harness.signs.model import build_model
from harness.signs.pretrain import PretrainConfig, pretrain_encoder
from harness.signs.train import TrainConfig, fit

METRIC = "pose/dtw_mje"  # the production score: lower is better
TABLES = {"pose": ["dtw_mje", "mpjpe", "pck"], "train": ["loss"], "pretrain": ["loss"]}
MINIMIZE = ["dtw_mje", "mpjpe"]
SEEDS = 5  # effects of 15-25% with paired SDs of ~4%: 5 seeds decide both claims robustly

# Quick scale: 256 words, 512 training sentences, 400 SGD steps (~0.2 s a run on one thread).
BASE = {
    "lexicon": {"words": 256, "text_dim": 16, "sign_dim": 6, "frames": 6, "shift": 0.15},
    "corpus": {"train": 512, "eval": 128, "words": 4, "jitter": 0.4},
    "model": {"encoder_hidden": 64, "decoder_hidden": 64},
    "pretrain": {"steps": 300, "lr": 0.1, "momentum": 0.9},
    "train": {"steps": 400, "batch_size": 4, "lr": 2.0, "clip": 1.0, "ema_decay": 0.98,
              "log_every": 50, "checkpoint_every": 200},
    "freeze_encoder": True,
}
# Full scale: 4x the vocabulary, longer sentences, 4x wider nets, 20x the steps (~10 s a run on
# one thread), checkpoints every 1,000 steps (an interrupted session resumes where it stopped).
FULL = {
    "lexicon": {"words": 1024, "text_dim": 32, "sign_dim": 8, "frames": 8},
    "corpus": {"train": 4096, "eval": 512, "words": 6},
    "model": {"encoder_hidden": 256, "decoder_hidden": 256},
    "pretrain": {"steps": 2000, "checkpoint_every": 500},
    "train": {"steps": 8000, "batch_size": 8, "log_every": 200, "checkpoint_every": 1000},
}


def train_and_score(run, sign_data: SignData) -> dict:
    """One run: the seed's pretrained encoder (a shared stage), the variant's trainable parts
    and averaging, then pose errors on clean eval sentences."""
    config = run.config
    lexicon, corpus = sign_data.lexicon, sign_data.corpus
    model_config = sign_data.model_config(config["model"])
    pretrain = PretrainConfig(**config["pretrain"])

    def pretrained(checkpoint):
        # not logged through run.log: the stage is shared, and its steps would land in the
        # log of whichever run happens to compute it (its final loss is a metric instead)
        return pretrain_encoder(lexicon, model_config, pretrain, seed=run.seed,
                                checkpoint=checkpoint)

    # what pretraining depends on: never whether the encoder is frozen later, nor the EMA
    encoder = run.stage("pretrain", pretrained,
                        only=["lexicon", "model/encoder_hidden", "pretrain"])
    model = run.init_model(lambda: build_model(model_config, encoder=encoder["weights"],
                                               freeze_encoder=config["freeze_encoder"]))
    train = TrainConfig(**config["train"])
    run.log.steps(train.steps)
    trained = fit(model, lexicon.text, corpus.train, train, seed=run.seed,
                  log=lambda step, values: run.log(step, **values), checkpoint=run.checkpoint)
    metrics = score(model, trained, lexicon.text, corpus.eval)
    metrics["pretrain"] = {"loss": float(encoder["loss"])}
    return metrics


signs = ablation(
    variants={
        "baseline": {},  # frozen encoder, EMA of the decoder's weights
        "encoder_finetuned": {"freeze_encoder": False},
        "no_ema": {"train": {"ema_decay": None}},
    },
    seeds=SEEDS,
    tiers={"synthetic": {}, "full": {}},
    base=BASE,
    tier_config={"full": FULL},
    opt_in=["full"],
    tables=TABLES,
    minimize=MINIMIZE,
)


@signs
def test_sign_encoder(run, sign_data):
    return train_and_score(run, sign_data)


# Fine-tuning recovers what the shifted pretraining task left out of the encoder ...
signs.expect("encoder_finetuned < baseline", metric=METRIC, margin=0.005)
# ... and averaging the noisy weights beats shipping the last raw ones.
signs.expect("baseline < no_ema", metric=METRIC, margin=0.005)
# Against a baseline session (--ablation-baseline): no variant may lose 0.005 shoulder widths.
signs.guard(METRIC, margin=0.005)


# Known-answer controls: an A/A pair and a planted EMA bug.
controls = ablation(
    variants={
        "baseline": {},
        "baseline_again": {},  # A/A: the same config under another name
        # the decay written in BatchNorm's momentum convention (the weight of the *new* value):
        # the "average" follows the raw weights, so this is no_ema in disguise
        "ema_momentum_bug": {"train": {"ema_decay": 0.02}},
    },
    seeds=3,  # the A/A pair is exact, the bug's effect ~16% with a paired SD of ~3%
    tiers={"synthetic": {}},
    base=BASE,
    tables=TABLES,
    minimize=MINIMIZE,
)


@controls
def test_sign_controls(run, sign_data):
    return train_and_score(run, sign_data)


controls.expect("baseline_again == baseline", metric=METRIC, margin=0)  # identical
controls.expect("ema_momentum_bug > baseline", metric=METRIC, margin=0.005)


def test_synthetic_aa_pair_is_not_declared_different(ablation_results):
    results = ablation_results(controls)
    for claim in ("baseline_again > baseline", "baseline_again < baseline"):
        verdict = results.decide(claim, metric=METRIC)
        assert verdict.status != "supported", verdict.message()


def test_synthetic_ema_bug_caught_by_pose_error_not_training_loss(ablation_results):
    results = ablation_results(controls)
    production = results.decide("ema_momentum_bug <= baseline", metric=METRIC, margin=0.005)
    # the EMA never touches the raw weights: the training loss is bitwise the baseline's
    loss = results.decide("ema_momentum_bug == baseline", metric="train/loss", margin=0)
    numbers = f"DTW-MJE: {production.message()}\ntraining loss: {loss.message()}"
    assert production.status == "contradicted", numbers
    assert loss.status == "supported", numbers
