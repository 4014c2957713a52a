from __future__ import annotations

import dataclasses
import functools
import pickle
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from dsan_core.classifier import ClassifierDataset, cases_from_tables, make_loader
from dsan_core.classifier.data import collate_cases
from dsan_core.errors import InputError
from tests.dsan_core.classifier.cases import write_case


def test_items_keep_the_stored_dtypes_and_read_masks_only_when_asked(tmp_path: Path) -> None:
    case = write_case(tmp_path, "s0", "covid_large", 1, seed=0, shape=(12, 14, 13))
    item = ClassifierDataset([case], with_infection=True)[0]
    assert item["image"].shape == (1, 12, 14, 13) and item["image"].dtype == torch.float16
    assert item["infection"].dtype == torch.uint8 and set(item["infection"].unique().tolist()) \
        == {0, 1}
    assert item["label"].item() == 1.0 and item["index"] == 0
    assert "infection" not in ClassifierDataset([case], with_infection=False)[0]



def test_each_scan_is_copied_once_into_its_batch(tmp_path: Path) -> None:
    cases = [write_case(tmp_path, f"m{i}", "cap_small", 0, seed=i, shape=(4, 6, 8))
             for i in range(2)]
    dataset = ClassifierDataset(cases, with_infection=True)
    image = np.asarray(cases[0].image()).copy()
    viewed = ClassifierDataset([dataclasses.replace(cases[0], image=lambda: image)],
                               with_infection=False)[0]
    assert np.shares_memory(viewed["image"].numpy(), image)  # a view, not a copy
    batch = collate_cases([dataset[0], dataset[1]], ["m0", "m1"])
    assert batch["image"].numpy().flags.writeable and batch["infection"].dtype == torch.uint8
    np.testing.assert_array_equal(batch["image"][1, 0].numpy(), cases[1].image())


def test_masks_of_other_dtypes_become_uint8(tmp_path: Path) -> None:
    case = write_case(tmp_path, "b", "covid_small", 1, seed=3, shape=(12, 12, 12))
    for dtype in (np.bool_, np.int16, np.float32):
        mask = np.asarray(case.infection()).astype(dtype) * 5
        odd = dataclasses.replace(case, infection=lambda mask=mask: mask)
        item = ClassifierDataset([odd], with_infection=True)[0]
        assert item["infection"].dtype == torch.uint8
        assert (item["infection"] != 0).sum() == (np.asarray(case.infection()) != 0).sum()


def test_batches_of_mixed_dtypes_become_float32(tmp_path: Path) -> None:
    half = write_case(tmp_path, "h", "cap_small", 0, seed=1, shape=(8, 8, 8))
    full = write_case(tmp_path, "f", "cap_large", 0, seed=2, shape=(8, 8, 8), dtype="float32")
    items = [ClassifierDataset([half, full], with_infection=False)[i] for i in (0, 1)]
    batch = collate_cases(items, ["h", "f"])
    assert batch["image"].shape == (2, 1, 8, 8, 8) and batch["image"].dtype == torch.float32
    assert batch["index"].tolist() == [0, 1] and batch["label"].tolist() == [0.0, 0.0]


def test_loader_in_dataset_order_and_a_2d_image_is_an_error(tmp_path: Path) -> None:
    cases = [write_case(tmp_path, f"c{i}", "cap_small", 0, seed=i, shape=(4, 4, 4))
             for i in range(3)]
    loader = make_loader(cases, batch_size=2, sampler=None, with_infection=False,
                         num_workers=0, device=torch.device("cpu"))
    assert [b["index"].tolist() for b in loader] == [[0, 1], [2]]
    flat = cases[0].__class__("flat", 0, "cap_small", lambda: np.zeros((4, 4), np.float32),
                              cases[0].infection)
    with pytest.raises(InputError, match=r"scan flat: expected a \(z, y, x\) image"):
        ClassifierDataset([flat], with_infection=False)[0]


def test_cases_from_tables_take_label_group_and_paths_and_skip_missing_scans(
        tmp_path: Path) -> None:
    for name in ("a.npy", "a-inf.npy", "b.npy", "b-inf.npy"):
        np.save(tmp_path / name, np.full((2, 3, 4), len(name), dtype=np.float16))
    groups = pd.DataFrame({"scan_id": ["A", "B", "C"], "label": ["COVID", "CAP", "CAP"],
                           "sampling_group": ["covid_small", "cap_large", "cap_small"]})
    inputs = pd.DataFrame({"scan_id": ["A", "B", "D"],
                           "input_path": ["a.npy", "b.npy", "d.npy"],
                           "infection_path": ["a-inf.npy", "b-inf.npy", "d-inf.npy"]})
    reader = functools.partial(_load_relative, tmp_path)
    cases = cases_from_tables(["A", "B", "C", "D"], groups.set_index("scan_id"),
                              inputs.set_index("scan_id"), reader)
    assert list(cases) == ["A", "B"]  # C not pre-processed, D not grouped
    assert (cases["A"].label, cases["A"].sampling_group) == (1, "covid_small")
    assert (cases["B"].label, cases["B"].sampling_group) == (0, "cap_large")
    assert float(cases["B"].image()[0, 0, 0]) == len("b.npy")
    assert float(cases["B"].infection()[0, 0, 0]) == len("b-inf.npy")
    restored = pickle.loads(pickle.dumps(cases["A"]))  # DataLoader workers
    assert float(restored.image()[0, 0, 0]) == len("a.npy")


def _load_relative(root: Path, relative: str) -> functools.partial[np.ndarray]:
    return functools.partial(np.load, root / relative, mmap_mode="r")
