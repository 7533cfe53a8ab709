"""Score a trained model's heads the way the production pipeline does.

Each head's output goes through the same path as production: class ids -> Harte labels (with
the vocabulary's conversion, where a planted bug would sit) -> timed segments -> mir_eval. The
token-id accuracy is kept only as a `proxy` group, to show what a proxy would miss.

    metrics = score_heads(model, dataset.eval, parts=["ctc", "ar"])
    metrics["joint"]["labels"]["majmin"], metrics.failures

    fit(model, songs, config, seed=0, validate=selector(validation, {"ctc": "ctc/labels/majmin"}))
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence

import numpy as np

from harness.chords.decode import HeadOutputs, predict
from harness.chords.metrics import Estimate, evaluate, frames_to_segments
from harness.chords.model import ChordModel
from harness.chords.synthetic import Song
from harness.chords.train import trained_parts
from harness.chords.vocab import DEFAULT_VOCAB, Vocabulary
from harness.core.metrics import flatten, lower_is_better


class HeadMetrics(dict):
    """{head: {"alignment": {...}, "labels": {...}, "proxy": {...}}} plus `.failures`."""

    failures: list[dict]


def _token_acc(frames: np.ndarray, song: Song) -> tuple[int, int]:
    known = song.frames >= 0  # real songs mark unmappable frames with -1
    return int((frames[known] == song.frames[known]).sum()), int(known.sum())


def score_heads(model: ChordModel, songs: Sequence[Song], *, parts: Sequence[str],
                vocab: Vocabulary = DEFAULT_VOCAB, label_shift: int = 0,
                max_failure_rate: float = 0.05,
                heads: Collection[str] = ("ctc", "ar", "joint")) -> HeadMetrics:
    """mir_eval scores per head: `ctc` and `ar` for the trained parts, `joint` for the system.

    `label_shift` transposes the Harte conversion by semitones: a planted regression that
    token-id accuracy cannot see. `heads` limits the scoring (checkpoint selection needs only
    the heads it selects by).
    """
    outputs: list[HeadOutputs] = predict(model, songs, parts=parts)
    estimates: dict[str, list[Estimate]] = {"ctc": [], "ar": [], "joint": []}
    tokens: dict[str, list[tuple[int, int]]] = {"ctc": [], "joint": []}
    for song, out in zip(songs, outputs, strict=True):
        ref_intervals, ref_labels = song.reference(vocab)
        ref_sequence = vocab.labels([c for c in song.sequence if c >= 0])
        timed = {"ctc": out.ctc_frames, "joint": out.joint_frames}
        for head, frames in timed.items():
            if frames is None or head not in heads:
                continue
            intervals, labels = frames_to_segments(vocab.labels(frames, shift=label_shift),
                                                   song.frame_rate)
            sequence = (labels if head == "joint" else
                        vocab.labels(out.ctc_sequence, shift=label_shift))
            estimates[head].append(Estimate(song.id, ref_intervals, ref_labels, intervals, labels,
                                            ref_sequence, sequence))
            tokens[head].append(_token_acc(frames, song))
        if out.ar_sequence is not None and "ar" in heads:
            labels = vocab.labels(out.ar_sequence, shift=label_shift)
            estimates["ar"].append(Estimate(song.id, ref_intervals, ref_labels, None, labels,
                                            ref_sequence, labels))
    result = HeadMetrics()
    result.failures = []
    memo: dict = {}  # a CTC-only model's joint head is its CTC head: mir_eval scores it once
    for head, head_estimates in estimates.items():
        if not head_estimates:
            continue
        metrics, failures = evaluate(head_estimates, max_failure_rate=max_failure_rate,
                                     memo=memo)
        if tokens.get(head):
            correct, total = np.sum(tokens[head], axis=0)
            metrics["proxy"] = {"token_acc": float(correct / max(total, 1))}
        result[head] = metrics
        result.failures.extend({**f, "sample": f"{head}:{f['sample']}"} for f in failures)
    return result


def selector(songs: Sequence[Song], metrics: Mapping[str, str], *,
             label_shift: int = 0) -> Callable[[ChordModel], dict[str, float]]:
    """``validate=`` for ``fit``: each trained part scored on ``songs`` by the metric named for it
    in ``metrics`` (``{"ctc": "ctc/labels/majmin", "ar": "ar/labels/seq_err"}``); errors and
    losses are negated, so that higher is always better, as fit expects."""

    def validate(model: ChordModel) -> dict[str, float]:
        parts = trained_parts(model)
        missing = [part for part in parts if part not in metrics]
        if missing:
            raise ValueError(f"checkpoint selection names no metric for part(s) {missing}; "
                             f"add them to the config's select metrics, e.g. "
                             f"{{'{missing[0]}': '{missing[0]}/labels/majmin'}}")
        needed = {metrics[part].split("/")[0] for part in parts}
        scores = flatten(score_heads(model, songs, parts=parts, label_shift=label_shift,
                                     heads=needed))
        result = {}
        for part in parts:
            name = metrics[part]
            if name not in scores:
                raise ValueError(f"checkpoint selection metric {name!r} (part {part!r}) is not "
                                 f"among the scores: {sorted(scores)}")
            result[part] = -scores[name] if lower_is_better(name) else scores[name]
        return result

    return validate
