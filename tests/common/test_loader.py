"""common.loader.Replay: an evaluation set read once, then replayed from memory."""
import pytest

from common.loader import Replay


class CountingLoader:
    """A deterministic 'loader' that counts how often it is read."""

    def __init__(self, n):
        self.n, self.reads = n, 0

    def __iter__(self):
        self.reads += 1
        for i in range(self.n):
            yield [i, i * i]


def test_every_pass_yields_the_same_batches_and_the_loader_is_read_once():
    source = CountingLoader(5)
    replay = Replay(source)
    first, second, third = list(replay), list(replay), list(replay)
    assert first == second == third == [[i, i * i] for i in range(5)]
    assert source.reads == 1
    assert second[2] is first[2]  # the same objects, not copies


def test_a_pass_cut_short_keeps_nothing_and_the_next_reads_the_loader_again():
    source = CountingLoader(4)
    replay = Replay(source)
    for batch in replay:
        if batch[0] == 1:
            break
    assert replay.batches is None
    assert list(replay) == [[i, i * i] for i in range(4)]
    assert list(replay) == [[i, i * i] for i in range(4)]
    assert source.reads == 2


def test_an_error_while_reading_is_raised_and_nothing_is_kept():
    def broken():
        yield [0]
        raise OSError("dev-clean/0-0-0001.wav: truncated")

    class Loader:
        def __iter__(self):
            return broken()

    replay = Replay(Loader())
    with pytest.raises(OSError, match="truncated"):
        list(replay)
    assert replay.batches is None
