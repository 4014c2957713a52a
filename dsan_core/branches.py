"""The models of the method, by the names the tables use (METHOD.md "Two sampling
strategies", "Ensemble", "Evaluation")."""

from __future__ import annotations

RN34_US = "rn34_us"  # the baseline: ResNet34, uniform sampling, no attention loss
ATT_US = "att_us"  # attention ResNet34, uniform sampling
ATT_SS = "att_ss"  # attention ResNet34, size-balanced sampling
ATT_DS = "att_ds"  # the dual-sampling ensemble of att_us and att_ss (not trained)

#: The branches trained per fold.
TRAINED: tuple[str, str, str] = (ATT_US, ATT_SS, RN34_US)
#: Every model of the evaluation, in the order of the paper's tables.
MODELS: tuple[str, str, str, str] = (RN34_US, ATT_US, ATT_SS, ATT_DS)
MODEL_NAMES: dict[str, str] = {
    RN34_US: "RN34 + US",
    ATT_US: "Attention RN34 + US",
    ATT_SS: "Attention RN34 + SS",
    ATT_DS: "Attention RN34 + DS",
}
