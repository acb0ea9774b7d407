"""The RNN-T front end: frame counts, per-utterance normalisation, speed perturbation, silence, SpecAugment."""
import numpy as np
import pytest
import torch

from rnnt.features import Features, feature_frames, nonsilent, spec_augment, speed_perturb


def tone(seconds, hz=440.0, rate=16000):
    t = np.arange(int(seconds * rate)) / rate
    return (0.3 * np.sin(2 * np.pi * hz * t)).astype(np.float32)


def test_features_are_240_wide_every_30_ms_and_zero_past_each_length():
    audio = [tone(1.0), tone(0.55, 880)]
    lengths = torch.tensor([len(a) for a in audio])
    batch = torch.zeros(2, int(lengths.max()))
    for i, a in enumerate(audio):
        batch[i, :len(a)] = torch.from_numpy(a)
    x, frames = Features()(batch, lengths)
    assert frames.tolist() == [feature_frames(16000), feature_frames(8800)] == [34, 19]  # 101 and 56 STFT frames
    assert x.shape == (34, 2, 240)
    assert torch.all(x[19:, 1] == 0) and x[:19, 1].abs().sum() > 0


def test_each_mel_bin_is_normalised_over_the_utterances_own_frames():
    features = Features()
    audio = torch.from_numpy(np.stack([tone(0.5), np.pad(tone(0.3, 300), (0, 3200))]))
    x, frames = features.log_mel(audio, torch.tensor([8000, 4800]))
    assert frames.tolist() == [51, 31]
    for b, n in enumerate(frames.tolist()):
        valid = x[b, :, :n]
        assert torch.allclose(valid.mean(1), torch.zeros(80), atol=1e-4)
        assert torch.allclose(valid.std(1, unbiased=False), torch.ones(80), atol=1e-3)
        assert torch.all(x[b, :, n:] == 0)


def test_log_mel_is_torchaudios_mel_spectrogram_of_the_dithered_pre_emphasised_audio():
    """An independent front end: torchaudio's MelSpectrogram (power 2, slaney) after the same dither draws and
    pre-emphasis, then log and normalisation, matches Features.log_mel."""
    import torchaudio

    audio = torch.from_numpy(tone(0.7, 523) + tone(0.7, 1900)[::-1].copy())[None]
    torch.manual_seed(3)
    x, frames = Features().log_mel(audio, torch.tensor([audio.shape[1]]))
    torch.manual_seed(3)
    dithered = audio + 1e-5 * torch.randn_like(audio)
    emphasised = torch.cat([dithered[:, :1] * 0.03, dithered[:, 1:] - 0.97 * dithered[:, :-1]], dim=1)
    mel = torchaudio.transforms.MelSpectrogram(16000, n_fft=512, win_length=320, hop_length=160, f_min=0.0,
                                               f_max=8000.0, n_mels=80, power=2.0, norm="slaney",
                                               mel_scale="slaney")(emphasised)
    log = torch.log(mel.clamp(min=1e-20))
    expected = (log - log.mean(2, keepdim=True)) / log.std(2, unbiased=False, keepdim=True)
    assert frames.tolist() == [71] and x.shape == expected.shape == (1, 80, 71)
    torch.testing.assert_close(x, expected, atol=2e-4, rtol=1e-4)


def direct_log_mel(features, audio, lengths):
    """Features.log_mel as its docstring states it, one full-size operation per step (its code until 2026-12-08:
    the tail masked by multiplication, pre-emphasis by concatenation, out-of-place squares)."""
    mask = torch.arange(audio.shape[1])[None] < lengths[:, None]
    audio = audio + 1e-5 * torch.randn_like(audio) * mask
    audio = torch.cat([audio[:, :1] * (1 - 0.97), audio[:, 1:] - 0.97 * audio[:, :-1]], dim=1) * mask
    spec = torch.stft(audio, 512, 160, 320, features.window, center=True, pad_mode="reflect", return_complex=True)
    x = torch.log(torch.clamp(torch.matmul(features.fbanks.T, spec.real ** 2 + spec.imag ** 2), min=1e-20))
    frames = lengths // 160 + 1
    valid = (torch.arange(x.shape[2])[None] < frames[:, None])[:, None]
    count = frames[:, None, None].to(x.dtype)
    mean = (x * valid).sum(2, keepdim=True) / count
    std = ((((x - mean) * valid) ** 2).sum(2, keepdim=True) / count).sqrt()
    return (x - mean) / std.clamp(min=1e-20) * valid, frames


