"""The chord vocabulary: N plus 12 roots x 5 qualities (61 classes) <-> Harte labels.

Class 0 is ``N`` (no chord); class ``1 + root * 5 + q`` is the chord on pitch class ``root``
(C=0, C#=1, ... B=11) with quality ``q`` in (maj, min, 7, min7, maj7). Labels are written with
sharps (``C#:min``); parsing accepts any Harte spelling mir_eval accepts (``Db:min`` == ``C#:min``).

Reducing an arbitrary Harte label to the vocabulary (``Vocabulary.reduce``)
---------------------------------------------------------------------------
A model with a small vocabulary must map real annotations to it explicitly. The rule works on the
chord's pitch content, as parsed by ``mir_eval.chord.encode`` (root, semitone bitmap):

1. ``N`` -> N (class 0). ``X`` (unknown) -> ``None``: it cannot be mapped, the caller counts it.
2. The bass is ignored: inversions are dropped (``A:min7/b7`` -> ``A:min7``). The bass note is
   taken out of the bitmap too, so ``C:maj/b7`` stays ``C:maj`` rather than becoming ``C:7``.
3. The root is kept. The quality is decided by the third and the seventh of the bitmap only;
   everything else (fifths, 6ths, 9ths, 11ths, 13ths, added or omitted tones) is ignored:

   =============================  ============  ===========  ============
   third \\ seventh                minor (b7)    major (7)    none
   =============================  ============  ===========  ============
   major (3)                      7             maj7         maj
   minor (b3), no major third     min7          min          min
   none (5, 1, sus2, sus4)        7             maj7         maj
   =============================  ============  ===========  ============

   So maj(9), maj6, aug -> maj; 9, 11, 13, 7(#9) -> 7; min9, min11, hdim7 -> min7;
   min6, dim, dim7 (its bb7 is a 6th) -> min; minmaj7 -> min (min7 would claim a seventh that is
   not there); power chords 5 and 1, sus2 and sus4 -> maj of the root (the most common quality,
   half of the time in Billboard); sus4(b7) -> 7. A vocabulary without sevenths falls back to
   the triad (7, maj7 -> maj; min7 -> min).
4. ``None`` is returned only for ``X``: every other valid label has a root and hence a class.

An invalid label raises ``mir_eval.chord.InvalidChordException``; callers count those.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import mir_eval.chord

ROOTS = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")
N_LABEL = mir_eval.chord.NO_CHORD  # "N"
X_LABEL = mir_eval.chord.X_CHORD  # "X"


@dataclass(frozen=True)
class Vocabulary:
    """N plus 12 roots x ``qualities``; class ids are ``1 + root * len(qualities) + q``."""

    qualities: tuple[str, ...] = ("maj", "min", "7", "min7", "maj7")

    @property
    def size(self) -> int:
        return 1 + len(ROOTS) * len(self.qualities)

    def label(self, cls: int, *, shift: int = 0) -> str:
        """Harte label of class ``cls``, its root transposed up by ``shift`` semitones.

        The shift exists to plant a known regression (a transposed output) in tests; N stays N.
        """
        if not 0 <= cls < self.size:
            raise ValueError(f"class {cls} is outside the vocabulary (0..{self.size - 1})")
        if cls == 0:
            return N_LABEL
        root, quality = divmod(int(cls) - 1, len(self.qualities))
        return f"{ROOTS[(root + shift) % 12]}:{self.qualities[quality]}"

    def labels(self, classes: Sequence[int], *, shift: int = 0) -> list[str]:
        return [self.label(int(c), shift=shift) for c in classes]

    def index(self, label: str) -> int:
        """Class of a label that is exactly in the vocabulary (any enharmonic spelling).

        Raises KeyError for a valid label outside the vocabulary (use ``reduce`` for those) and
        InvalidChordException for a malformed one.
        """
        if label == N_LABEL:
            return 0
        if label == X_LABEL:
            raise KeyError(f"{label!r} (unknown chord) has no class; reduce() maps it to None")
        root, quality, degrees, bass = mir_eval.chord.split(label)
        if quality not in self.qualities or degrees or bass != "1":
            raise KeyError(
                f"{label!r} is not in the vocabulary (N or root:{{{','.join(self.qualities)}}}, "
                "no extensions, no inversion); use Vocabulary.reduce() to map it"
            )
        return self._class(mir_eval.chord.pitch_class_to_semitone(root), quality)

    def reduce(self, label: str) -> int | None:
        """Nearest vocabulary class of any Harte label, by the rule in the module docstring."""
        if label == N_LABEL:
            return 0
        if label == X_LABEL:
            return None
        mir_eval.chord.encode(label)  # validates the whole label, bass included
        root, bitmap, _ = mir_eval.chord.encode(label.partition("/")[0])
        seventh = "7" if bitmap[10] else "maj7" if bitmap[11] else ""
        if bitmap[3] and not bitmap[4]:
            quality = {"7": "min7", "maj7": "min", "": "min"}[seventh]
        else:
            quality = seventh or "maj"
        if quality not in self.qualities:
            quality = "min" if quality == "min7" else "maj"
        return self._class(root, quality)

    def _class(self, root: int, quality: str) -> int:
        return 1 + (root % 12) * len(self.qualities) + self.qualities.index(quality)


DEFAULT_VOCAB = Vocabulary()
