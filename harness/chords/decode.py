"""Decoding: CTC frames and sequence, AR greedy sequence, monotonic alignment, joint decoding.

The system output ("joint" head) of a variant depends on the parts it trained:

- ctc only: the CTC per-frame argmax over non-blank classes. Not "fill blanks with the previous
  spike": CTC spikes sit mid-segment, so that shifts every boundary by half a segment.
- ar only: the AR sequence with uniform timing. The AR head outputs no timing: the distribution
  of segment starts it decodes with is internal state, deliberately not read as timing, so that
  the study compares timing sources (none vs the CTC alignment), not two aligners.
- both: the AR sequence timed by a monotonic (Viterbi) alignment to the CTC log-probs. This is
  what the combined variant adds; without it, its heads would just equal the single-part ones.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from harness.chords.model import ChordModel
from harness.chords.synthetic import Song
from harness.chords.train import Batches

NO_CHORD = 0  # the class of frames that no symbol covers (an empty sequence)


@dataclass(frozen=True)
class HeadOutputs:
    """One song's decoded outputs; a head's fields are None when its part was not decoded."""

    song_id: str
    ctc_frames: np.ndarray | None  # (T,) argmax over non-blank classes
    ctc_sequence: np.ndarray | None  # greedy CTC: repeats collapsed, blanks removed
    ar_sequence: np.ndarray | None  # greedy AR, up to EOS
    joint_frames: np.ndarray  # (T,) the variant's system output


def predict(
    model: ChordModel, songs: Sequence[Song], *, parts: Sequence[str], batch_size: int = 64
) -> list[HeadOutputs]:
    """Decode ``songs`` with the heads of ``parts`` and build each song's system output."""
    unknown = sorted(set(parts) - set(model.PARTS))
    if unknown or not parts:
        raise ValueError(f"parts must be a non-empty subset of {list(model.PARTS)}, got {parts}")
    data = Batches(songs)
    outputs = []
    with torch.no_grad():
        for start in range(0, len(songs), batch_size):
            index = torch.arange(start, min(start + batch_size, len(songs)))
            features, lengths, _, _ = data.take(index)
            ctc = model.ctc(features) if "ctc" in parts else None
            ar = model.ar.greedy(features, lengths) if "ar" in parts else None
            for row, i in enumerate(index.tolist()):
                log_probs = None if ctc is None else ctc[row, : lengths[row]].numpy()
                sequence = None if ar is None else np.array(ar[row], dtype=np.int64)
                outputs.append(_outputs(songs[i].id, log_probs, sequence, int(lengths[row]),
                                        blank_penalty=model.config.ctc_blank_penalty))
    return outputs


def _outputs(
    song_id: str, log_probs: np.ndarray | None, ar_sequence: np.ndarray | None, frames: int,
    *, blank_penalty: float = 0.0,
) -> HeadOutputs:
    ctc_frames = ctc_sequence = None
    if log_probs is not None:
        blank = log_probs.shape[1] - 1
        ctc_frames = log_probs[:, :blank].argmax(1)
        ctc_sequence = ctc_greedy(ctc_best_path(log_probs, blank_penalty), blank)
    if ar_sequence is None:
        joint = ctc_frames
    elif log_probs is None:
        joint = uniform_frames(ar_sequence, frames)
    else:
        joint = joint_frames(log_probs, ar_sequence)
    return HeadOutputs(song_id, ctc_frames, ctc_sequence, ar_sequence, joint)


def ctc_best_path(log_probs: np.ndarray, blank_penalty: float = 0.0) -> np.ndarray:
    """(T,) per-frame argmax of (T, C + 1) log-probs, the blank (last) lowered by ``blank_penalty``.

    A CTC head trained on long segments keeps the blank above every chord on most frames, so
    greedy decoding drops chords it ranks right (deletions); a penalty tuned on held-out train
    songs trades those deletions against insertions. It moves the sequence only: frame labels
    and alignments ignore the blank.
    """
    if not blank_penalty:
        return log_probs.argmax(1)
    scores = np.array(log_probs, dtype=np.float64)
    scores[:, -1] -= blank_penalty
    return scores.argmax(1)


def ctc_greedy(best_path: np.ndarray, blank: int) -> np.ndarray:
    """Collapse repeated symbols of the per-frame best path, then drop blanks."""
    keep = np.ones(len(best_path), dtype=bool)
    keep[1:] = best_path[1:] != best_path[:-1]
    collapsed = best_path[keep]
    return collapsed[collapsed != blank].astype(np.int64)


def uniform_frames(sequence: Sequence[int], frames: int) -> np.ndarray:
    """Spread ``sequence`` evenly over ``frames`` frames (at most one symbol per frame)."""
    sequence = np.asarray(sequence, dtype=np.int64)[:frames]
    if len(sequence) == 0:
        return np.full(frames, NO_CHORD, dtype=np.int64)
    starts = np.arange(len(sequence)) * frames // len(sequence)
    return sequence[np.searchsorted(starts, np.arange(frames), side="right") - 1]


def monotonic_align(log_probs: np.ndarray, sequence: Sequence[int]) -> np.ndarray:
    """(T,) frame classes: ``sequence`` laid over the frames by Viterbi.

    Each symbol occupies a contiguous run of at least one frame, in order, covering all frames;
    the alignment maximises the sum of the frames' log-probs (``log_probs``: (T, C), non-blank
    classes). With more symbols than frames, only the first T symbols are aligned (one frame
    each); an empty sequence gives N everywhere.
    """
    frames = len(log_probs)
    sequence = np.asarray(sequence, dtype=np.int64)[:frames]
    if len(sequence) == 0:
        return np.full(frames, NO_CHORD, dtype=np.int64)
    emissions = np.asarray(log_probs, dtype=np.float64)[:, sequence]  # (T, S)
    score = np.full(len(sequence), -np.inf)
    score[0] = emissions[0, 0]
    advanced = np.zeros((frames, len(sequence)), dtype=bool)  # frame t starts symbol j
    for t in range(1, frames):
        advance = np.concatenate([[-np.inf], score[:-1]])
        advanced[t] = advance > score
        score = np.maximum(score, advance) + emissions[t]
    states = np.empty(frames, dtype=np.int64)
    state = len(sequence) - 1
    for t in range(frames - 1, -1, -1):
        states[t] = state
        state -= advanced[t, state]
    return sequence[states]


def joint_frames(ctc_log_probs: np.ndarray, ar_sequence: Sequence[int]) -> np.ndarray:
    """The AR label sequence timed by the CTC alignment: what the combined variant adds.

    ``ctc_log_probs`` is (T, C + 1) with the blank last. The blank column is dropped without
    renormalising: that subtracts one constant per frame, which every path pays alike.
    """
    return monotonic_align(ctc_log_probs[:, :-1], ar_sequence)
