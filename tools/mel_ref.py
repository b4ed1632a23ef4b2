#!/usr/bin/env python3
"""Numpy reference for Whisper's log-mel front end (whisper/audio.py, without torch/librosa).

  mel_ref.py IN.wav OUT.f32          16-bit mono 16 kHz WAV -> raw LE float32 [80, 3000]
  mel_ref.py --filters OUT.f32       the [80, 201] mel filterbank, for comparing the Rust code
"""

import argparse
import sys
import wave

import numpy as np

SAMPLE_RATE = 16000
N_FFT = 400
HOP = 160
N_MELS = 80
N_SAMPLES = 30 * SAMPLE_RATE  # Whisper always pads to a full 30 s window


def hz_to_mel(f):
    """Slaney mel scale (librosa htk=False): linear below 1 kHz, logarithmic above."""
    f = np.asarray(f, np.float64)
    f_sp, min_log_hz = 200.0 / 3, 1000.0
    min_log_mel, logstep = min_log_hz / f_sp, np.log(6.4) / 27.0
    return np.where(f >= min_log_hz, min_log_mel + np.log(np.maximum(f, min_log_hz) / min_log_hz) / logstep, f / f_sp)


def mel_to_hz(m):
    m = np.asarray(m, np.float64)
    f_sp, min_log_hz = 200.0 / 3, 1000.0
    min_log_mel, logstep = min_log_hz / f_sp, np.log(6.4) / 27.0
    return np.where(m >= min_log_mel, min_log_hz * np.exp(logstep * (m - min_log_mel)), f_sp * m)


def mel_filters(sr=SAMPLE_RATE, n_fft=N_FFT, n_mels=N_MELS):
    """librosa.filters.mel(sr, n_fft, n_mels, htk=False, norm='slaney') as float32 [n_mels, n_fft/2+1]."""
    fft_freqs = np.linspace(0, sr / 2, n_fft // 2 + 1)
    mel_f = mel_to_hz(np.linspace(hz_to_mel(0.0), hz_to_mel(sr / 2), n_mels + 2))
    fdiff = np.diff(mel_f)
    ramps = mel_f[:, None] - fft_freqs[None, :]
    lower = -ramps[:-2] / fdiff[:-1, None]
    upper = ramps[2:] / fdiff[1:, None]
    weights = np.maximum(0, np.minimum(lower, upper))
    # Slaney norm: each triangle has unit area in Hz.
    weights *= (2.0 / (mel_f[2:] - mel_f[:-2]))[:, None]
    return weights.astype(np.float32)


def log_mel(audio):
    """float audio in [-1, 1] at 16 kHz -> float32 [80, 3000] for the first 30 s."""
    audio = np.asarray(audio, np.float64)[:N_SAMPLES]
    audio = np.pad(audio, (0, N_SAMPLES - len(audio)))
    # torch.stft(center=True, pad_mode='reflect') with a periodic Hann window.
    padded = np.pad(audio, N_FFT // 2, mode="reflect")
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(N_FFT) / N_FFT)
    n_frames = 1 + (len(padded) - N_FFT) // HOP
    frames = np.lib.stride_tricks.as_strided(
        padded, (n_frames, N_FFT), (padded.strides[0] * HOP, padded.strides[0]))
    power = np.abs(np.fft.rfft(frames * window, axis=1)) ** 2  # [n_frames, 201]
    power = power[:-1]  # Whisper drops the last STFT frame: 3001 -> 3000
    mel = mel_filters().astype(np.float64) @ power.T  # [80, 3000]
    log_spec = np.log10(np.maximum(mel, 1e-10))
    log_spec = np.maximum(log_spec, log_spec.max() - 8.0)
    return ((log_spec + 4.0) / 4.0).astype(np.float32)


def read_wav(path):
    with wave.open(str(path), "rb") as w:
        if (w.getnchannels(), w.getsampwidth(), w.getframerate()) != (1, 2, SAMPLE_RATE):
            sys.exit(f"{path}: need 16-bit mono {SAMPLE_RATE} Hz WAV")
        pcm = np.frombuffer(w.readframes(w.getnframes()), "<i2")
    return pcm.astype(np.float32) / 32768.0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("wav", nargs="?")
    ap.add_argument("out", nargs="?")
    ap.add_argument("--filters", help="write the [80, 201] filterbank as raw LE float32")
    args = ap.parse_args()
    if args.filters:
        mel_filters().astype("<f4").tofile(args.filters)
    if args.wav and args.out:
        log_mel(read_wav(args.wav)).astype("<f4").tofile(args.out)
    elif args.wav or not args.filters:
        ap.error("give IN.wav OUT.f32, --filters OUT.f32, or both")


if __name__ == "__main__":
    main()
