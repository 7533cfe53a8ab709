"""Real chord data: the McGill Billboard 2.0 release (NNLS Chordino chroma + Harte annotations).

Reads the release's own layout under a root folder, so the 100-song subset in shared/data and the
full release (890 slots) load alike::

    ROOT/billboard-2.0-chordino/NNNN/bothchroma.csv   filename (row 1 only), time, 24 chroma
    ROOT/billboard-2.0.1-lab/NNNN/full.lab            start <tab> end <tab> Harte label

A song becomes a ``RealSong``: a ``synthetic.Song`` (so models, training and decoding work
unchanged) that also carries the original annotation for mir_eval (``ref_intervals``,
``ref_labels``, returned by ``reference()``) and what the vocabulary made of it.

Frame labels: each frame takes the label of the .lab segment that contains the frame's time (the
time column of the CSV, the frame's start), reduced by ``Vocabulary.reduce``. Frames it cannot
map get class -1 (to be ignored by losses) and are counted by reason: the label's quality when
reduce gives None (``X``), ``invalid`` for a label mir_eval rejects, ``unannotated`` for a frame
outside every segment (the chroma often runs past the annotation's end). An invalid label is not
fatal, since one typo must not kill a long job: it is listed in ``issues`` with file:line and is X
in ``ref_labels``, so mir_eval skips it too. A structurally malformed file is a ``DataError``.
``sequence``/``intervals`` are the runs of mapped frames; runs of -1 are dropped, and equal
neighbours left around them merged, since CTC targets must not repeat a class.

Caching: parsing a CSV costs ~10 ms a song, several times everything else. Only the parsed
chroma (float32 features, float64 times) is cached, as an uncompressed .npz (compressed saves a
quarter of the disk and loads 4x slower) named by the sha1 of the CSV's bytes, so a changed file
never hits a stale entry. Labels are recomputed on every load from full.lab (~1 ms a song): a
change in the annotation, the vocabulary or its reduction code can thus never be served stale,
which a key over "the vocabulary's definition" could not promise. Measured on 100 songs (2 busy
cores): 1.5 s parsing, 0.3-0.5 s from the cache, +60 MB peak memory for 42 MB of features.
"""

from __future__ import annotations

import csv
import hashlib
import io
import math
import os
import re
import tempfile
import zipfile
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import mir_eval.chord
import numpy as np

from harness.chords.synthetic import Song
from harness.chords.vocab import DEFAULT_VOCAB, ROOTS, X_LABEL, Vocabulary

CHROMA_DIR = "billboard-2.0-chordino"
LAB_DIR = "billboard-2.0.1-lab"
CHROMA_FILE = "bothchroma.csv"
LAB_FILE = "full.lab"
CHROMA_DIM = 24  # 12 bass then 12 treble chroma
OVERLAP_TOLERANCE = 1e-3  # seconds; .lab times are rounded, and 1 ms is far below a frame
CACHE_FORMAT = b"billboard-chroma-v1\n"  # part of the cache key: bump it when the .npz changes

ROOT_HINT = (
    "Point pytest-ablation at a McGill Billboard 2.0 copy with --billboard-root PATH, the "
    "ABLATION_BILLBOARD_ROOT environment variable or the `billboard_root` ini value; PATH must "
    f"hold {CHROMA_DIR}/NNNN/{CHROMA_FILE} and {LAB_DIR}/NNNN/{LAB_FILE}."
)

_ROOT = re.compile(r"^[A-G][#b]*")


class DataError(Exception):
    """Missing or malformed Billboard data; the message names the path (and line) and the fix."""


@dataclass(frozen=True, eq=False)
class RealSong(Song):
    times: np.ndarray  # (frames,) float64 start time of each frame, from the CSV
    ref_intervals: np.ndarray  # (segments, 2) float64 seconds, from full.lab
    ref_labels: list[str]  # original Harte labels of full.lab (invalid ones replaced by X)
    reductions: dict[str, int]  # mapped frames per "annotated quality -> vocabulary quality"
    unmapped: dict[str, int]  # frames of class -1 per reason (X, invalid, unannotated)
    issues: list[str]  # "path:line: problem" for each invalid label

    def reference(
        self, vocab: Vocabulary = DEFAULT_VOCAB, *, shift: int = 0
    ) -> tuple[np.ndarray, list[str]]:
        """The original annotation (not its reduction), roots transposed up by ``shift``."""
        return self.ref_intervals, [_transpose(label, shift) for label in self.ref_labels]


