"""ChordModel: a CTC part and an autoregressive (AR) part that share no parameter.

The ablation study trains variants of one model class from one init seed and freezes parts
surgically (``requires_grad=False``), so variants differ only in which parts learn. The parts
share nothing and each has its own optimizer (train.py), so training both together is bitwise
identical to training each alone; the study checks that identity as proof that no weight is
shared. No BatchNorm, no dropout: a frozen part must stay bitwise unchanged and training must be
bitwise reproducible.

A run must train in about a second on one CPU thread, so neither part is recurrent over frames
(a bidirectional GRU over the frames alone costs ~30 ms a step there):

- ``ctc``: one linear convolution over ``ctc_kernel`` frames giving classes + blank (the last
  index). Its per-frame argmax over non-blank classes times chord changes well but labels noisy
  frames wrongly; its greedy sequence is poor (noise inserts symbols). It is rarely blank (6-21%
  of frames), so it never sits on the blank plateau; a deeper CTC encoder (ReLU hidden layer) did,
  with 94-99% blank frames at the end of the step budget. On Billboard (~52 frames per chord) the
  linear one does too: blank posterior ~0.97 on every frame, greedy decoding emits nothing.
  ``ctc_pool`` is the usual CTC cure, time downsampling: one output per that many frames (their
  mean), so outputs per chord fall to a few; outputs are repeated over their frames for frame
  labels and alignments. (A ReLU layer there, or normalised chroma, did no better.)
- ``ar``: a decoder that emits the chord sequence then EOS (index ``num_classes``). Its state is
  the probability distribution of where the current segment starts, an exact semi-Markov forward
  step: a segment goes on while its frames look like its chord (per-frame stay probability
  sigmoid(a log p(chord) + b) from the part's own frame classifier) and the next one starts where
  it stops. Each step reads the mean frame log-probs of the ``read_frames`` frames after its
  start (no more than the shortest segment, so that a read sees one chord), adds a learned bigram
  term on the previous token, and emits the argmax. The next state depends on the emitted chord,
  so decoding is autoregressive; reading at the song's end (a learned end vector) gives EOS.
  Measured alternatives: an attention located by a learned boundary detector (CIF-like) still
  had 60% sequence error after twice the budget; a GRU over the tokens changed nothing
  measurable and cost ~10% more time.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

# A log-probability that stands for zero without infinities (whose gradients can be NaN); far
# below any sum of clamped log stays, even over hours of frames.
NEVER = -1e30


@dataclass(frozen=True)
class ModelConfig:
    feature_dim: int = 64
    num_classes: int = 61
    ctc_kernel: int = 3  # (odd) frames seen by one CTC output: few, so frame labels stay noisy
    ctc_pool: int = 1  # > 1: the CTC part emits one output per this many frames (mean-pooled)
    ctc_blank_penalty: float = 0.0  # decoding only: subtracted from the blank's log-prob (greedy)
    ar_kernel: int = 3  # (odd) frames seen by one output of the AR part's frame classifier
    read_frames: int = 3  # frames the AR decoder reads after a segment start
    segment_rate: float = 0.15  # initial chance that a segment ends at a given frame
    decode_frames: int = 0  # > 0: the AR part decodes songs in windows of this many frames


def _conv(in_dim: int, out_dim: int, kernel: int) -> nn.Conv1d:
    return nn.Conv1d(in_dim, out_dim, kernel, padding=kernel // 2)


def _over_frames(conv: nn.Conv1d, features: torch.Tensor) -> torch.Tensor:
    """(B, T, D) -> (B, T, out) log-probs of a convolution over frames."""
    return F.log_softmax(conv(features.transpose(1, 2)).transpose(1, 2), dim=-1)


def _frame_mask(lengths: torch.Tensor, frames: int) -> torch.Tensor:
    return torch.arange(frames).unsqueeze(0) < lengths.unsqueeze(1)


class CTCPart(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        if config.ctc_pool < 1:
            raise ValueError(f"ctc_pool must be at least 1, got {config.ctc_pool}")
        self.pool = config.ctc_pool
        self.encoder = _conv(config.feature_dim, config.num_classes + 1, config.ctc_kernel)

    def pooled(self, features: torch.Tensor) -> torch.Tensor:
        """(B, T, D) features -> (B, ceil(T / pool), C + 1) log-probs at the CTC's own rate.

        Each output reads the mean of ``pool`` frames. Frames past the end count as zeros and
        every window divides by ``pool``, so a song's outputs do not depend on the padding of
        the batch it sits in (a conv's own padding is zeros too).
        """
        if self.pool > 1:
            features = F.pad(features, (0, 0, 0, -features.shape[1] % self.pool))
            features = features.unflatten(1, (-1, self.pool)).mean(2)
        return _over_frames(self.encoder, features)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """(B, T, D) features -> (B, T, C + 1) log-probs; the blank is the last class.

        Pooled outputs are repeated over their frames: greedy decoding collapses repeats, so
        it reads the same sequence at either rate, and frame labels and alignments keep the
        frame grid.
        """
        log_probs = self.pooled(features)
        if self.pool > 1:
            log_probs = log_probs.repeat_interleave(self.pool, dim=1)[:, : features.shape[1]]
        return log_probs

    def loss(
        self,
        features: torch.Tensor,
        lengths: torch.Tensor,
        targets: torch.Tensor,
        target_lengths: torch.Tensor,
    ) -> torch.Tensor:
        """CTC loss, each song's divided by its sequence length, averaged over songs (a song
        too short for its sequence counts 0, not infinity)."""
        log_probs = self.pooled(features).transpose(0, 1)
        blank = log_probs.shape[-1] - 1
        lengths = (lengths + self.pool - 1) // self.pool  # ceil: a partial window is an output
        return F.ctc_loss(
            log_probs, targets, lengths, target_lengths, blank=blank, zero_infinity=True
        )


class ARPart(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        classes = config.num_classes
        self.classifier = _conv(config.feature_dim, classes, config.ar_kernel)
        # At init every log p(chord) is about -log(classes): start with stay = 1 - segment_rate.
        rate = config.segment_rate
        self.membership = nn.Parameter(torch.tensor([1.0, math.log((1 - rate) / rate * classes)]))
        self.gain = nn.Parameter(torch.tensor(1.0))
        self.frame_eos = nn.Parameter(torch.tensor(-10.0))  # EOS logit read from any frame
        self.end = nn.Parameter(torch.cat([torch.full((classes,), -10.0), torch.zeros(1)]))
        self.bigram = nn.Embedding(classes + 1, classes + 1)  # previous token (or BOS) -> logits
        nn.init.zeros_(self.bigram.weight)

    def values(self, log_probs: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """(B, T + K, C + 1): what a read sees at each position; the end vector from the end on."""
        k = self.config.read_frames
        batch, frames, _ = log_probs.shape
        eos = self.frame_eos.expand(batch, frames, 1)
        values = F.pad(torch.cat([log_probs, eos], dim=-1), (0, 0, 0, k))
        past_end = ~_frame_mask(lengths, frames + k)
        return torch.where(past_end.unsqueeze(-1), self.end, values)

    def read(self, starts: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
        """(B, S, C + 1) logits: mean values of the K positions after each step's start.

        ``starts`` (B, S, T + 1) is each step's log-distribution of its segment's start.
        """
        k = self.config.read_frames
        started = F.pad(starts.exp(), (1, values.shape[1] - starts.shape[2])).cumsum(2)
        window = (started[..., 1:] - F.pad(started, (k - 1, 0))[..., :-k]) / k
        return self.gain * (window @ values)

    def transitions(
        self, log_probs: torch.Tensor, lengths: torch.Tensor, tokens: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(cumulated log stay, log leave), each (B, S, T + 1), for segments of chords ``tokens``
        (B, S). A segment always ends at its song's end (position ``length``, read as EOS)."""
        frames = log_probs.shape[1]
        a, b = self.membership
        index = tokens.unsqueeze(1).expand(-1, frames, -1)
        score = F.pad((a * log_probs.gather(2, index) + b).transpose(1, 2), (0, 1))
        inside = _frame_mask(lengths, frames + 1).unsqueeze(1)
        # Clamped so that sums over a song stay finite and precise in float32.
        log_stay = F.logsigmoid(score).clamp(min=-30.0).masked_fill(~inside, -30.0)
        log_leave = F.logsigmoid(-score).clamp(min=-30.0).masked_fill(~inside, NEVER)
        at_end = lengths.view(-1, 1, 1).expand(-1, tokens.shape[1], 1)
        return log_stay.cumsum(2), log_leave.scatter(2, at_end, 0.0)

    @staticmethod
    def advance(
        starts: torch.Tensor, stay_sum: torch.Tensor, log_leave: torch.Tensor
    ) -> torch.Tensor:
        """Next segment's start log-distribution (B, T + 1) from this one's (B, T + 1):
        P(next starts at t) = leave(t) * sum over s < t of P(starts at s) * stay(s+1 .. t-1)."""
        reach = torch.logcumsumexp(starts - stay_sum, dim=1) + stay_sum
        return F.pad(reach[:, :-1], (1, 0), value=NEVER) + log_leave

    @staticmethod
    def first_start(batch: int, frames: int) -> torch.Tensor:
        starts = torch.full((batch, frames + 1), NEVER)
        starts[:, 0] = 0.0
        return starts

    def forward(
        self, features: torch.Tensor, lengths: torch.Tensor, inputs: torch.Tensor
    ) -> torch.Tensor:
        """Teacher-forced logits (B, S, C + 1) for input tokens (B, S): BOS, then the chords."""
        log_probs = _over_frames(self.classifier, features)
        stay_sum, log_leave = self.transitions(log_probs, lengths, inputs[:, 1:])
        starts = [self.first_start(*log_probs.shape[:2])]
        for i in range(inputs.shape[1] - 1):
            starts.append(self.advance(starts[-1], stay_sum[:, i], log_leave[:, i]))
        reads = self.read(torch.stack(starts, dim=1), self.values(log_probs, lengths))
        return reads + self.bigram(inputs)

    def loss(
        self,
        features: torch.Tensor,
        lengths: torch.Tensor,
        targets: torch.Tensor,
        target_lengths: torch.Tensor,
    ) -> torch.Tensor:
        """Teacher-forced cross-entropy over the chord sequence and its EOS."""
        eos = self.config.num_classes
        outputs = F.pad(targets, (0, 1), value=-100)
        outputs = outputs.masked_fill(~_frame_mask(target_lengths, outputs.shape[1]), -100)
        outputs = outputs.scatter(1, target_lengths.unsqueeze(1), eos)
        logits = self(features, lengths, F.pad(targets, (1, 0), value=eos))  # BOS = EOS index
        return F.cross_entropy(logits.flatten(0, 1), outputs.flatten(), ignore_index=-100)

    @torch.no_grad()
    def greedy(self, features: torch.Tensor, lengths: torch.Tensor) -> list[list[int]]:
        """Greedy decoding: each song's chords up to its first EOS.

        With ``decode_frames``, songs longer than that are decoded in windows of that many
        frames and the windows' sequences joined (a chord cut by a window edge counted once).
        Real songs hold ~100 chords: over so many segments the start distribution spreads over
        hundreds of frames and reads blur, and once its mass passes the end without an EOS
        nothing is left to read and the bigram loops to the last frame. Windows as long as the
        training crops keep decoding in the conditions the part was trained in.
        """
        size = self.config.decode_frames
        if size <= 0 or features.shape[1] <= size:
            return self._greedy(features, lengths)
        pieces, owners = [], []
        for song, length in enumerate(lengths.tolist()):
            for start in range(0, length, size):
                pieces.append(features[song, start : min(start + size, length)])
                owners.append(song)
        decoded = self._greedy(
            nn.utils.rnn.pad_sequence(pieces, batch_first=True),
            torch.tensor([len(piece) for piece in pieces]),
        )
        rows: list[list[int]] = [[] for _ in lengths]
        for song, sequence in zip(owners, decoded, strict=True):
            joined = rows[song] and sequence and rows[song][-1] == sequence[0]
            rows[song].extend(sequence[1:] if joined else sequence)
        return rows

    def _greedy(self, features: torch.Tensor, lengths: torch.Tensor) -> list[list[int]]:
        """Greedy decoding of whole songs (``greedy`` without windows).

        A segment lasts at least one frame, so T + 1 steps bound the decoding. An untrained or
        poor head can take all of them on a long real song (thousands): each step must then
        stay O(B x T), which is why ``done`` is kept instead of re-scanning what was emitted.
        """
        eos = self.config.num_classes
        log_probs = _over_frames(self.classifier, features)
        values = self.values(log_probs, lengths)
        starts = self.first_start(*log_probs.shape[:2])
        token = torch.full((len(lengths),), eos)  # BOS
        done = torch.zeros(len(lengths), dtype=torch.bool)
        emitted = []
        for _ in range(int(lengths.max()) + 1):
            if emitted:
                chord = token.clamp(max=eos - 1).unsqueeze(1)  # after EOS: anything, unused
                stay_sum, log_leave = self.transitions(log_probs, lengths, chord)
                starts = self.advance(starts, stay_sum[:, 0], log_leave[:, 0])
            logits = self.read(starts.unsqueeze(1), values)[:, 0] + self.bigram(token)
            token = logits.argmax(-1)
            emitted.append(token)
            done |= token == eos
            if done.all():
                break
        rows = torch.stack(emitted, dim=1).tolist()
        return [row[: row.index(eos)] if eos in row else row for row in rows]


class ChordModel(nn.Module):
    PARTS = ("ctc", "ar")

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        self.ctc = CTCPart(config)
        self.ar = ARPart(config)


def build_model(config: ModelConfig, *, seed: int, train_parts: Sequence[str]) -> ChordModel:
    """A fresh model from ``seed`` with every part outside ``train_parts`` frozen.

    Both parts are always built, in the same order, so every variant of a seed starts from
    identical weights whichever parts it trains.
    """
    unknown = sorted(set(train_parts) - set(ChordModel.PARTS))
    if unknown:
        raise ValueError(f"unknown part(s) {unknown}; valid parts are {list(ChordModel.PARTS)}")
    torch.manual_seed(seed)
    model = ChordModel(config)
    for part in ChordModel.PARTS:
        getattr(model, part).requires_grad_(part in train_parts)
    return model
