"""The dev-set WER over ranks: two gloo processes, each decoding its half, score exactly what one process scores.

The decoder is replaced by one whose hypotheses depend on each utterance's length (a random model's greedy
decoding is degenerate: the same label every step, or none), so the edits differ from utterance to utterance
and a shard lost or counted twice changes the rate."""
from unittest import mock

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, Subset

from rnnt import data, evaluate
from rnnt.evaluate import word_error_rate
from rnnt.features import Features
from rnnt.model import RNNTShape, build_rnnt
from rnnt.synthetic import SyntheticSpec, lexicon, train_tokenizer, write_split
from tests.conftest import gloo_ranks

UTTERANCES = 24


@pytest.fixture(scope="module")
def dev_set(tmp_path_factory):
    root = tmp_path_factory.mktemp("rnnt-dev")
    spec = SyntheticSpec()
    rng = np.random.default_rng(5)
    phones, pronunciations = lexicon(rng, spec)
    transcripts = write_split(root, data.EVAL_SPLIT, UTTERANCES, rng, spec, phones, pronunciations)
    train_tokenizer(root, transcripts * 20, spec)
    return root


def length_decoder(model, x, frames, max_symbols):
    """0-2 copies of a label chosen by the utterance's frame count."""
    labels = model.shape.num_labels
    return [[int(n) % (labels - 1) + 1] * (int(n) % 3) for n in frames]


def score(root, rank: int = 0, world: int = 1, indices=None) -> float:
    """The WER over `indices` (default: this rank's share of the whole set) of the length decoder."""
    tokenizer = data.Tokenizer(data.tokenizer_path(root))
    utterances = data.read_manifest(root, data.EVAL_SPLIT, tokenizer)
    model = build_rnnt(RNNTShape.debug(len(tokenizer)), 0.5).eval()
    indices = range(rank, len(utterances), world) if indices is None else indices
    loader = DataLoader(Subset(data.EvalUtterances(utterances), indices), batch_size=5, collate_fn=data.collate)
    with torch.no_grad(), mock.patch.object(evaluate, "greedy_decode", length_decoder):
        return word_error_rate(model, Features(), loader, tokenizer, torch.device("cpu"))


def _score_shard(rank: int, world: int, store: str, root: str, queue) -> None:
    import torch.distributed as torch_dist
    torch_dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world)
    try:
        queue.put((rank, score(root, rank, world)))
    finally:
        torch_dist.destroy_process_group()


def test_two_ranks_sum_their_edits_and_words_into_the_one_process_wer(dev_set, tmp_path):
    whole = score(dev_set)
    halves = [score(dev_set, indices=range(r, UTTERANCES, 2)) for r in range(2)]
    assert whole > 0 and halves[0] != whole != halves[1]  # either half alone would be a different rate
    scores = gloo_ranks(_score_shard, 2, tmp_path / "store", str(dev_set))
    assert scores[0] == scores[1] == whole  # integer sums in float64: exact
