"""The evaluation schedules against the cadences of NVIDIA's v3.0 result logs (FACTS.md §8)."""
import math

import pytest

from common import schedule


def evals(blocks):
    return [b.epoch_num for b in blocks if b.evaluate]


def test_resnet_every_4_epochs_with_nvidias_offsets():
    # 1 node (offset 2, 37 epochs): evaluations at 3, 7, ..., 35; the first block is epochs 1-3
    one = schedule.every_n_epochs(37, steps_per_epoch=400, period=4, offset=2)
    assert evals(one) == list(range(3, 36, 4))
    assert (one[0].first_epoch_num, one[0].epoch_count, one[0].until_step) == (1, 3, 3 * 400)
    assert (one[-1].first_epoch_num, one[-1].epoch_count) == (32, 4)
    # 8 nodes: 2, 6, ..., 50 (offset 1)
    assert evals(schedule.every_n_epochs(50, 10, period=4, offset=1)) == list(range(2, 51, 4))
    with pytest.raises(ValueError, match="offset 4"):
        schedule.every_n_epochs(10, 10, period=4, offset=4)


def test_every_epoch_is_one_block_per_epoch_from_epoch_1():
    # maskrcnn, ssd, rnnt: block_start (1, 1), (2, 1), ...; the eval after epoch k is labelled k
    blocks = schedule.every_n_epochs(14, 1232)
    assert [(b.first_epoch_num, b.epoch_count, b.epoch_num) for b in blocks[:2]] == [(1, 1, 1), (2, 1, 2)]
    assert evals(blocks) == list(range(1, 15)) and blocks[-1].until_step == 14 * 1232


def test_unet3d_from_epoch_1000_every_20_in_blocks_of_20():
    blocks = schedule.from_epoch(start=1000, every=20, max_epochs=10_000, steps_per_epoch=3)
    assert all(b.epoch_count == 20 for b in blocks) and blocks[0].first_epoch_num == 1
    assert not any(b.evaluate for b in blocks[:49]) and blocks[49].epoch_num == 1000 and blocks[49].evaluate
    assert evals(blocks)[:26][-1] == 1500  # NVIDIA's 1-node log: 26 evaluations, the last at epoch 1500
    assert evals(blocks)[-1] == 10_000 and blocks[-1].until_step == 30_000
    # a start off the block grid still gets its evaluation at the start epoch
    odd = schedule.from_epoch(start=25, every=20, max_epochs=65, steps_per_epoch=1)
    assert [(b.first_epoch_num, b.epoch_count, b.evaluate) for b in odd] == \
        [(1, 20, False), (21, 5, True), (26, 15, False), (41, 5, True), (46, 15, False), (61, 5, True)]


@pytest.mark.parametrize("nodes, gbs, interval, first_step", [(1, 768, 150_000, 196), (8, 4608, 200_000, 44),
                                                              (64, 3072, 175_000, 57), (96, 4608, 200_000, 44)])
def test_bert_every_n_samples_first_eval_at_nvidias_step(nodes, gbs, interval, first_step):
    blocks = schedule.every_n_samples(interval, max_samples=4_500_000, global_batch=gbs)
    assert blocks[0].until_step == first_step
    assert [(b.first_epoch_num, b.epoch_count, b.epoch_num) for b in blocks[:2]] == \
        [(0, interval, interval), (interval, interval, 2 * interval)]  # samples, the amount trained before
    assert blocks[1].until_step == math.ceil(2 * interval / gbs)
    assert len(schedule.every_n_samples(interval, 4_500_000, gbs, max_steps=first_step)) == 1


def test_gpt3_every_12_steps_counted_in_tokens_from_0():
    # NVIDIA's 64-node log: block_start first_epoch_num 0, evals every 50,331,648 tokens (12 x 2048 x 2048)
    gbs = 2048
    every = math.ceil(24_576 / gbs)
    blocks = schedule.every_n_steps(every, 20_000_000 // gbs, gbs * 2048)
    assert every == 12 and blocks[0].first_epoch_num == 0
    assert [b.epoch_num for b in blocks[:2]] == [50_331_648, 100_663_296] and blocks[23].epoch_num == 1_207_959_552
    assert [b.until_step for b in blocks[:2]] == [12, 24]


@pytest.mark.parametrize("gbs, every, steps, last_step, last_epoch_num", [
    # NVIDIA's v3.0 logs: NVIDIA/results/dgxh100_ngc23.04_merlin_hugectr/dlrm_dcnv2/result_0.txt (1 node; its
    # 15th evaluation is its last), dgxh100_n16_ngc23.04_merlin_hugectr/dlrm_dcnv2/result_0.txt (all 20)
    (55_296, 3_793, 75_869, 56_895, 0.7498978502418643),
    (135_168, 1_551, 31_037, 31_020, 0.9994200470406289),
])
def test_dlrm_twenty_evaluations_at_nvidias_steps_labelled_as_nvidia(gbs, every, steps, last_step, last_epoch_num):
    rows = 4_195_197_692
    blocks = schedule.fractions_of_epoch(20, rows // gbs, gbs, rows)
    assert [b.until_step for b in blocks] == [every * k for k in range(1, 21)]  # the 20th short of rows // gbs
    logged = [b for b in blocks if b.until_step == last_step][0]
    assert logged.epoch_num == last_epoch_num == (last_step - 1) / steps  # exactly, float for float
    assert blocks[0].first_epoch_num == 0 and blocks[1].first_epoch_num == every / steps
    assert all(b.epoch_count == every / steps and b.evaluate for b in blocks)
    assert blocks[0].epoch_num == (every - 1) / steps


def test_dlrm_schedule_rejects_an_epoch_too_short_or_too_long():
    small = schedule.fractions_of_epoch(20, 184, 2048, 23 * 16384)  # the CPU smoke run: 184 steps exactly
    assert [b.until_step for b in small[:3]] == [9, 18, 27] and small[-1].until_step == 180
    assert small[0].epoch_num == 8 / 184
    with pytest.raises(ValueError, match="cannot hold 20 evaluations"):
        schedule.fractions_of_epoch(20, 19, 2048, 19 * 2048)
    with pytest.raises(ValueError, match="overrun an epoch"):
        schedule.fractions_of_epoch(20, 185, 2048, 23 * 16384)
