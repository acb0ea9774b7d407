"""The RNN-T audio front end (the reference's DALI pipeline, rnnt/pytorch/common/data/dali/pipeline.py).

Per utterance, on the loader workers (`prepare_audio`): speed perturbation for
training (resampling by r ~ U(0.85, 1.15), the result played at 16 kHz: r > 1
is slower and longer), then the non-silent region (short-term power within
60 dB of the utterance's maximum, 2048-sample windows) for training and
evaluation. Per batch, on the device (`Features`): dither (1e-5 x N(0, 1)),
pre-emphasis 0.97, |STFT|^2 (512-point FFT of 20 ms Hann windows every 10 ms,
centred, reflect-padded), 80 slaney mel filters over 0-8 kHz, natural log
(floor 1e-20), normalisation of each mel bin over the utterance's frames
(population std), zero padding past each length; for training SpecAugment
(2 frequency masks of 0-20 bins, 10 time masks of 0-3% of the utterance);
then frame splicing: 3 consecutive frames stacked, every third kept (240
features every 30 ms). Output (T, B, 240) and the lengths.
"""
from __future__ import annotations

import functools
import math

import numpy as np
import torch
import torch.nn as nn

from rnnt.config import RULES
from rnnt.model import stack_time

SILENCE_WINDOW = 2048  # DALI NonsilentRegion's default window
SILENCE_DB = -60.0


@functools.lru_cache(maxsize=64)
def _resampler(new_rate: int) -> nn.Module:
    """torchaudio's resampler from 16 kHz to `new_rate`, its sinc kernel built once (in float32, as
    torchaudio.functional.resample builds it for a float32 waveform on every call: the same samples)."""
    import torchaudio.transforms  # only training's loader perturbs

    return torchaudio.transforms.Resample(RULES.sample_rate, new_rate, dtype=torch.float32)


def speed_perturb(audio: np.ndarray, rate: float) -> np.ndarray:
    """`audio` resampled by `rate` (rounded to 1/100: a 16 kHz / (rate x 16 kHz) ratio of small integers keeps the
    resampling filter short) and played at the original rate: `rate` x the duration."""
    new_rate = round(rate * 100) * RULES.sample_rate // 100
    if new_rate == RULES.sample_rate:
        return audio
    return _resampler(new_rate)(torch.from_numpy(audio)).numpy()


def nonsilent(audio: np.ndarray) -> np.ndarray:
    """The span from the first to the last 2048-sample window whose mean power is within 60 dB of the loudest."""
    if audio.size < SILENCE_WINDOW:
        return audio
    energy = np.concatenate([[0.0], np.cumsum(audio.astype(np.float64) ** 2)])  # a moving mean in O(samples)
    power = (energy[SILENCE_WINDOW:] - energy[:-SILENCE_WINDOW]) / SILENCE_WINDOW
    loud = np.flatnonzero(power > power.max() * 10 ** (SILENCE_DB / 10))
    if loud.size == 0:
        return audio
    return audio[loud[0]:loud[-1] + SILENCE_WINDOW]


def prepare_audio(audio: np.ndarray, rng: np.random.Generator | None) -> np.ndarray:
    """Training (with `rng`): speed perturbation, then silence trimming; evaluation: trimming only."""
    if rng is not None:
        audio = speed_perturb(audio, rng.uniform(RULES.speed_min, RULES.speed_max))
    return nonsilent(audio).astype(np.float32)