def test_log_mel_equals_the_direct_formula_bit_for_bit_on_a_padded_batch():
    """The fewer-pass log_mel computes the same bits (so the seed sweeps of docs/sweeps/rnnt.md still hold), on a
    batch whose utterances end at different lengths (the padding, and the sample after each end, masked)."""
    rng = np.random.default_rng(0)
    lengths = torch.tensor([16000, 9999, 12345, 161, 16000, 4000])
    audio = torch.zeros(len(lengths), int(lengths.max()))
    for b, n in enumerate(lengths.tolist()):
        audio[b, :n] = torch.from_numpy((0.3 * rng.standard_normal(n)).astype(np.float32))
    features, before = Features(), audio.clone()
    torch.manual_seed(11)
    x, frames = features.log_mel(audio, lengths)
    assert torch.equal(audio, before)  # the input is left as it was: evaluation replays the same batches
    torch.manual_seed(11)
    expected, expected_frames = direct_log_mel(features, audio, lengths)
    assert torch.equal(frames, expected_frames)
    assert torch.equal(x, expected)
    assert x.abs().sum() > 0


def test_speed_perturbation_scales_the_duration_and_silence_is_trimmed():
    audio = tone(1.0)
    assert len(speed_perturb(audio, 1.15)) == pytest.approx(1.15 * 16000, abs=2)  # slower: longer
    assert len(speed_perturb(audio, 0.85)) == pytest.approx(0.85 * 16000, abs=2)
    assert speed_perturb(audio, 1.0) is audio
    padded = np.concatenate([np.zeros(8000, np.float32), audio, np.zeros(16000, np.float32)])
    trimmed = nonsilent(padded)
    assert 16000 <= len(trimmed) <= 16000 + 2 * 2048 and trimmed.max() == pytest.approx(0.3, rel=1e-3)


def test_speed_perturbation_is_torchaudios_resample_sample_for_sample():
    import torchaudio.functional

    audio = np.random.default_rng(0).standard_normal(23_456).astype(np.float32) * 0.1
    for rate in (0.85, 0.93, 1.07, 1.15, 0.93):  # 0.93 twice: the second call reuses the cached kernel
        new_rate = round(rate * 100) * 160
        expected = torchaudio.functional.resample(torch.from_numpy(audio), 16000, new_rate).numpy()
        assert np.array_equal(speed_perturb(audio, rate), expected)


def test_spec_augment_masks_at_most_the_rules_widths():
    x = torch.ones(3, 80, 200)
    frames = torch.tensor([200, 120, 40])
    out = spec_augment(x, frames, torch.Generator().manual_seed(0))
    for b, n in enumerate(frames.tolist()):
        masked_bins = int((out[b].sum(1) == 0).sum())
        masked_frames = int((out[b].sum(0) == 0).sum())
        assert masked_bins <= 2 * 20
        assert masked_frames <= 10 * round(0.03 * n)
    assert (out == 0).any() and (out == 1).any()


