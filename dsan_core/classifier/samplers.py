"""Training-set samplers: uniform (US) and size-balanced (SS), METHOD.md "Two sampling strategies".

Both are `torch.utils.data.Sampler`s over dataset indices 0..n-1. The size-balanced
sampler gets one sampling-group label per index ("covid_small", "covid_large",
"cap_small", "cap_large"; see `SAMPLING_GROUPS`) and, for every sample, draws a group
with probability W_g / sum(W) and then a scan uniformly inside that group.

Randomness is explicit: each sampler takes a `seed`; epoch e draws from a
`torch.Generator` seeded with (seed, e), so a run resumed at epoch e sees the same
order as an uninterrupted one. The epoch advances by one after every pass; call
`set_epoch` to choose it.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence

import numpy as np
import torch
from torch.utils.data import Sampler

from dsan_core import groups
from dsan_core.errors import InputError
from dsan_core.groups import SAMPLING_GROUPS


def _fold_prefix(fold: str | int | None) -> str:
    return "" if fold is None else f"fold {fold}: "


def size_balanced_weights(
    group_counts: Mapping[str, int], *, fold: str | int | None = None
) -> dict[str, float]:
    """W = [N_covid_large / N_covid_small, 1, 1, N_cap_small / N_cap_large].

    `group_counts` maps each sampling group to its number of scans in the TRAINING
    part of a fold; a missing group counts as empty. Raises `InputError` (reason
    "empty_group" when a group is empty: the SS branch needs all four) whose message
    names the fold, when given, and the group. The formula itself lives in
    `dsan_core.groups`, which the split audit uses too; this adds the fold.
    """
    try:
        return groups.size_balanced_weights(group_counts)
    except InputError as error:
        raise InputError(f"{_fold_prefix(fold)}{error}", reason=error.reason) from None


def _epoch_generator(seed: int, epoch: int) -> torch.Generator:
    # Mixing seed and epoch through numpy's SeedSequence keeps (seed, e) and
    # (seed + 1, e - 1) from sharing a stream.
    state = np.random.SeedSequence([seed, epoch]).generate_state(2, dtype=np.uint32)
    return torch.Generator().manual_seed(int(state[0]) << 32 | int(state[1]))


class _EpochSampler(Sampler[int]):
    def __init__(self, seed: int) -> None:
        self.seed = int(seed)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Make the next pass draw epoch `epoch`'s order."""
        self.epoch = int(epoch)

    def _next_generator(self) -> torch.Generator:
        generator = _epoch_generator(self.seed, self.epoch)
        self.epoch += 1
        return generator


class UniformSampler(_EpochSampler):
    """Every index 0..n-1 exactly once per epoch, in a seeded random order."""

    def __init__(self, n_scans: int, *, seed: int) -> None:
        if n_scans < 1:
            raise InputError(f"expected at least one training scan, found {n_scans}")
        super().__init__(seed)
        self.n_scans = int(n_scans)

    def __len__(self) -> int:
        return self.n_scans

    def __iter__(self) -> Iterator[int]:
        order = torch.randperm(self.n_scans, generator=self._next_generator())
        return iter(order.tolist())


class SizeBalancedSampler(_EpochSampler):
    """Size-balanced sampling (SS) with replacement over scans labelled by sampling group.

    `groups[i]` is the sampling group of dataset index i. `weights` defaults to
    `size_balanced_weights` of the group sizes in `groups`; `num_samples` (draws
    per epoch) defaults to the number of training scans. `fold` only labels errors.
    """

    def __init__(
        self,
        groups: Sequence[str],
        *,
        seed: int,
        weights: Mapping[str, float] | None = None,
        num_samples: int | None = None,
        fold: str | int | None = None,
    ) -> None:
        super().__init__(seed)
        labels = np.asarray(groups, dtype=object)
        prefix = _fold_prefix(fold)
        unknown = sorted({str(label) for label in labels} - set(SAMPLING_GROUPS))
        if unknown:
            raise InputError(
                f"{prefix}expected sampling groups {list(SAMPLING_GROUPS)}, found {unknown}"
            )
        counts = {group: int(np.count_nonzero(labels == group)) for group in SAMPLING_GROUPS}
        self.weights = (
            dict(weights) if weights is not None else size_balanced_weights(counts, fold=fold)
        )
        self.counts = counts
        self.num_samples = len(labels) if num_samples is None else int(num_samples)
        if self.num_samples < 1:
            raise InputError(
                f"{prefix}expected at least one sample per epoch, found {self.num_samples}"
            )
        # Indices grouped by sampling group, with each group's start and size, so a
        # draw is offset[g] + floor(u * size[g]).
        members = [np.flatnonzero(labels == group) for group in SAMPLING_GROUPS]
        self._members = torch.as_tensor(np.concatenate(members), dtype=torch.long)
        sizes = np.array([len(m) for m in members], dtype=np.int64)
        self._sizes = torch.as_tensor(sizes)
        self._offsets = torch.as_tensor(np.concatenate([[0], np.cumsum(sizes)[:-1]]))
        raw = np.array([float(self.weights.get(group, 0.0)) for group in SAMPLING_GROUPS])
        if np.any(raw < 0) or np.any((raw > 0) & (sizes == 0)) or raw.sum() <= 0:
            raise InputError(
                f"{prefix}weights {self.weights} must be >= 0, not all 0, and 0 for empty groups "
                f"(group sizes {counts})"
            )
        self.probabilities = torch.as_tensor(raw / raw.sum(), dtype=torch.float64)

    def __len__(self) -> int:
        return self.num_samples

    def __iter__(self) -> Iterator[int]:
        generator = self._next_generator()
        group = torch.multinomial(
            self.probabilities, self.num_samples, replacement=True, generator=generator
        )
        uniform = torch.rand(self.num_samples, generator=generator, dtype=torch.float64)
        sizes = self._sizes[group]
        within = torch.minimum((uniform * sizes).long(), sizes - 1)
        return iter(self._members[self._offsets[group] + within].tolist())