class Features(nn.Module):
    """Batched log-mel features, SpecAugment (training) and frame splicing; see the module docstring."""

    def __init__(self):
        super().__init__()
        from torchaudio.functional import melscale_fbanks

        fbanks = melscale_fbanks(RULES.n_fft // 2 + 1, 0.0, RULES.sample_rate / 2, RULES.mels, RULES.sample_rate,
                                 norm="slaney", mel_scale="slaney")
        self.register_buffer("fbanks", fbanks, persistent=False)  # (257, 80)
        self.register_buffer("window", torch.hann_window(RULES.window), persistent=False)

    def frames(self, samples: torch.Tensor) -> torch.Tensor:
        return samples // RULES.hop + 1  # centred STFT frames of each utterance

    @torch.no_grad()
    def log_mel(self, audio: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, S) zero-padded float audio and sample counts -> normalised (B, 80, T) log-mel frames, frame counts.

        The values of `a = audio + 1e-5 N(0, 1) x mask`, `cat(a[:1] x 0.03, a[1:] - 0.97 a[:-1]) x mask` and
        `real^2 + imag^2` bit for bit (tests/rnnt/test_features.py) in fewer passes over the padded batch: the
        padding is filled with zeros instead of multiplied by the mask, pre-emphasis is written in place of a
        concatenation, the squares are taken in place (eval batches of 256: 1.46 -> 0.79 s per dev-set pass on 2
        cores)."""
        audio = audio.float()
        padding = torch.arange(audio.shape[1], device=audio.device)[None] >= lengths[:, None]
        audio = audio + torch.randn_like(audio).mul_(RULES.dither).masked_fill_(padding, 0)
        emphasised = torch.empty_like(audio)
        torch.mul(audio[:, :1], 1 - RULES.preemphasis, out=emphasised[:, :1])
        torch.mul(audio[:, :-1], RULES.preemphasis, out=emphasised[:, 1:])
        torch.sub(audio[:, 1:], emphasised[:, 1:], out=emphasised[:, 1:])
        emphasised.masked_fill_(padding, 0)  # the first padding sample is -0.97 x the last one
        spec = torch.stft(emphasised, RULES.n_fft, RULES.hop, RULES.window, self.window, center=True,
                          pad_mode="reflect", return_complex=True)
        parts = torch.view_as_real(spec)  # (B, 257, T, 2)
        parts.mul_(parts)
        power = parts[..., 0] + parts[..., 1]  # |STFT|^2: no square root to undo (abs().pow(2))
        x = torch.log(torch.clamp(torch.matmul(self.fbanks.T, power), min=1e-20))  # (B, 80, T)
        frames = self.frames(lengths)
        valid = (torch.arange(x.shape[2], device=x.device)[None] < frames[:, None])[:, None]  # (B, 1, T)
        count = frames[:, None, None].to(x.dtype)
        mean = (x * valid).sum(2, keepdim=True) / count
        std = ((((x - mean) * valid) ** 2).sum(2, keepdim=True) / count).sqrt()
        return (x - mean) / std.clamp(min=1e-20) * valid, frames

    @torch.no_grad()
    def forward(self, audio: torch.Tensor, lengths: torch.Tensor, generator: torch.Generator | None = None):
        """(B, S) zero-padded float audio and sample counts -> (T, B, 240) features and frame counts; SpecAugment
        draws from `generator` (a CPU generator) when given: training. Always float32: under bf16 autocast the
        mel matmul would round the energies (the reference computes its features with autocasting disabled)."""
        with torch.autocast(audio.device.type, enabled=False):
            x, frames = self.log_mel(audio, lengths)
        if generator is not None:
            x = spec_augment(x, frames, generator)
        x, frames = stack_time(x.permute(2, 0, 1), frames, RULES.frame_stack)  # (T / 3, B, 240)
        return x, frames


def spec_augment(x: torch.Tensor, frames: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """The reference's SpecAugment on (B, 80, T) features: per utterance 2 frequency masks of width 0-20 bins and
    10 time masks of width 0 to round(3% of its frames), starts drawn over the padded batch length; zeros."""
    batch, mels, t_pad = x.shape

    def draw(high: int) -> int:
        return int(torch.randint(0, high + 1, (1,), generator=generator))

    freq, times = [], []  # (start, width) of each mask, utterance by utterance, drawn in the reference's order
    for b in range(batch):
        for _ in range(RULES.freq_masks):
            width = draw(RULES.freq_mask_max)
            freq.append((draw(mels - width), width))
        widest = round(RULES.time_mask_max * int(frames[b]))
        for _ in range(RULES.time_masks):
            width = draw(widest)
            times.append((draw(max(0, t_pad - width)), width))

    def masked(spans: list[tuple[int, int]], size: int) -> torch.Tensor:
        """(batch, size): True where any of an utterance's (equally many) spans covers the position."""
        start, width = torch.tensor(spans, device=x.device).T
        position = torch.arange(size, device=x.device)
        cover = (position >= start[:, None]) & (position < (start + width)[:, None])  # (spans, size)
        return cover.view(batch, -1, size).any(1)

    keep = ~(masked(freq, mels)[:, :, None] | masked(times, t_pad)[:, None, :])
    return x * keep


def feature_frames(samples: int) -> int:
    """Encoder input frames of an utterance of `samples` samples (after splicing)."""
    return math.ceil((samples // RULES.hop + 1) / RULES.frame_stack)