def find_songs(root: Path) -> list[str]:
    """Sorted ids (``NNNN``) of the songs that have both a chroma CSV and a .lab file.

    The full release has slots without annotation; those are skipped, not errors.
    """
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DataError(f"Billboard data not found: {root} is not a folder. {ROOT_HINT}")
    ids = []
    for sub, name in ((CHROMA_DIR, CHROMA_FILE), (LAB_DIR, LAB_FILE)):
        if not (root / sub).is_dir():
            raise DataError(f"{root} is not a Billboard 2.0 root: no {root / sub}. {ROOT_HINT}")
        ids.append({p.parent.name for p in (root / sub).glob(f"*/{name}")})
    songs = sorted(ids[0] & ids[1])
    if not songs:
        raise DataError(
            f"no song under {root} has both {CHROMA_DIR}/NNNN/{CHROMA_FILE} and "
            f"{LAB_DIR}/NNNN/{LAB_FILE} (chroma for {len(ids[0])}, labels for {len(ids[1])}). "
            f"{ROOT_HINT}"
        )
    return songs


def load_song(
    root: Path, song_id: str, vocab: Vocabulary = DEFAULT_VOCAB, *, cache_dir: Path | None = None
) -> RealSong:
    """One song: chroma from the CSV (or the cache), frame labels sampled from full.lab."""
    root = Path(root).expanduser()
    chroma = root / CHROMA_DIR / song_id / CHROMA_FILE
    times, features = _chroma(chroma, _read(chroma, song_id), cache_dir)
    lab = root / LAB_DIR / song_id / LAB_FILE
    ref_intervals, raw_labels, lines = _parse_lab(lab, _read(lab, song_id))
    by_label = {label: _reduce(vocab, label) for label in set(raw_labels)}  # labels repeat
    class_of = {label: r if isinstance(r, int) else -1 for label, r in by_label.items()}
    segment_class = np.array([class_of[label] for label in raw_labels], dtype=np.int64)

    segment = np.searchsorted(ref_intervals[:, 0], times, side="right") - 1
    inside = (segment >= 0) & (times < ref_intervals[np.maximum(segment, 0), 1])
    frames = np.where(inside, segment_class[segment], -1)

    counts = np.bincount(segment[inside], minlength=len(raw_labels)).tolist()
    per_label: Counter[str] = Counter()
    for label, count in zip(raw_labels, counts, strict=True):
        per_label[label] += count
    reductions: Counter[str] = Counter()
    unmapped: Counter[str] = Counter({"unannotated": int((~inside).sum())})
    for label, count in per_label.items():
        result = by_label[label]
        if isinstance(result, str):
            unmapped["invalid"] += count
        elif result is None:
            unmapped[_quality(label)] += count
        elif count:
            reductions[f"{_quality(label)} -> {_quality(vocab.label(result))}"] += count
    issues = [
        f"{lab}:{line}: {label!r} is not a valid Harte label ({by_label[label]}); "
        f"its {count} frames are unmapped and it is X in ref_labels"
        for label, line, count in zip(raw_labels, lines, counts, strict=True)
        if isinstance(by_label[label], str)
    ]

    sequence, intervals = _runs(frames, times)
    return RealSong(
        id=song_id,
        features=features,
        frames=frames,
        sequence=sequence,
        intervals=intervals,
        frame_rate=(len(times) - 1) / float(times[-1] - times[0]),
        times=times,
        ref_intervals=_contiguous(ref_intervals),
        ref_labels=[X_LABEL if isinstance(by_label[lb], str) else lb for lb in raw_labels],
        reductions=dict(reductions),
        unmapped={k: v for k, v in unmapped.items() if v},
        issues=issues,
    )


def load_billboard(
    root: Path,
    vocab: Vocabulary = DEFAULT_VOCAB,
    *,
    cache_dir: Path | None,
    songs: Sequence[str] | None = None,
) -> list[RealSong]:
    """``songs`` (default: every complete song under ``root``), in the order given."""
    ids = find_songs(root) if songs is None else list(songs)
    return [load_song(root, song_id, vocab, cache_dir=cache_dir) for song_id in ids]


