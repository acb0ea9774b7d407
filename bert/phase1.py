"""The synthetic flow's phase-1 checkpoint: a short, untimed pre-training of the tiny model.

The real benchmark starts phase 2 from `model.ckpt-28252.pt`, a BERT-large
that reached about 34% masked-LM accuracy in phase 1. The synthetic flow makes
its own starting point the same way: it trains the tiny model on the
unpacked synthetic shards for a fixed number of LAMB steps, stopping well
short of the target, and saves it as `{'model': state_dict}` under
`phase1/model.ckpt-<steps>.pt`, the layout `bert.train` loads.
"""
from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import torch

from bert import data
from bert.checkpoint import save_checkpoint
from bert.model import BertConfig, BertForPreTraining
from bert.optim import LAMB, lamb_param_groups, warmup_poly_lr

PHASE1_STEPS = 450
PHASE1_BATCH = 32
PHASE1_LR = 2e-2


def make_phase1_checkpoint(root: Path, spec, steps: int = PHASE1_STEPS) -> Path:
    torch.manual_seed(spec.seed)
    arch = dataclasses.replace(BertConfig.tiny(), dropout=0.0)
    assert (arch.vocab_size, arch.max_positions) == (spec.vocab_size, spec.max_seq_len)
    model = BertForPreTraining(arch)
    optimizer = LAMB(lamb_param_groups(model, 0.01), lr=PHASE1_LR, betas=(0.9, 0.999))
    stream = data.TrainStream(data.list_shards(root / data.VARLENGTH_DIR), batch_size=PHASE1_BATCH,
                              seq_len=spec.max_seq_len, max_predictions=spec.max_predictions, rank=0,
                              world_size=1, seed=spec.seed)
    from bert.train import forward, pretraining_loss  # shared loss; train.py imports nothing from here

    start = time.perf_counter()
    model.train()
    for step, batch in zip(range(1, steps + 1), stream):
        lr = warmup_poly_lr(step, base_lr=PHASE1_LR, warmup_steps=steps // 10, start_warmup_step=0,
                            total_steps=2 * steps)  # stop part-way down the decay
        for group in optimizer.param_groups:
            group["lr"] = lr
        loss = pretraining_loss(*forward(model, batch), batch)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    path = root / data.PHASE1_DIR / f"model.ckpt-{steps}.pt"
    save_checkpoint(model, path)
    print(f"phase 1: {steps} steps of batch {PHASE1_BATCH} in {time.perf_counter() - start:.1f} s, "
          f"final loss {loss.item():.3f} -> {path}")
    return path
