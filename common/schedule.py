"""The evaluation schedule: where a run stops training to evaluate, and what it logs there.

A schedule is a list of `Block`s. The harness trains each block up to its
`until_step` (optimizer steps since the run started), logs `block_start` /
`block_stop` with the block's `first_epoch_num` and `epoch_count`, and, where
`evaluate` is set, evaluates and logs `eval_accuracy` at `epoch_num`.

Each benchmark counts in one unit, the one its RCP and NVIDIA's v3.0 logs use,
with one convention per kind of unit:
- epochs (resnet, maskrcnn, ssd, unet3d, rnnt): 1-based — a block covers
  epochs first_epoch_num .. first_epoch_num + epoch_count - 1 and its
  evaluation is labelled with the last of them (epochs completed);
- amounts (bert: samples; gpt3: tokens; dlrm_dcnv2: fractions of the epoch):
  first_epoch_num is the amount trained before the block (0 for the first),
  epoch_count the block's amount, epoch_num the amount trained at the eval
  (dlrm_dcnv2: one step less, as HugeCTR labels it; see `fractions_of_epoch`).
One constructor per cadence the rules give; see each for the rule.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence


@dataclass(frozen=True)
class Block:
    until_step: int  # train until this many optimizer steps of the run
    first_epoch_num: int | float
    epoch_count: int | float
    epoch_num: int | float  # logged with the evaluation (nominal; a benchmark may report the measured amount)
    evaluate: bool = True


def at_epochs(eval_epochs: Sequence[int], steps_per_epoch: int, block_epochs: int | None = None) -> list[Block]:
    """Evaluate after each epoch of `eval_epochs` (1-based, rising); blocks end at every evaluation and, with
    `block_epochs`, every that many epochs in between as well (blocks without an evaluation)."""
    if steps_per_epoch <= 0:
        raise ValueError(f"an epoch of {steps_per_epoch} steps")
    if not eval_epochs or eval_epochs[0] < 1 or any(b <= a for a, b in zip(eval_epochs, eval_epochs[1:])):
        raise ValueError(f"evaluation epochs {list(eval_epochs)} must rise from 1 or more")
    ends = set(eval_epochs)
    if block_epochs:
        ends |= set(range(block_epochs, eval_epochs[-1] + 1, block_epochs))
    blocks, first = [], 1
    for last in sorted(ends):
        blocks.append(Block(last * steps_per_epoch, first, last - first + 1, last, evaluate=last in eval_epochs))
        first = last + 1
    return blocks


def every_n_epochs(num_epochs: int, steps_per_epoch: int, period: int = 1, offset: int = 0) -> list[Block]:
    """Evaluations at epochs offset+1, offset+1+period, ... <= num_epochs.

    rules (resnet): every 4 epochs, first-eval offset 0-3; maskrcnn, ssd, rnnt:
    every epoch (period 1). Epochs after the last evaluation could never
    produce a result, so they are not trained.
    """
    if not 0 <= offset < period:
        raise ValueError(f"eval offset {offset} must be in [0, {period})")
    return at_epochs(list(range(offset + 1, num_epochs + 1, period)), steps_per_epoch)


def from_epoch(start: int, every: int, max_epochs: int, steps_per_epoch: int) -> list[Block]:
    """rules (unet3d): evaluate at epoch `start`, then every `every` epochs, until `max_epochs`; before
    `start`, blocks of `every` epochs without evaluation (as NVIDIA's v3.0 logs)."""
    if start < 1 or every < 1 or start > max_epochs:
        raise ValueError(f"evaluation from epoch {start} every {every} within {max_epochs} epochs")
    return at_epochs(list(range(start, max_epochs + 1, every)), steps_per_epoch, block_epochs=every)


def at_steps(eval_steps: Sequence[int], amount_per_step: float) -> list[Block]:
    """Evaluate after each step of `eval_steps`, counting progress as amount_per_step per step (an amount unit)."""
    if not eval_steps or eval_steps[0] < 1 or any(b <= a for a, b in zip(eval_steps, eval_steps[1:])):
        raise ValueError(f"evaluation steps {list(eval_steps)} must rise from 1 or more")
    blocks, previous = [], 0
    for end in eval_steps:
        blocks.append(Block(end, previous * amount_per_step, (end - previous) * amount_per_step, end * amount_per_step))
        previous = end
    return blocks


def every_n_samples(every: int, max_samples: int, global_batch: int, max_steps: int | None = None) -> list[Block]:
    """rules (bert): evaluate every `every` training samples, giving up after `max_samples` (and `max_steps`).

    Evaluation k follows step ceil(k * every / global_batch), as NVIDIA counts;
    progress is in samples.
    """
    if every <= 0 or global_batch <= 0:
        raise ValueError(f"evaluation every {every} samples at global batch {global_batch}")
    blocks = []
    for k in range(1, max_samples // every + 1):
        until = math.ceil(k * every / global_batch)
        if max_steps is not None and until > max_steps:
            break
        blocks.append(Block(until, (k - 1) * every, every, k * every))
    return blocks


def every_n_steps(every: int, max_steps: int, amount_per_step: float) -> list[Block]:
    """rules (gpt3): evaluate every `every` steps (the rules' 24,576 sequences rounded up to whole steps),
    progress counted in tokens (amount_per_step = global batch x sequence length)."""
    if every <= 0:
        raise ValueError(f"evaluation every {every} steps")
    return at_steps(list(range(every, max_steps + 1, every)), amount_per_step)


def fractions_of_epoch(evals_per_epoch: int, steps_per_epoch: int, samples_per_step: int,
                       epoch_samples: int) -> list[Block]:
    """rules (dlrm_dcnv2): `evals_per_epoch` evaluations within the one epoch, placed and labelled as NVIDIA's
    v3.0 HugeCTR runs do (their train.py and HugeCTR's `Model::fit`).

    An epoch is M = ceil(epoch_samples / samples_per_step) steps (HugeCTR's `max_iter`); evaluation k follows
    step k x floor(steps_per_epoch / evals_per_epoch) (`eval_interval` = floor(0.05 x rows / batch), the
    same number when steps_per_epoch counts the full batches), k = 1 .. evals_per_epoch, so the last one
    lands up to evals_per_epoch - 1 steps before the end of the epoch, and those steps are not trained.
    `epoch_num` is the 0-based index of the step just trained over M, (step - 1) / M, as HugeCTR passes its
    loop index to the logging callback: 0.04998 for the first evaluation at batch 55,296 (step 3,793 of
    75,869), 0.99942 for the 20th at 135,168 (step 31,020 of 31,037). Blocks count the same way: block k
    covers step indices (k - 1) x every .. k x every - 1, so first_epoch_num is (k - 1) x every / M (0 for
    the first) and epoch_count every / M, and the evaluation is labelled with the block's last step.
    """
    every = steps_per_epoch // evals_per_epoch
    if every == 0:
        raise ValueError(f"an epoch of {steps_per_epoch} steps cannot hold {evals_per_epoch} evaluations")
    if steps_per_epoch * samples_per_step > epoch_samples:
        raise ValueError(f"{steps_per_epoch} steps of {samples_per_step} samples overrun an epoch of {epoch_samples}")
    steps = -(-epoch_samples // samples_per_step)
    return [Block(k * every, (k - 1) * every / steps, every / steps, (k * every - 1) / steps)
            for k in range(1, evals_per_epoch + 1)]
