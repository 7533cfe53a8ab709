"""pytest-ablation: ML ablation studies as pytest tests.

    from harness import ablation

    heads = ablation(variants={"ctc_only": {"parts": ["ctc"]},
                               "combined": {"parts": ["ctc", "ar"]}},
                     seeds=3, tiers={"synthetic": {"noise_sigma": [0.5, 1.0]}})

    @heads
    def test_heads(run, log):
        model = train(run.config, seed=run.seed, log=log)
        return evaluate(model)          # {"joint": {"labels": {"majmin": 0.81}}, ...}

    heads.expect("combined >= ctc_only", metric="joint/labels/majmin", margin=0.01)
    heads.guard("joint/labels/majmin", margin=0.005)   # against --ablation-baseline
"""

from harness.core.stages import StageError
from harness.core.study import (
    Guard,
    Hypothesis,
    KnobClaim,
    RunSpec,
    Study,
    StudyError,
    Sweep,
    ablation,
    sweep,
)
from harness.core.yamlspec import load_study

__all__ = ["Guard", "Hypothesis", "KnobClaim", "RunSpec", "StageError", "Study", "StudyError",
           "Sweep", "ablation", "load_study", "sweep"]
__version__ = "0.1.0"
