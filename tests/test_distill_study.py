"""The distillation study's declarations: one training per training config and seed."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from harness.core.stages import depends_on

STUDY_FILE = Path(__file__).parents[1] / "ablation_tests" / "test_distill_sweeps.py"


def load_study_module():
    """The study module by path (ablation_tests is no package; importing its names here would
    make pytest collect the study a second time)."""
    spec = importlib.util.spec_from_file_location("distill_study_declarations", STUDY_FILE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_sweep_trains_once_per_training_config_and_decodes_eleven_ways():
    module = load_study_module()
    runs = module.sweeps.runs("synthetic")
    trainings = {(run.seed, repr(depends_on(run.config, ignore=module.EVAL_ONLY)))
                 for run in runs}
    seeds = len(module.sweeps.seeds)
    assert len(runs) == 11 * seeds  # base + 2 + 2 + 2 training values + 3 temperatures + greedy
    assert len(trainings) == 7 * seeds  # the decodings share the base config's training


def test_the_controls_share_one_training_per_seed():
    module = load_study_module()
    runs = module.controls.runs("synthetic")
    trainings = {(run.seed, repr(depends_on(run.config, ignore=module.EVAL_ONLY)))
                 for run in runs}
    assert len(runs) == 3 * len(module.controls.seeds)
    assert len(trainings) == len(module.controls.seeds)
