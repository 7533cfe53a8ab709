"""The synthetic lexicon and skeleton: the shift between text and signs, arm geometry."""

from __future__ import annotations

import numpy as np
import pytest

from harness.signs import skeleton
from harness.signs.corpus import CorpusConfig, make_corpus
from harness.signs.lexicon import LexiconConfig, make_lexicon


def correlation(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a.ravel(), b.ravel())[0, 1])


def test_without_a_shift_the_text_view_is_the_sign_descriptor():
    lexicon = make_lexicon(LexiconConfig(shift=0.0), seed=0)
    np.testing.assert_allclose(lexicon.text_view, lexicon.descriptors, atol=1e-5)


def test_the_text_view_keeps_cos_shift_of_the_descriptor():
    for shift in (0.5, np.pi / 2):
        lexicon = make_lexicon(LexiconConfig(words=4096, shift=shift), seed=1)
        assert correlation(lexicon.text_view, lexicon.descriptors) == pytest.approx(
            np.cos(shift), abs=0.03)


def test_too_few_text_dimensions_are_refused():
    with pytest.raises(ValueError, match="2 \\* sign_dim"):
        LexiconConfig(text_dim=10, sign_dim=6)


def test_bones_keep_their_lengths_whatever_the_angles():
    angles = np.random.default_rng(0).uniform(-3, 3, size=(7, skeleton.JOINTS))
    joints = skeleton.positions(angles)
    per_arm = len(skeleton.BONES)
    for arm, shoulder in enumerate(skeleton.SHOULDERS):
        chain = np.concatenate([np.broadcast_to(shoulder, (7, 1, 2)),
                                joints[:, arm * per_arm:(arm + 1) * per_arm]], axis=1)
        lengths = np.linalg.norm(np.diff(chain, axis=1), axis=-1)
        np.testing.assert_allclose(lengths, np.broadcast_to(skeleton.BONES, lengths.shape))


def test_equal_angles_give_a_mirrored_pose():
    joints = skeleton.positions(np.tile([0.4, 0.8, 0.1, 0.2], 2))
    left, right = joints[:4], joints[4:]
    np.testing.assert_allclose(left[:, 0], -right[:, 0])
    np.testing.assert_allclose(left[:, 1], right[:, 1])


def test_sentences_are_their_words_signs_in_order_jittered_only_for_training():
    lexicon = make_lexicon(LexiconConfig(words=16, frames=3), seed=2)
    corpus = make_corpus(lexicon, CorpusConfig(train=5, eval=5, words=3, jitter=0.2), seed=2)
    clean = lexicon.signs[corpus.eval.tokens].reshape(5, 9, skeleton.JOINTS, 2)
    np.testing.assert_array_equal(corpus.eval.poses, clean)
    noise = corpus.train.poses - lexicon.signs[corpus.train.tokens].reshape(5, 9, -1, 2)
    assert noise.std() == pytest.approx(0.2, rel=0.15)