def split(
    song_ids: Sequence[str], *, eval_fraction: float = 0.2, seed: int = 0
) -> tuple[list[str], list[str]]:
    """(train, eval) ids, sorted. A song is eval when the hash of (seed, id) falls below
    ``eval_fraction``, so its side never depends on which other songs are present: adding songs
    to the collection never moves one across. The eval share is thus only close to the fraction.
    """
    if not 0 < eval_fraction < 1:
        raise ValueError(f"eval_fraction must be strictly between 0 and 1, got {eval_fraction}")
    train, evaluation = [], []
    for song_id in sorted(set(song_ids)):
        digest = hashlib.sha1(f"{seed}:{song_id}".encode()).digest()
        side = evaluation if int.from_bytes(digest[:8]) / 2**64 < eval_fraction else train
        side.append(song_id)
    if not train or not evaluation:
        raise ValueError(
            f"splitting {len(train) + len(evaluation)} songs with eval_fraction={eval_fraction}, "
            f"seed={seed} left one side empty (train {len(train)}, eval {len(evaluation)}); "
            "use more songs, another fraction or another seed"
        )
    return train, evaluation


def mapping_report(songs: Iterable[RealSong]) -> dict:
    """How the annotation was mapped to the vocabulary, summed over ``songs`` (in frames).

    ``reductions`` ("annotated quality -> vocabulary quality", qualities without the root, bass
    kept: ``min/b3 -> min``) and ``unmapped`` (reasons) are sorted by frames, most first.
    """
    songs = list(songs)
    reductions: Counter[str] = Counter()
    unmapped: Counter[str] = Counter()
    for song in songs:
        reductions.update(song.reductions)
        unmapped.update(song.unmapped)
    frames = sum(len(song.frames) for song in songs)
    return {
        "songs": len(songs),
        "frames": frames,
        "unmapped_frames": unmapped.total(),
        "unmapped_share": unmapped.total() / frames if frames else 0.0,
        "unmapped": dict(unmapped.most_common()),
        "reductions": dict(reductions.most_common()),
        "issues": [issue for song in songs for issue in song.issues],
    }


def _read(path: Path, song_id: str) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise DataError(
            f"{path} is missing: song {song_id} needs both its chroma CSV and its .lab file "
            "(find_songs lists the complete songs)"
        ) from None


def _chroma(path: Path, data: bytes, cache_dir: Path | None) -> tuple[np.ndarray, np.ndarray]:
    """(times, features) of a chroma CSV, from the cache when its bytes were seen before."""
    if cache_dir is None:
        return _parse_chroma(path, data)
    key = hashlib.sha1(CACHE_FORMAT + data).hexdigest()
    cache = Path(cache_dir) / f"{path.parent.name}-{key}.npz"
    try:
        with np.load(cache) as npz:
            return npz["times"], npz["features"]
    except (OSError, EOFError, KeyError, ValueError, zipfile.BadZipFile):
        pass  # absent, or damaged by a crash or a full disk: parse and rewrite
    times, features = _parse_chroma(path, data)
    cache.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=cache.parent, prefix=cache.stem, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, times=times, features=features)
        os.replace(tmp, cache)  # atomic: concurrent readers see the old or the whole new file
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return times, features


def _parse_chroma(path: Path, data: bytes) -> tuple[np.ndarray, np.ndarray]:
    """(times float64, features float32) of a CSV of rows "filename, time, 24 chroma".

    np.loadtxt's C parser, skipping the filename column, is the fastest numpy way here (~2x a
    manual split + np.array); only when it fails is the file scanned again to name the bad line.
    """
    try:
        table = np.loadtxt(
            io.StringIO(data.decode()), delimiter=",", quotechar='"', ndmin=2,
            usecols=range(1, 2 + CHROMA_DIM),
        )  # fmt: skip
    except (ValueError, UnicodeDecodeError):
        table = None
    if table is None or len(table) < 2:
        raise DataError(
            f"{_bad_csv_line(path, data)}; expected rows 'filename,time,"
            f"{CHROMA_DIM} chroma values' (filename on row 1 only), 2 rows at least"
        )
    times = table[:, 0]
    bad = ~np.isfinite(table).all(axis=1)
    bad[1:] |= np.diff(times) <= 0
    if bad.any():
        raise DataError(
            f"{path}:{np.argmax(bad) + 1}: a value is not finite or the time is not after the "
            "previous row's"
        )
    return times.copy(), table[:, 1:].astype(np.float32)  # a view would keep the whole table


