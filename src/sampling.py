"""Length-grouped training order: batches of sentences of similar length, so little of a batch is padding.

Built on transformers' `get_length_grouped_indices` (the order behind TrainingArguments.group_by_length); the
generator is reseeded from (seed, epoch), so a resumed run draws exactly the order the uninterrupted one did.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch
from torch.utils.data import Sampler
from transformers.trainer_pt_utils import get_length_grouped_indices


class EpochLengthGroupedSampler(Sampler[int]):
    """Random mega-batches of 50 batches, each sorted by length; a fresh, reproducible order every epoch."""

    def __init__(self, lengths: Sequence[int], *, batch_size: int, seed: int) -> None:
        self.lengths = lengths
        self.batch_size = batch_size
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Called by the loader at the start of every epoch (Accelerate forwards it)."""
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.lengths)

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        return iter(get_length_grouped_indices(self.lengths, self.batch_size, generator=generator))
