"""Synthetic chord songs: segment sequences rendered as noisy, QR-orthogonal class embeddings.

Each class gets a unit-norm embedding; the embeddings are orthonormal (QR of a Gaussian matrix),
so every pair of classes is equally far apart (sqrt 2) and no class is easier than another. A
song is a sequence of segments (no two identical neighbours, as CTC needs), each lasting a few
frames; a frame's features are its class embedding plus i.i.d. Gaussian noise of standard
deviation ``noise_sigma`` in every dimension.

Why noise per dimension, unscaled: with orthonormal embeddings the noise outside the span of two
embeddings cannot confuse them: a frame lies nearer to one given wrong class than to its own with
probability Q(1 / (sigma sqrt 2)) whatever ``feature_dim`` is. ``noise_sigma`` is thus a
signal-to-noise knob that means the same at any dimension; only the number of classes changes the
totals.

Oracle accuracy of the nearest embedding on the default config (61 classes, 64 dims, 3-10 frames
a segment), per frame and per segment (frames of a segment averaged first), 288 songs, seed 0:

==============  =========  ===========
noise_sigma     frame      segment
==============  =========  ===========
0.25            0.93       1.00
0.5             0.39       0.97
1.0             0.11       0.57
1.5             0.07       0.30
2.0             0.05       0.19
==============  =========  ===========

(Chance is 1/61 = 0.016.) So 0.5 is the interesting regime for a temporal model: most single
frames are wrong, but segments are nearly solvable; at 1.0 and above even a perfect segmenter
loses many segments. Generating the default dataset (288 songs, ~18,000 frames) takes ~20 ms.

N (class 0) is rare, as in real songs: the first and the last segment are N each with probability
``edge_n_prob``, and N never appears inside a song (about 5% of segments by default).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from harness.chords.vocab import DEFAULT_VOCAB, Vocabulary


@dataclass(frozen=True)
class SyntheticConfig:
    num_classes: int = 61
    feature_dim: int = 64
    noise_sigma: float = 0.5
    min_segments: int = 6
    max_segments: int = 12
    min_frames: int = 3  # per segment
    max_frames: int = 10
    frame_rate: float = 10.0  # frames per second, for the intervals given to mir_eval
    n_train: int = 256
    n_eval: int = 32
    edge_n_prob: float = 0.25  # chance that the first (and, independently, last) segment is N


@dataclass(frozen=True, eq=False)
class Song:
    id: str  # e.g. "eval-0007"
    features: np.ndarray  # (frames, feature_dim) float32
    frames: np.ndarray  # (frames,) int64 class per frame
    sequence: np.ndarray  # (segments,) int64 class per segment, no identical neighbours
    intervals: np.ndarray  # (segments, 2) float64 seconds
    frame_rate: float

    @property
    def duration(self) -> float:
        return float(self.intervals[-1, 1])

    def reference(
        self, vocab: Vocabulary = DEFAULT_VOCAB, *, shift: int = 0
    ) -> tuple[np.ndarray, list[str]]:
        """The reference annotation as mir_eval wants it: (intervals, Harte labels)."""
        return self.intervals, vocab.labels(self.sequence, shift=shift)


@dataclass(frozen=True, eq=False)
class ChordDataset:
    train: list[Song]
    eval: list[Song]
    embeddings: np.ndarray  # (num_classes, feature_dim), shared by train and eval
    config: SyntheticConfig


def class_embeddings(num_classes: int, feature_dim: int, seed: int) -> np.ndarray:
    """(num_classes, feature_dim) orthonormal rows: the Q of a Gaussian matrix's QR."""
    if feature_dim < num_classes:
        # QR would silently return only feature_dim orthonormal vectors.
        raise ValueError(
            f"feature_dim={feature_dim} < num_classes={num_classes}: orthonormal class "
            f"embeddings need feature_dim >= num_classes; set feature_dim to at least {num_classes}"
        )
    gaussian = np.random.default_rng(seed).standard_normal((feature_dim, num_classes))
    q, _ = np.linalg.qr(gaussian)
    return q.T.copy()


def make_dataset(config: SyntheticConfig, *, seed: int, embedding_seed: int = 0) -> ChordDataset:
    """Train and eval songs from independent streams of ``seed``, sharing one set of embeddings."""
    embeddings = class_embeddings(config.num_classes, config.feature_dim, embedding_seed)
    train_rng, eval_rng = (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(2))
    return ChordDataset(
        train=_songs(config, embeddings, train_rng, "train", config.n_train),
        eval=_songs(config, embeddings, eval_rng, "eval", config.n_eval),
        embeddings=embeddings,
        config=config,
    )


def _songs(
    config: SyntheticConfig, embeddings: np.ndarray, rng: np.random.Generator, split: str, n: int
) -> list[Song]:
    """Generate ``n`` songs at once (vectorised over all their segments and frames)."""
    if n == 0:
        return []
    n_chords = config.num_classes - 1  # classes other than N
    n_segments = rng.integers(config.min_segments, config.max_segments + 1, size=n)
    song_end = np.cumsum(n_segments)  # in segments, exclusive
    song_start = song_end - n_segments
    # A random walk mod n_chords with steps in 1..n_chords-1 never repeats a chord; a song's
    # first step is 0..n_chords-1, which makes its first chord uniform.
    steps = rng.integers(1, n_chords, size=n_segments.sum())
    steps[song_start] = rng.integers(0, n_chords, size=n)
    sequence = np.cumsum(steps) % n_chords + 1
    sequence[song_start[rng.random(n) < config.edge_n_prob]] = 0
    sequence[(song_end - 1)[rng.random(n) < config.edge_n_prob]] = 0

    lengths = rng.integers(config.min_frames, config.max_frames + 1, size=sequence.size)
    frames = np.repeat(sequence, lengths)
    noise = rng.standard_normal((frames.size, config.feature_dim), dtype=np.float32)
    features = embeddings.astype(np.float32)[frames] + np.float32(config.noise_sigma) * noise

    # Frame counts are integers until the final division, so a segment starts exactly where the
    # previous one ends.
    end_frame = np.cumsum(lengths)
    song_offset = np.repeat(np.concatenate([[0], end_frame[song_end[:-1] - 1]]), n_segments)
    end_frame -= song_offset
    intervals = np.stack([end_frame - lengths, end_frame], axis=1) / config.frame_rate

    segment_bounds, frame_bounds = song_end[:-1], song_offset[song_end[:-1]]
    return [
        Song(f"{split}-{i:04d}", feats, frs, seq, ivs, config.frame_rate)
        for i, (feats, frs, seq, ivs) in enumerate(
            zip(
                np.split(features, frame_bounds),
                np.split(frames, frame_bounds),
                np.split(sequence, segment_bounds),
                np.split(intervals, segment_bounds),
                strict=True,
            )
        )
    ]
