"""Which segmenter `dsan predict` uses for a study without masks, per segmentation method."""

from __future__ import annotations

from dsan_core.config import SegmentationConfig
from dsan_core.segmentation.reporting import MethodSummary
from storage.stage_cache import Manifest
from tasks.predict import _predict_segmenter
from tasks.segmentation import TrainSegOutcome
from tasks.segmentation_eval import predict_segmenter_card

MODEL = TrainSegOutcome(Manifest("train-seg", "k"), "abc123", 3, 0.9, 0.35, 10, 2)
HELD = {"vbnet": MethodSummary(5, 0.98, 0.95, 0.7, 0.4, 0.2),
        "classical": MethodSummary(5, 0.99, 0.97, 0.3, 0.1, 1.6)}


def test_the_card_names_the_vbnet_or_the_classical_fallback() -> None:
    truth = SegmentationConfig(method="ground_truth")
    card = predict_segmenter_card(truth, MODEL, HELD)
    assert (card["tag"], card["weaker"], card["infection_threshold"]) == ("vbnet__abc123", True,
                                                                           0.5)
    assert card["held_out"]["infection_dice"] == 0.7 and card["trained_on"] == {"train": 10,
                                                                                  "val": 2}
    calibrated = truth.model_copy(update={"vbnet": truth.vbnet.model_copy(
        update={"infection_threshold": "calibrate"})})
    assert predict_segmenter_card(calibrated, MODEL, HELD)["infection_threshold"] == 0.35
    fallback = predict_segmenter_card(truth, None, HELD)
    assert fallback["method"] == "classical" and fallback["weaker"]
    assert fallback["held_out"]["ratio_rel_error"] == 1.6
    # The classical method keeps its own segmenter (what its classifier trained on).
    own = predict_segmenter_card(SegmentationConfig(method="classical"), MODEL, HELD)
    assert own["method"] == "classical" and not own["weaker"]
    assert predict_segmenter_card(SegmentationConfig(), MODEL, HELD)["weaker"] is False


def test_a_record_without_a_card_falls_back_to_the_classical_segmenter() -> None:
    truth = SegmentationConfig(method="ground_truth")
    record = {"segmenter": {"method": "ground_truth", "version": ["ground_truth"],
                            "infection_threshold": None}}
    chosen = _predict_segmenter(None, record, truth, None, 0.5, "cpu")  # type: ignore[arg-type]
    assert chosen.method == "classical" and chosen.weaker and chosen.network is None
    assert chosen.tag == f"classical__{truth.classical.fingerprint()}"
