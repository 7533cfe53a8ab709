"""TinyCNN: which parts of a small CNN matter, in accuracy, loss curves and weight spectra.

The study (variants, seeds, tiers, claims) is declared in tinycnn.yaml; this module trains one
run. Every variant builds the same TinyCNN from the run's seed and switches parts off (width,
depth, batch norm, dropout) or changes training (weight decay), so the variants of a seed start
from identical weights (`run.init_model` records it). Each run logs its loss curve
(`run.log`, in the run's steps.jsonl) and returns accuracy, losses, the used parameter count
and each layer's top singular values (the scree data).

    pytest ablation_tests/test_tinycnn.py -k synthetic     # the CI gate's part
    pytest ablation_tests/test_tinycnn.py --real           # scikit-learn's digits
"""

from __future__ import annotations

from harness import ablation, load_study
from harness.tinycnn.fixtures import tinycnn_data_fixture  # noqa: F401
from harness.tinycnn.model import ModelConfig, TinyCNN
from harness.tinycnn.spectral import spectrum
from harness.tinycnn.train import TrainConfig, evaluate, fit

study = load_study("tinycnn.yaml")


def train_and_score(run, data):
    """One run: the seeded model, trained on the run's images, scored on the eval images."""
    config = run.config
    model = run.init_model(lambda: TinyCNN(ModelConfig(**config["model"]),
                                           in_channels=data.shape[0], classes=data.classes))
    train_config = TrainConfig(**config["train"])
    run.log.steps(train_config.steps)
    final_loss = fit(model, data.train_x, data.train_y, train_config, seed=run.seed,
                     log=lambda step, loss: run.log(step, loss=loss))
    scores = evaluate(model, data.eval_x, data.eval_y,
                      transpose=config.get("eval_transpose", False))
    return {"val": scores, "train": {"loss": final_loss},
            "model": {"params": model.used_parameters()},
            **spectrum(model.effective_weights(), config["spectral"]["topk"])}


@study
def test_tinycnn(run, tinycnn_data):
    return train_and_score(run, tinycnn_data)


# Known-answer controls, declared in Python on the YAML study's base config: an A/A pair, and a
# planted layout bug (eval images transposed) that the training loss curve cannot see.
controls = ablation(
    variants={"baseline": {}, "baseline_again": {}, "transposed_eval": {"eval_transpose": True}},
    seeds=4,  # the effects are exact (A/A) or huge (a transposed image is another pattern)
    base=study.base,
    tiers={"synthetic": {}},
    tables=study.tables,
)


@controls
def test_tinycnn_controls(run, tinycnn_data):
    return train_and_score(run, tinycnn_data)


controls.expect("baseline_again == baseline", metric="val/acc", margin=0)  # identical
controls.expect("transposed_eval < baseline", metric="val/acc", margin=0.1)


def test_synthetic_tinycnn_aa_pair_is_not_declared_different(ablation_results):
    results = ablation_results(controls)
    for claim in ("baseline_again > baseline", "baseline_again < baseline"):
        verdict = results.decide(claim, metric="val/acc")
        assert verdict.status != "supported", verdict.message()


def test_synthetic_tinycnn_transposed_eval_caught_by_accuracy_not_loss_curve(ablation_results):
    results = ablation_results(controls)
    accuracy = results.decide("transposed_eval >= baseline", metric="val/acc", margin=0.01)
    # training never sees the bug: the loss curve is the baseline's, bit for bit
    curve = results.decide("transposed_eval == baseline", metric="train/loss", margin=0)
    numbers = f"val/acc: {accuracy.message()}\ntrain/loss: {curve.message()}"
    assert accuracy.status == "contradicted", numbers
    assert curve.status == "supported", numbers
