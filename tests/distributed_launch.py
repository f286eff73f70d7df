"""Launched by test_distributed under torchrun (one launch, so the imports are paid once per process):

1. records which training examples each process draws, epoch by epoch, from a loader built the way the trainer
   builds it (`make_accelerator` + `build_train_loader` + `prepare`), into `<folder>/rank<process index>.json`;
2. then runs `train.py CONFIG` (its `main`) in the same processes.

Usage: torchrun --nproc_per_node 2 tests/distributed_launch.py FOLDER CONFIG
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import train
from src.args import load_config
from src.trainer import build_train_loader, make_accelerator


def record_shards(folder: Path, config: Path) -> None:
    _, _, args = load_config(config)
    accelerator = make_accelerator(args)  # the same settings as the trainer's own, so its state can be shared
    report = {}
    for num_examples in (7, 8):
        loader = accelerator.prepare(build_train_loader(list(range(num_examples)), collate_fn=list, args=args))
        epochs = []
        for epoch in range(2):
            loader.set_epoch(epoch)
            epochs.append([i for batch in loader for i in batch])
        loader.set_epoch(1)  # what a run resumed after the first batch of epoch 1 draws
        resumed = [i for batch in accelerator.skip_first_batches(loader, 1) for i in batch]
        report[num_examples] = {"epochs": epochs, "resumed_epoch_1_after_1_batch": resumed}
    (folder / f"rank{accelerator.process_index}.json").write_text(json.dumps(report), encoding="utf-8")


if __name__ == "__main__":
    record_shards(Path(sys.argv[1]), Path(sys.argv[2]))
    sys.exit(train.main([sys.argv[2]]))
