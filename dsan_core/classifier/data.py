"""Classifier inputs: lazily read pre-processed scans, a Dataset over them, and batching.

Volumes are (z, y, x): the image float16 or float32 in [0, 1], lung-masked (the
pre-processing stage's output); the infection mask uint8 0/1 on the same grid. Batches
are (B, 1, z, y, x) and keep the stored dtypes (float16 images stay float16, masks
uint8) so pinned host memory and the host-to-device copy carry half the bytes; the
training loop casts on the device. Items are views of the loaders' arrays (memory maps
in the pipeline): each scan is copied once, into its batch.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader, Dataset, Sampler, default_collate

from dsan_core.errors import InputError
from dsan_core.groups import COVID_LARGE, COVID_SMALL, LABEL_COVID, SAMPLING_GROUPS
from dsan_core.tensors import shared_tensor

#: Label values: 1 COVID-19 (the positive class), 0 CAP.
COVID, CAP = 1, 0


@dataclass(frozen=True)
class ClassifierCase:
    """One pre-processed scan, read only when needed.

    `image()` returns (z, y, x) float16/float32 in [0, 1], lung-masked; `infection()`
    (z, y, x) uint8 0/1 on the same grid. Both must be picklable (e.g.
    `functools.partial(loader, path)`) when DataLoader workers are used. `patient_id`
    (pseudonymous) keeps a patient's scans together in the inner validation split;
    empty, the scan is its own patient.
    """

    scan_id: str
    label: int
    sampling_group: str
    image: Callable[[], np.ndarray]
    infection: Callable[[], np.ndarray]
    patient_id: str = ""


def cases_from_tables(scan_ids: Iterable[str], groups: pd.DataFrame, inputs: pd.DataFrame,
                      reader: Callable[[str], Callable[[], np.ndarray]],
                      patients: Mapping[str, str] | None = None,
                      ) -> dict[str, ClassifierCase]:
    """Cases of `scan_ids` from the groups table (label, sampling_group) and the
    pre-processed table (input_path, infection_path), both indexed by scan_id;
    `patients` maps scan ids to pseudonymous patient ids (the split table's).

    `reader(relative_path)` returns the array's loader (picklable for DataLoader
    workers, e.g. a partial of a memory-mapping reader). A scan missing from either
    table is left out: its reason is in the stage that did not produce it.
    """
    cases = {}
    for scan_id in scan_ids:
        if scan_id not in inputs.index or scan_id not in groups.index:
            continue
        row, group = inputs.loc[scan_id], groups.loc[scan_id]
        cases[scan_id] = ClassifierCase(
            scan_id, int(str(group["label"]) == LABEL_COVID), str(group["sampling_group"]),
            reader(str(row["input_path"])), reader(str(row["infection_path"])),
            patient_id=(patients or {}).get(scan_id, ""))
    return cases


def check_cases(cases: Sequence[ClassifierCase]) -> None:
    """Labels are 0/1 and sampling groups known and consistent with the label."""
    for case in cases:
        if case.label not in (COVID, CAP):
            raise InputError(f"expected label 1 (COVID) or 0 (CAP), found {case.label!r}",
                             scan=case.scan_id)
        if case.sampling_group not in SAMPLING_GROUPS:
            raise InputError(f"expected a sampling group in {list(SAMPLING_GROUPS)}, found "
                             f"{case.sampling_group!r}", scan=case.scan_id)
        covid_group = case.sampling_group in (COVID_SMALL, COVID_LARGE)
        if covid_group != (case.label == COVID):
            raise InputError(f"sampling group {case.sampling_group!r} does not fit label "
                             f"{case.label}", scan=case.scan_id)


def _as_volume(array: np.ndarray, case: ClassifierCase, what: str) -> np.ndarray:
    if array.ndim != 3:
        raise InputError(f"expected a (z, y, x) {what}, found shape {array.shape}",
                         scan=case.scan_id)
    return array


def read_image(case: ClassifierCase) -> np.ndarray:
    """The case's image, (z, y, x) float16 or float32 and C-contiguous. A memory map
    stays one: the only copy is the one into the batch."""
    image = _as_volume(np.asarray(case.image()), case, "image")
    if image.dtype not in (np.float16, np.float32):
        image = image.astype(np.float32)
    return np.ascontiguousarray(image)


def read_infection(case: ClassifierCase, shape: tuple[int, ...]) -> np.ndarray:
    """The case's infection mask, (z, y, x) uint8 of `shape`; any non-zero value is
    infection (the training step binarises on the device). Not copied when uint8."""
    mask = _as_volume(np.asarray(case.infection()), case, "infection mask")
    if mask.shape != shape:
        raise InputError(f"expected the infection mask in the image's shape {shape}, found "
                         f"{mask.shape}", scan=case.scan_id)
    if mask.dtype == np.bool_:
        mask = mask.view(np.uint8)
    elif mask.dtype != np.uint8:
        mask = np.not_equal(mask, 0).view(np.uint8)
    return np.ascontiguousarray(mask)


class ClassifierDataset(Dataset[dict[str, Any]]):
    """Item i: {"index", "image" (1, z, y, x), "label" float32 scalar, and with
    `with_infection` "infection" (1, z, y, x) uint8}. Reads nothing until asked."""

    def __init__(self, cases: Sequence[ClassifierCase], *, with_infection: bool) -> None:
        self.cases = list(cases)
        self.with_infection = with_infection

    def __len__(self) -> int:
        return len(self.cases)

    def __getitem__(self, index: int) -> dict[str, Any]:
        case = self.cases[index]
        image = read_image(case)
        item: dict[str, Any] = {
            "index": index,
            "image": shared_tensor(image)[None],
            "label": torch.tensor(float(case.label), dtype=torch.float32),
        }
        if self.with_infection:
            item["infection"] = shared_tensor(read_infection(case, image.shape))[None]
        return item


def collate_cases(items: list[dict[str, Any]], scan_ids: Sequence[str]) -> dict[str, Any]:
    """Stack dataset items into a batch; scans of different shapes are an error naming
    both (`scan_ids[i]` is the id of dataset index i)."""
    first = items[0]["image"].shape
    for item in items[1:]:
        if item["image"].shape != first:
            raise InputError(
                f"expected every scan in one pre-processed shape, {tuple(first[1:])} like scan "
                f"{scan_ids[items[0]['index']]}; found {tuple(item['image'].shape[1:])}",
                scan=scan_ids[item["index"]],
            )
    if len({item["image"].dtype for item in items}) > 1:
        items = [item | {"image": item["image"].float()} for item in items]
    # The one copy of each scan: default_collate stacks the (memory-mapped) items into
    # the batch, straight into shared memory inside a worker.
    batch: dict[str, Any] = default_collate(items)
    return batch


class CaseCollator:
    """A picklable `collate_fn` that knows the scan ids (for error messages)."""

    def __init__(self, cases: Sequence[ClassifierCase]) -> None:
        self.scan_ids = [case.scan_id for case in cases]

    def __call__(self, items: list[dict[str, Any]]) -> dict[str, Any]:
        return collate_cases(items, self.scan_ids)


def make_loader(
    cases: Sequence[ClassifierCase],
    *,
    batch_size: int,
    sampler: Sampler[int] | None,
    with_infection: bool,
    num_workers: int,
    device: torch.device,
) -> DataLoader[dict[str, Any]]:
    """A DataLoader over `cases` in `sampler`'s order (dataset order when None).

    Workers (when `num_workers` > 0) read the scans themselves and stay alive across
    epochs; host memory is pinned for a CUDA device.
    """
    return DataLoader(
        ClassifierDataset(cases, with_infection=with_infection),
        batch_size=batch_size,
        sampler=sampler,
        shuffle=False,
        num_workers=num_workers,
        collate_fn=CaseCollator(cases),
        pin_memory=device.type == "cuda",
        persistent_workers=num_workers > 0,
        drop_last=False,
    )