def _bad_csv_line(path: Path, data: bytes) -> str:
    """The place and problem ("path:line: ...") of the chroma CSV line np.loadtxt rejected."""
    text = data.decode(errors="replace")
    for line, row in enumerate(csv.reader(io.StringIO(text)), 1):
        if not row:
            continue  # np.loadtxt skips blank lines too
        if len(row) != 2 + CHROMA_DIM:
            return f"{path}:{line}: {len(row)} fields instead of {2 + CHROMA_DIM}"
        try:
            list(map(float, row[1:]))
        except ValueError:
            return f"{path}:{line}: non-numeric value in {','.join(row[1:])[:60]!r}..."
    return f"{path}: fewer than 2 frames"


def _parse_lab(path: Path, data: bytes) -> tuple[np.ndarray, list[str], list[int]]:
    """(intervals, labels, line numbers) of a .lab file; blank lines are skipped."""
    intervals, labels, lines = [], [], []
    for line, text in enumerate(data.decode(errors="replace").splitlines(), 1):
        fields = text.split()
        if not fields:
            continue
        if len(fields) != 3:
            raise DataError(
                f"{path}:{line}: expected 3 fields 'start<TAB>end<TAB>label', got "
                f"{len(fields)}: {text!r}"
            )
        try:
            start, end = float(fields[0]), float(fields[1])
        except ValueError:
            raise DataError(f"{path}:{line}: start and end must be numbers: {text!r}") from None
        if not (math.isfinite(start) and math.isfinite(end) and 0 <= start <= end):
            raise DataError(f"{path}:{line}: need 0 <= start <= end: {text!r}")
        if intervals and start < intervals[-1][1] - OVERLAP_TOLERANCE:
            raise DataError(f"{path}:{line}: segment starts before the previous one ends: {text!r}")
        intervals.append((start, end))
        labels.append(fields[2])
        lines.append(line)
    if not labels:
        raise DataError(f"{path}: no segment (expected lines 'start<TAB>end<TAB>label')")
    return np.array(intervals, dtype=np.float64), labels, lines


def _contiguous(intervals: np.ndarray) -> np.ndarray:
    """Snap each start to the previous end: .lab times overlap by ~1e-13 s (rounding), which
    mir_eval refuses ("Chord Intervals must not overlap"). Frames are sampled from the raw times."""
    snapped = intervals.copy()
    snapped[1:, 0] = np.maximum(snapped[1:, 0], snapped[:-1, 1])
    snapped[:, 1] = np.maximum(snapped[:, 1], snapped[:, 0])
    return snapped


def _reduce(vocab: Vocabulary, label: str) -> int | str | None:
    """The class of ``label``, None if the vocabulary cannot map it, or why it is invalid."""
    try:
        return vocab.reduce(label)
    except mir_eval.chord.InvalidChordException as exc:
        return str(exc) or "rejected by mir_eval"


def _runs(frames: np.ndarray, times: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(sequence, intervals) of the runs of mapped frames, equal neighbours merged."""
    bounds = np.append(times, 2 * times[-1] - times[-2])  # a frame lasts until the next starts
    start = np.flatnonzero(np.diff(frames, prepend=-2))  # first frame of each run
    end = np.append(start[1:], len(frames))
    keep = frames[start] >= 0
    start, end, classes = start[keep], end[keep], frames[start][keep]
    first = np.diff(classes, prepend=-1) != 0  # runs of one class split only by unmapped frames
    last = np.roll(first, -1)  # first[0] is True: the last run of each class, none if no runs
    intervals = np.stack([bounds[start[first]], bounds[end[last]]], axis=1)
    return classes[first], intervals


def _quality(label: str) -> str:
    """A Harte label without its root: "min7/b7", "maj" for "C", "N", "X"."""
    quality = _ROOT.sub("", label).removeprefix(":")
    return "maj" + quality if quality == "" or quality.startswith("/") else quality


def _transpose(label: str, shift: int) -> str:
    """``label`` with its root moved up ``shift`` semitones (the bass is relative: it follows)."""
    root = _ROOT.match(label)
    if root is None or shift % 12 == 0:
        return label
    semitone = mir_eval.chord.pitch_class_to_semitone(root.group())
    return ROOTS[(semitone + shift) % 12] + label[root.end() :]
