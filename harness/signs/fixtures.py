"""pytest fixtures of the text-to-sign domain; a study imports them, so the domain loads only
where a study uses it:

    from harness.signs.fixtures import sign_data_fixture  # noqa: F401  (fixture `sign_data`)

    @study
    def test_sign_encoder(run, sign_data):
        sign_data.lexicon, sign_data.corpus    # this run's words and sentences
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pytest

from harness.signs.corpus import Corpus, CorpusConfig, make_corpus
from harness.signs.lexicon import Lexicon, LexiconConfig, make_lexicon
from harness.signs.model import ModelConfig


@dataclass(frozen=True, eq=False)
class SignData:
    """The synthetic world of a run: its lexicon and its sentences."""

    lexicon: Lexicon
    corpus: Corpus

    def model_config(self, overrides: Mapping[str, Any]) -> ModelConfig:
        """A ModelConfig whose sizes fit this lexicon, with the config's own settings."""
        lex = self.lexicon.config
        return ModelConfig(text_dim=lex.text_dim, sign_dim=lex.sign_dim, frames=lex.frames,
                           pose_dim=self.lexicon.pose_dim, **overrides)


def make_sign_data(config: Mapping[str, Any], seed: int) -> SignData:
    """Lexicon and corpus from a run's config (`lexicon`, `corpus` sections) and seed."""
    lexicon = make_lexicon(LexiconConfig(**config.get("lexicon", {})), seed)
    return SignData(lexicon, make_corpus(lexicon, CorpusConfig(**config.get("corpus", {})), seed))


@pytest.fixture(name="sign_data")  # a body's parameter `sign_data` never shadows an import
def sign_data_fixture(ablation_run: Any) -> SignData:
    """The run's lexicon and sentences, generated from its config and seed."""
    return make_sign_data(ablation_run.config, ablation_run.seed)
