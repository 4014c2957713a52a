from __future__ import annotations

from pathlib import Path

import pytest

from dsan_core.config import PipelineConfig, load_profile, parse_config
from dsan_core.errors import ConfigError

PROFILES = Path(__file__).resolve().parents[2] / "profiles"


@pytest.mark.parametrize("name", ["test", "demo", "demo-gpu", "paper"])
def test_shipped_profiles_load(name: str) -> None:
    config = load_profile(PROFILES / f"{name}.yaml")
    assert config.profile == name


def test_demo_gpu_differs_from_demo_only_in_the_gpu_budgets() -> None:
    demo, gpu = load_profile(PROFILES / "demo.yaml"), load_profile(PROFILES / "demo-gpu.yaml")
    same = {"synth", "ingest", "groups", "split", "preprocess", "ensemble", "evaluation"}
    for section in same:
        assert getattr(demo, section) == getattr(gpu, section), section
    assert gpu.runtime.device == "cuda"
    # The GPU trains its own VB-Net (the CPU demo imports the ground truth) ...
    assert (demo.segmentation.method, gpu.segmentation.method) == ("ground_truth", "vbnet")
    assert gpu.segmentation.vbnet.spacing_mm[2] < demo.segmentation.vbnet.spacing_mm[2]
    # ... and a larger classifier for longer, with the demo's other training settings
    # (the runtime-only fields may differ too).
    assert gpu.train.width > demo.train.width and gpu.train.epochs > demo.train.epochs
    kept = {name: getattr(demo.train, name)
            for name in ("width", "epochs", *demo.train.RUNTIME_FIELDS)}
    assert gpu.train.model_copy(update=kept) == demo.train


def test_paper_profile_has_the_papers_sizes() -> None:
    config = load_profile(PROFILES / "paper.yaml")
    assert config.preprocess.target_shape == (138, 256, 256)
    assert config.preprocess.spacing_mm == (0.7168, 0.7168, 1.25)
    assert (config.train.width, config.train.batch_size, config.train.epochs) == (64, 20, 20)
    assert config.ingest.pseudonym_key is None and not config.ingest.allow_published_key


def test_unknown_key_names_the_field() -> None:
    with pytest.raises(ConfigError, match=r"preprocess\.target_shap"):
        parse_config({"preprocess": {"target_shap": [1, 2, 3]}})


def test_bad_value_names_the_field_and_value() -> None:
    with pytest.raises(ConfigError, match=r"split\.n_folds.*found 1"):
        parse_config({"split": {"n_folds": 1, "cutoff_date": "2020-01-01"}})


def test_policy_requires_its_field() -> None:
    with pytest.raises(ConfigError, match="policy 'site' needs test_sites"):
        parse_config({"split": {"policy": "site"}})


def test_overrides_merge_deeply(tmp_path: Path) -> None:
    profile = tmp_path / "mine.yaml"
    profile.write_text("synth:\n  n_patients: 12\n")
    config = load_profile(profile, {"synth": {"matrix": 64}})
    assert (config.synth.n_patients, config.synth.matrix, config.profile) == (12, 64, "mine")


def test_sections_are_frozen_and_fingerprinted() -> None:
    config = PipelineConfig()
    with pytest.raises(Exception):  # noqa: B017 - pydantic's frozen error type
        config.synth.seed = 1  # type: ignore[misc]
    assert config.synth.fingerprint() == PipelineConfig().synth.fingerprint()
    assert config.synth.fingerprint() != config.synth.model_copy(update={"seed": 1}).fingerprint()


def test_secret_key_is_not_shown() -> None:
    config = parse_config({"ingest": {"pseudonym_key": "a-very-secret-key-value"}})
    assert "a-very-secret-key-value" not in repr(config)
    assert "a-very-secret-key-value" not in config.model_dump_json()


def test_retrain_drop_prefers_given_paths_and_falls_back_to_the_profile(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    config = parse_config({"retrain": {"drop_dicom_root": "drop/dicom",
                                       "drop_labels": "drop/labels.csv"}})
    assert config.retrain.drop() == (tmp_path / "drop/dicom", tmp_path / "drop/labels.csv", None)
    assert config.retrain.drop("other", None, "m") == (
        tmp_path / "other", tmp_path / "drop/labels.csv", tmp_path / "m")
    with pytest.raises(ConfigError, match="no drop to retrain on"):
        parse_config({}).retrain.drop(dicom_root="only-the-folder")