def test_spec_augment_masks_what_the_reference_loop_masks_with_the_same_draws():
    """The masks are built at once from draws made in the reference's order: slice by slice, as the reference
    zeroes them, the same generator gives the same zeros (and leaves the generator where it does)."""
    x = torch.randn(5, 80, 90)
    frames = torch.tensor([90, 70, 33, 10, 1])
    generator = torch.Generator().manual_seed(4)
    out = spec_augment(x, frames, generator)
    draws = torch.Generator().manual_seed(4)
    expected = x.clone()
    for b in range(5):
        for _ in range(2):
            width = int(torch.randint(0, 21, (1,), generator=draws))
            start = int(torch.randint(0, 80 - width + 1, (1,), generator=draws))
            expected[b, start:start + width] = 0
        widest = round(0.03 * int(frames[b]))
        for _ in range(10):
            width = int(torch.randint(0, widest + 1, (1,), generator=draws))
            start = int(torch.randint(0, max(0, 90 - width) + 1, (1,), generator=draws))
            expected[b, :, start:start + width] = 0
    assert torch.equal(out, expected) and (out == 0).any()
    assert torch.equal(generator.get_state(), draws.get_state())


def test_silence_trimming_equals_the_direct_moving_window():
    """The O(samples) running sum keeps the same span as a 2048-tap convolution of the power."""
    rng = np.random.default_rng(0)
    for _ in range(5):
        audio = np.concatenate([rng.normal(0, 1e-5, 5000), rng.normal(0, 0.3, 20000), rng.normal(0, 1e-5, 7000)])
        power = np.convolve(audio ** 2, np.ones(2048) / 2048, mode="valid")
        loud = np.flatnonzero(power > power.max() * 1e-6)
        assert np.array_equal(nonsilent(audio), audio[loud[0]:loud[-1] + 2048])


def test_features_ignore_bf16_autocast():
    audio = torch.from_numpy(np.stack([tone(0.5), tone(0.5, 660)]))
    lengths = torch.tensor([8000, 8000])
    torch.manual_seed(0)  # the same dither
    expected, _ = Features()(audio, lengths)
    torch.manual_seed(0)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got, _ = Features()(audio, lengths)
    assert got.dtype == torch.float32 and torch.equal(got, expected)


def slaney_mel(hz):
    """Slaney's Auditory Toolbox scale: linear below 1 kHz (3 mels per 200 Hz), logarithmic above."""
    hz = np.asarray(hz, np.float64)
    return np.where(hz < 1000, 3 * hz / 200, 15 + 27 * np.log(np.maximum(hz, 1e-9) / 1000) / np.log(6.4))


def slaney_hz(mel):
    mel = np.asarray(mel, np.float64)
    return np.where(mel < 15, 200 * mel / 3, 1000 * np.exp((mel - 15) * np.log(6.4) / 27))


@pytest.mark.parametrize("m", [0, 20, 57, 79])
def test_mel_filters_are_slaney_triangles_of_unit_area(m):
    """Filter m rises from edge m to m + 1 and falls to m + 2 (82 edges equally spaced in mel over 0-8 kHz),
    scaled by 2 / (its width in Hz), at the 257 FFT bin frequencies."""
    edges = slaney_hz(np.linspace(slaney_mel(0.0), slaney_mel(8000.0), 82))
    bins = np.linspace(0, 8000, 257)
    low, centre, high = edges[m], edges[m + 1], edges[m + 2]
    expected = np.maximum(0, np.minimum((bins - low) / (centre - low), (high - bins) / (high - centre)))
    expected *= 2 / (high - low)
    assert np.allclose(Features().fbanks[:, m].double().numpy(), expected, atol=1e-7)
    assert expected.max() > 0  # every filter covers at least one bin


def test_spec_augment_draws_two_frequency_and_ten_time_masks_per_utterance():
    x = torch.ones(200, 80, 500)
    frames = torch.full((200,), 500)
    out = spec_augment(x, frames, torch.Generator().manual_seed(1))
    bins = (out.sum(2) == 0).sum(1).double()  # masked mel bins of each utterance
    times = (out.sum(1) == 0).sum(1).double()  # masked frames
    # Two widths U{0..20}: 20 bins on average, fewer where they overlap; ten U{0..15}: 75 frames, less overlap.
    assert 16 < bins.mean() <= 20 and bins.max() <= 40
    assert 60 < times.mean() <= 75 and times.max() <= 150
