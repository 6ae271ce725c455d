"""Sound: audio texture synthesis and style transfer with random filters (Ulyanov & Lebedev, 2016).

The recipe of Dmitry Ulyanov & Vadim Lebedev, *Audio texture synthesis and style transfer* (2016):

1. a sound y becomes a log-magnitude spectrogram X = log(1 + |STFT(y)|), of shape (F, T):
   F = n_fft/2 + 1 = 1025 frequency bins, T frames (hop 512 at 22,050 Hz: 43 frames a second);
2. X is read as an image of height 1, width T and F channels, and one 1-D convolution over time
   (width 11, N = 4096 random filters, no bias) and a ReLU turn it into features F^l of shape
   (N, 1, T') with T' = T - 10: the network is :class:`RandomConv1d` and nothing in it is trained;
3. the style of a sound is the Gram matrix G = F F^T (N x N) of those features over time, its
   content the features themselves; the output's spectrogram starts from noise and L-BFGS
   minimises  L = α Σ (F - P)^2 + β Σ ((G - A) / M)^2  (M = T', the positions; α = 0 is texture
   synthesis);
4. the phase is recovered with Griffin-Lim, and the sound written.

Ulyanov & Lebedev's code was read (DmitryUlyanov/neural-style-audio-tf, ``neural-style-audio-tf.ipynb``;
DmitryUlyanov/neural-style-audio-torch, ``neural_style_audio_random.lua``, ``get_spectrogram.py``,
``invert_spectrogram.py``) and this module agrees with it on: ``librosa.load``'s 22,050 Hz and
n_fft = 2048 (librosa's hop n_fft/4 = 512), log1p of the STFT magnitude, a "VALID" convolution of
width 11 over time with the frequency bins as channels, 4096 filters drawn from a normal
distribution with std √2 · √(2 / ((F + N) · 11)) (Glorot-normal scaled by √2, no bias), ReLU, the
Gram matrix divided by the number of frames, content loss α Σ (F - P)^2 with α = 1e-2 (the tf
notebook; ``2 * tf.nn.l2_loss``), style loss Σ (G/M - A/M)^2 (``2 * tf.nn.l2_loss``), L-BFGS (scipy's L-BFGS-B, 300 iterations, in tf; optim.lbfgs in torch),
and magnitude exp(X) - 1 before the phase is recovered (500 plain Griffin-Lim iterations from
uniform random phase there). Where this module differs: the losses are the package's own
(:mod:`nst_lessons.losses`: L = 2α L_content + 4N²β E, the same function), so α and β keep U&L's
units whatever N is; the style Gram is rescaled to the output's length (:func:`losses.gram_targets`)
instead of cutting the style to the content's length; the optimiser is the package's
:class:`~nst_lessons.lbfgs.LBFGS` (no line search), so the start is by default noise with the
style's mean spectrum rather than their N(0, 1e-3²) (:func:`starting_noise` says why and measures it); negative log-magnitudes are clamped to 0
before exp(X) - 1; Griffin-Lim is librosa's, with its momentum 0.99 (Perraudin et al.'s fast
Griffin-Lim), which gets further in fewer iterations (:func:`griffin_lim` reports the spectral
convergence ‖|STFT(y)| - S‖ / ‖S‖ it reaches).

I/O: anything libsndfile reads (:mod:`soundfile`: WAV, FLAC, OGG, MP3, AIFF, ...), mixed to mono
(said once, with a :class:`MonoMixWarning`) and resampled with soxr to the working rate; the output
is WAV or FLAC, 16-bit, peak-normalised to :data:`PEAK` (never clipped), written atomically.

Cost: one evaluation costs :meth:`RandomConv1d.flops` (about 1.2e11 FLOP for 10 s at the defaults);
:func:`estimate_memory` and :func:`measure_rate` let a run say what it will cost, and refuse what
cannot fit, before any work.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import sys
import time
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as nnf
from torch import Tensor, nn

from nst_lessons import losses
from nst_lessons.arguments import device as device_type
from nst_lessons.arguments import int_at_least, non_negative, positive
from nst_lessons.arguments import seed as seed_type
from nst_lessons.files import atomic_path, check_outputs, check_writable
from nst_lessons.memory import available_bytes
from nst_lessons.transfer import Loop, Tracker, iteration
from nst_lessons.vgg import default_device

SAMPLE_RATE = 22_050
"""The working sample rate in Hz (librosa.load's default, as in Ulyanov & Lebedev's notebook)."""
N_FFT = 2048
"""STFT window length in samples; F = N_FFT/2 + 1 = 1025 frequency bins."""
HOP = N_FFT // 4
"""STFT hop in samples (librosa's default): 512, 43 frames a second at 22,050 Hz."""
WIDTH = 11
"""The convolution's width in frames (about 0.26 s at 22,050 Hz)."""
FILTERS = 4096
"""N, the number of random filters."""
CONTENT_WEIGHT = 1e-2
"""α in Ulyanov & Lebedev's units (their notebook's ALPHA)."""
STYLE_WEIGHT = 1.0
"""β in Ulyanov & Lebedev's units."""
ITERATIONS = 300
"""L-BFGS iterations (their tf notebook's maxiter)."""
GRIFFIN_LIM_ITERATIONS = 200
"""Griffin-Lim iterations (with momentum; their plain Griffin-Lim ran 500)."""
HISTORY_SIZE = 100
"""m, the L-BFGS history (optim.lbfgs's default, which their torch code used)."""
PEAK = 10 ** (-1 / 20)
"""The output's peak amplitude: -1 dBFS, below full scale, so 16-bit rounding never clips."""
MIN_SAMPLE_RATE, MAX_SAMPLE_RATE = 8_000, 192_000
MEMORY_HEADROOM = 0.9
"""A run may use this share of the free memory (the estimate leaves out allocator overheads)."""
OUTPUT_FORMATS = {".wav": "WAV", ".flac": "FLAC"}
"""Output suffix -> libsndfile format (both written as 16-bit PCM)."""


class AudioError(ValueError):
    """A sound could not be read, is unusable, or a run cannot be done; the message is one line."""


class MonoMixWarning(UserWarning):
    """A file with several channels was mixed to mono."""


def sound_suffixes() -> frozenset[str]:
    """File suffixes libsndfile reads here (``.wav``, ``.flac``, ``.ogg``, ``.mp3``, ...), lower case."""
    import soundfile

    names = {name.lower() for name in soundfile.available_formats()}
    aliases = {"aiff": {"aif", "aiff", "aifc"}, "ogg": {"ogg", "oga", "opus"}, "wavex": {"wav"}, "mat5": {"mat"}}
    return frozenset("." + s for name in names for s in aliases.get(name, {name}))


def is_sound_path(path: str | os.PathLike[str]) -> bool:
    """True when ``path``'s suffix is one libsndfile reads (what ``texture`` dispatches on)."""
    return Path(path).suffix.lower() in sound_suffixes()


# --------------------------------------------------------------------------- reading and writing


def min_samples() -> int:
    """The shortest usable sound, in samples: WIDTH frames, so that the convolution has one output."""
    return (WIDTH - 1) * HOP + 1


def frames(samples: int) -> int:
    """T, the STFT frames of a sound of ``samples`` samples (librosa's centred frames)."""
    return 1 + samples // HOP


@contextlib.contextmanager
def _quiet_decoders() -> Iterator[None]:
    """Silence what libsndfile's decoders print on file descriptor 2 (mpg123's "Note: Illegal
    Audio-MPEG-Header ..." for a broken MP3): the error that follows is reported in one line."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _info(path: Path) -> tuple[int, int, int]:
    """(frames, sample rate, channels) of a sound file, from its header: nothing decoded yet."""
    import soundfile

    if not path.is_file():
        raise AudioError(f"no sound file at {path}")
    try:
        with _quiet_decoders():
            info = soundfile.info(str(path))
    except (soundfile.LibsndfileError, RuntimeError, OSError) as error:
        raise AudioError(f"{path} is not a readable sound ({_reason(error)})") from None
    if info.frames <= 0:
        raise AudioError(f"{path} is empty (no samples)")
    return info.frames, info.samplerate, info.channels


def _reason(error: Exception) -> str:
    return " ".join(str(error).split()) or type(error).__name__


def read_sound(path: str | os.PathLike[str], sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """A sound file as mono float32 samples at ``sample_rate``, shape (S,).

    Several channels are averaged (a :class:`MonoMixWarning` says so); another rate is resampled
    with soxr (librosa's ``soxr_hq``). Refused with :class:`AudioError`: a file libsndfile cannot
    read, an empty one, one shorter than :func:`min_samples` at ``sample_rate``, one that is all
    zeros or holds NaN or infinity.
    """
    import librosa
    import soundfile

    path = Path(path)
    _, rate, channels = _info(path)
    try:
        with _quiet_decoders():
            y, rate = soundfile.read(str(path), dtype="float32", always_2d=True)
    except (soundfile.LibsndfileError, RuntimeError, OSError) as error:
        raise AudioError(f"{path} is not a readable sound ({_reason(error)})") from None
    if y.size == 0:
        raise AudioError(f"{path} is empty (no samples)")
    if not np.isfinite(y).all():
        raise AudioError(f"{path} holds NaN or infinite samples")
    if channels > 1:
        warnings.warn(f"{path.name}: mixed its {channels} channels to mono", MonoMixWarning, stacklevel=2)
    y = y.mean(axis=1)
    if rate != sample_rate:
        y = librosa.resample(y, orig_sr=rate, target_sr=sample_rate, res_type="soxr_hq").astype(np.float32)
    if len(y) < min_samples():
        raise AudioError(
            f"{path} is {len(y) / sample_rate:.3f} s long; at least {min_samples() / sample_rate:.3f} s "
            f"({WIDTH} STFT frames, the filters' width) is needed"
        )
    if not np.any(y):
        raise AudioError(f"{path} is silent (all samples are zero)")
    return y


def check_output(path: str | os.PathLike[str], inputs: Sequence[str | os.PathLike[str]] = ()) -> str:
    """The libsndfile format for ``path`` (WAV or FLAC, from its suffix); :class:`AudioError` if it
    cannot be written there or is one of ``inputs``, however spelled (a symlink, a hard link, ``..``)."""
    path = Path(path)
    fmt = OUTPUT_FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise AudioError(f"cannot write a sound as {path.name!r}; use .wav or .flac")
    if path.is_dir():
        raise AudioError(f"cannot write {path}: it is a directory")
    if not path.parent.is_dir():
        raise AudioError(f"cannot write {path}: folder {path.parent} does not exist")
    check_writable(path.parent)
    check_outputs([("the output", path)], [("the input", given) for given in inputs])
    return fmt


def save_sound(samples: np.ndarray, sample_rate: int, path: str | os.PathLike[str]) -> Path:
    """Write mono ``samples`` (S,) as 16-bit WAV or FLAC, scaled so that the peak is :data:`PEAK`.

    Peak-normalised, not clipped: whatever the optimisation's scale, the loudest sample sits at
    -1 dBFS. Atomic (:func:`nst_lessons.files.atomic_path`): a failure or Ctrl-C leaves nothing.
    """
    import soundfile

    path = Path(path)
    fmt = check_output(path)
    samples = np.asarray(samples, dtype=np.float64)
    peak = np.abs(samples).max(initial=0.0)
    if not (np.isfinite(peak) and peak > 0):
        raise AudioError("the result is silent or not finite; nothing written")
    with atomic_path(path) as tmp:
        soundfile.write(str(tmp), (samples * (PEAK / peak)).astype(np.float32), sample_rate, format=fmt, subtype="PCM_16")
    return path


# --------------------------------------------------------------------------- spectrograms


def spectrogram(samples: np.ndarray) -> np.ndarray:
    """X = log(1 + |STFT|), shape (F, T) = (1025, 1 + S // 512), float32; samples (S,)."""
    import librosa

    return np.log1p(np.abs(librosa.stft(samples, n_fft=N_FFT, hop_length=HOP))).astype(np.float32)


def magnitude(X: np.ndarray) -> np.ndarray:
    """|S| = exp(X) - 1, the linear magnitude of a log spectrogram (F, T); negative X count as 0."""
    return np.expm1(np.maximum(X, 0.0))


def spectral_convergence(samples: np.ndarray, target: np.ndarray) -> float:
    """‖ |STFT(y)| - S ‖_F / ‖S‖_F for samples y (S,) and a target magnitude S (F, T): how far the
    sound's own spectrogram is from the one asked for (0: exactly; the phase is ignored)."""
    import librosa

    got = np.abs(librosa.stft(samples, n_fft=N_FFT, hop_length=HOP))[:, : target.shape[1]]
    return float(np.linalg.norm(got - target) / max(np.linalg.norm(target), 1e-12))


def griffin_lim(X: np.ndarray, samples: int, iterations: int = GRIFFIN_LIM_ITERATIONS, seed: int = 0) -> tuple[np.ndarray, float]:
    """A sound of ``samples`` samples whose spectrogram is close to X (F, T), and its spectral
    convergence (:func:`spectral_convergence`).

    Griffin & Lim (1984): the magnitude alone does not say what the phase is, and not every
    (magnitude, phase) pair is the STFT of some signal; alternately take the inverse STFT and the
    STFT of the result, keeping its phase and putting the wanted magnitude back, which lowers
    ‖|STFT(y)| - S‖ at every step. librosa's version adds momentum (Perraudin et al., 2013).
    Cost: one STFT and one inverse STFT per iteration, O(T · n_fft log n_fft).
    """
    import librosa

    S = magnitude(X)
    y = librosa.griffinlim(S, n_iter=iterations, hop_length=HOP, n_fft=N_FFT, length=samples, random_state=seed)
    return y.astype(np.float32), spectral_convergence(y, S)


# --------------------------------------------------------------------------- the network


class RandomConv1d(nn.Module):
    """Ulyanov & Lebedev's network: one convolution over time with random filters, and a ReLU.

    The input is a log spectrogram X of shape (B, F, T): F frequency bins as channels, T frames as
    positions (an image of height 1). Each of the N filters, (F, WIDTH), spans every frequency and
    ``width`` frames, so a feature says "this spectral pattern happens now". Its weights are drawn
    once from ``seed`` and never trained: with thousands of them, the Gram matrix of random
    features already pins down the spectrum's statistics over time (the same reason random
    multi-scale filters make image textures in Ustyuzhaninov et al., 2017).

    The feature-network interface in short: ``layers`` ("conv", "relu"), ``content_layers`` and
    ``style_layers`` ("relu",), ``random`` (True), :meth:`extract` and :meth:`layer_shapes`; the
    features are (B, N, 1, T') with T' = T - width + 1, so :mod:`nst_lessons.losses` takes them as
    they are (M = 1 · T').

    Args:
        channels: F, the frequency bins (1025 for n_fft 2048).
        filters: N.
        width: the filters' width in frames.
        seed: the weights are a function of (seed, channels, filters, width) only.
        device: where the weights live.
    """

    name = "random-conv1d"
    layers: tuple[str, ...] = ("conv", "relu")
    content_layers: tuple[str, ...] = ("relu",)
    style_layers: tuple[str, ...] = ("relu",)
    random = True

    def __init__(
        self, channels: int, filters: int = FILTERS, width: int = WIDTH, seed: int = 0, device: str | torch.device | None = None
    ) -> None:
        super().__init__()
        self.channels, self.filters, self.width, self.seed = channels, filters, width, seed
        generator = torch.Generator().manual_seed(seed)
        std = math.sqrt(2) * math.sqrt(2.0 / ((channels + filters) * width))
        weight = torch.randn(filters, channels, width, generator=generator) * std
        self.register_buffer("weight", weight.to(device))  # a buffer: never a parameter to train

    def extract(self, X: Tensor, layers: Sequence[str] | None = None) -> dict[str, Tensor]:
        """``{layer: F}`` for X (B, F, T); each F is (B, N, 1, T - width + 1)."""
        wanted = self.layers if layers is None else tuple(layers)
        unknown = [name for name in wanted if name not in self.layers]
        if unknown:
            raise ValueError(f"unknown layer {unknown[0]!r}; expected one of {', '.join(self.layers)}")
        if X.dim() != 3 or X.shape[1] != self.channels:
            raise ValueError(f"expected a spectrogram of shape (B, {self.channels}, T), got {tuple(X.shape)}")
        conv = nnf.conv1d(X, self.weight)
        out = {"conv": conv.unsqueeze(2)}
        if "relu" in wanted:
            out["relu"] = torch.relu(conv).unsqueeze(2)
        return {name: out[name] for name in wanted}

    def forward(self, X: Tensor) -> Tensor:
        """The ReLU features (B, N, 1, T')."""
        return self.extract(X, ("relu",))["relu"]

    def layer_shapes(self, frames: int) -> dict[str, tuple[int, int, int]]:
        """``{layer: (N, 1, T')}`` for a spectrogram of ``frames`` frames."""
        return {name: (self.filters, 1, frames - self.width + 1) for name in self.layers}

    def flops(self, frames: int, content: bool = True) -> float:
        """:func:`evaluation_flops` of this network at T = ``frames``."""
        return evaluation_flops(frames, self.filters, self.channels, self.width, content)

    @property
    def parameter_bytes(self) -> int:
        return self.weight.numel() * self.weight.element_size()


def evaluation_flops(frames: int, filters: int = FILTERS, channels: int = N_FFT // 2 + 1, width: int = WIDTH, content: bool = True) -> float:
    """Floating-point operations of one evaluation of L and dL/dX at T = ``frames``.

    Forward convolution 2 F N w T', its input gradient as much again (no weight gradient: the
    filters are fixed), the Gram matrix 2 N² T' and its backward 4 N² T' (autograd takes the
    gradient through both factors of F F^T); the content term and the ReLU are O(N T')."""
    t = frames - width + 1
    conv = 2 * channels * filters * width * t
    return 2 * conv + 6 * filters**2 * t + (4 if content else 2) * filters * t


def ulyanov_weights(alpha: float, beta: float, filters: int) -> tuple[float, float]:
    """(α', β') of :func:`losses.total_loss` that give Ulyanov & Lebedev's
    L = α Σ (F - P)^2 + β Σ ((G - A) / M)^2 with the package's L_content = ½ Σ (F - P)^2 and
    E = Σ (G - A)^2 / (4 N² M²): α' = 2α, β' = 4 N² β."""
    return 2.0 * alpha, 4.0 * filters**2 * beta


class SoundObjective:
    """L = α' L_content + β' E for the output's log spectrogram x (1, F, T), and dL/dx.

    Called like :class:`nst_lessons.transfer.Objective` (so :func:`~nst_lessons.transfer.iteration`
    and :class:`~nst_lessons.transfer.Loop` run it): sets ``x.grad`` and returns the detached
    ``[total, content, style, 0, 0]`` (weighted), with no host sync.

    Args:
        network: a :class:`RandomConv1d`.
        A: the style Gram (1, N, N) for the output's length.
        P: the content features (1, N, 1, T'), or None for a texture.
        alpha, beta: in the package's units (:func:`ulyanov_weights`).
    """

    def __init__(self, network: RandomConv1d, A: Tensor, P: Tensor | None, alpha: float, beta: float) -> None:
        self.network, self.A, self.P = network, A, P
        self.alpha, self.beta = alpha, beta

    def terms(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """(α' L_content, β' E) at x (1, F, T), as 0-dim tensors."""
        F = self.network(x)
        content = losses.content_loss(F, self.P) if self.P is not None and self.alpha else F.new_zeros(())
        return self.alpha * content, self.beta * losses.style_layer_loss(F, self.A)

    def __call__(self, x: Tensor) -> Tensor:
        content, style = self.terms(x)
        total = losses.total_loss(1.0, content, 1.0, style)
        (x.grad,) = torch.autograd.grad(total, x)
        zero = total.new_zeros(())
        return torch.stack([total, content, style, zero, zero]).detach()


# --------------------------------------------------------------------------- cost


@dataclass(frozen=True)
class SoundCost:
    """What a run will cost, known before it starts.

    Attributes:
        frames: T of the output; ``style_frames``: of the style.
        flops: per evaluation (:meth:`RandomConv1d.flops`); ``iterations`` of them.
        memory: bytes at the peak (:func:`estimate_memory`).
    """

    frames: int
    style_frames: int
    filters: int
    iterations: int
    flops: float
    memory: int

    @property
    def total_flops(self) -> float:
        return self.flops * self.iterations

    def seconds(self, rate: float) -> float:
        """Optimisation time at ``rate`` FLOP/s (Griffin-Lim and I/O not included: seconds at most)."""
        return self.total_flops / rate

    def describe(self, rate: float | None = None, device: torch.device | str = "cpu") -> str:
        """One line: the work, and the time at ``rate`` when it is known."""
        line = (
            f"{self.iterations} iterations x {self.flops / 1e9:.1f} GFLOP = {self.total_flops / 1e12:.2f} TFLOP "
            f"({self.frames} frames, {self.filters} filters), memory about {self.memory / 2**30:.2f} GiB"
        )
        if rate is not None:
            line += f"; about {_duration(self.seconds(rate))} on {device} (measured {rate / 1e9:.0f} GFLOP/s)"
        return line


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def estimate_memory(
    frames: int, style_frames: int, filters: int = FILTERS, channels: int = N_FFT // 2 + 1,
    history_size: int = HISTORY_SIZE, width: int = WIDTH, read_samples: int = 0,
) -> int:  # fmt: skip
    """Bytes a run needs at its peak, float32 throughout.

    The filters (N F w); the optimisation: x, its gradient, the best x, the content spectrogram and
    L-BFGS's 2m + 4 vectors (n = F T each); the features, ReLU output and their gradients for the
    output and the style (N T' each, four times); the Gram matrices G, A, G - A, its square and dG
    (five N x N); the convolution's unfolded input and its gradient (2 F w T'); the audio (the
    read buffer ``read_samples``, then Griffin-Lim's complex STFTs, about six F T complex values).
    """
    n = channels * frames
    t, ts = frames - width + 1, style_frames - width + 1
    floats = (
        filters * channels * width
        + (2 * history_size + 8) * n
        + 4 * filters * (t + ts)
        + 5 * filters**2
        + 2 * channels * width * max(t, ts)
        + 12 * n
        + read_samples
    )
    return 4 * floats


def longest_fitting(budget: float, style_frames: int, filters: int, history_size: int, sample_rate: int = SAMPLE_RATE) -> float:
    """The longest output in seconds whose :func:`estimate_memory` fits in ``budget`` bytes (0 if none)."""
    lo, hi = WIDTH, WIDTH
    if estimate_memory(lo, style_frames, filters, history_size=history_size) > budget:
        return 0.0
    while estimate_memory(hi * 2, style_frames, filters, history_size=history_size) <= budget:
        hi *= 2
    hi *= 2
    while lo < hi - 1:  # the estimate grows with the frames
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if estimate_memory(mid, style_frames, filters, history_size=history_size) <= budget else (lo, mid)
    return (lo - 1) * HOP / sample_rate


def check_fits(
    cost: SoundCost, device: torch.device, history_size: int = HISTORY_SIZE, sample_rate: int = SAMPLE_RATE, available: int | None = None
) -> None:
    """:class:`AudioError` (one line, with the longest output that fits) unless ``cost.memory`` fits
    in :data:`MEMORY_HEADROOM` of the free memory on ``device``."""
    free = available_bytes(device) if available is None else available
    if free is None or cost.memory <= MEMORY_HEADROOM * free:
        return
    longest = math.floor(10 * longest_fitting(MEMORY_HEADROOM * free, cost.style_frames, cost.filters, history_size, sample_rate)) / 10
    advice = f"at most {longest:.1f} s fits with these settings" if longest > 0 else "not even the shortest sound fits"
    raise AudioError(
        f"this run needs about {cost.memory / 2**30:.1f} GiB but {free / 2**30:.1f} GiB are free on {device}; "
        f"{advice} (or use fewer --filters, or a shorter sound)"
    )


def measure_rate(network: RandomConv1d, frames: int = 128) -> float:
    """FLOP/s of this device on this network: one timed evaluation (L and dL/dX, Gram included)
    on ``frames`` frames of noise, after one untimed warm-up, about 2% of a default run's work.
    Shorter probes run at a lower rate than a whole clip does (at 64 frames, a third of it on
    the 2-core test machine), so the estimate errs long."""
    x = torch.randn(1, network.channels, frames, device=network.weight.device).requires_grad_(True)
    F_ = network(x.detach())
    objective = SoundObjective(network, losses.gram_matrix(F_).detach() * 0.5, None, 0.0, 1.0)
    objective(x)  # warm-up: allocations, lazy initialisations, the backend's choice of kernels
    _sync(x.device)
    start = time.perf_counter()
    objective(x)
    _sync(x.device)
    return network.flops(frames, content=False) / max(time.perf_counter() - start, 1e-9)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# --------------------------------------------------------------------------- the run


@dataclass
class SoundResult:
    """What :func:`sound_transfer` returns.

    Attributes:
        samples: the output, mono float32 (S,), not yet normalised.
        sample_rate: Hz.
        X: its optimised log spectrogram (F, T); ``content_X`` and ``style_X`` the inputs' (None
            for a texture's content).
        history: one dict per iteration (``total``, ``content``, ``style`` weighted, ``seconds``).
        iterations: completed; ``seconds``: optimisation wall time; ``griffin_lim_seconds``.
        spectral_convergence: of Griffin-Lim's sound against exp(X) - 1.
        cost: what was announced; ``rate``: the FLOP/s measured for it.
        settings: the resolved arguments.
    """

    samples: np.ndarray
    sample_rate: int
    X: np.ndarray
    content_X: np.ndarray | None
    style_X: np.ndarray
    history: list[dict[str, float]]
    iterations: int
    seconds: float
    griffin_lim_seconds: float
    spectral_convergence: float
    cost: SoundCost
    rate: float
    stopped: str | None = None
    settings: dict[str, object] = field(default_factory=dict)

    @property
    def style_drop(self) -> float:
        """The style loss at the start over the lowest reached (how many times it fell)."""
        styles = [h["style"] for h in self.history]
        return styles[0] / max(min(styles), 1e-300) if styles else 1.0


SoundLike = str | os.PathLike[str] | np.ndarray


def _load(sound: SoundLike, sample_rate: int) -> np.ndarray:
    if isinstance(sound, np.ndarray):
        y = np.asarray(sound, dtype=np.float32).reshape(-1)
        if len(y) < min_samples() or not np.any(y) or not np.isfinite(y).all():
            raise AudioError(f"a sound needs at least {min_samples()} finite samples, not all zero")
        return y
    return read_sound(resolve_sound(sound), sample_rate)


def resolve_sound(name_or_path: str | os.PathLike[str]) -> Path:
    """A file that exists, else an example sound's name (:data:`nst_lessons.data.SOUNDS`)."""
    from nst_lessons import data

    path = Path(name_or_path)
    if path.is_file():
        return path
    if str(name_or_path) in data.SOUNDS:
        return data.example_sound_path(str(name_or_path))
    raise AudioError(f"no sound file at {path} (and no example sound of that name: {', '.join(data.SOUNDS)})")


def _header_frames(sound: SoundLike, sample_rate: int) -> tuple[int, int]:
    """(frames at ``sample_rate``, samples read) of a sound, from its header only."""
    if isinstance(sound, np.ndarray):
        return frames(sound.size), sound.size
    count, rate, channels = _info(resolve_sound(sound))
    return frames(math.ceil(count * sample_rate / rate)), count * channels


def plan(
    content: SoundLike | None, style: SoundLike, *, seconds: float | None = None, filters: int = FILTERS,
    iterations: int = ITERATIONS, sample_rate: int = SAMPLE_RATE, history_size: int = HISTORY_SIZE,
) -> SoundCost:  # fmt: skip
    """The cost of a run, from the files' headers alone (nothing decoded): the output's frames
    (the content's, or ``seconds`` for a texture), FLOPs per evaluation and peak memory."""
    style_frames, style_read = _header_frames(style, sample_rate)
    if content is not None:
        out_frames, content_read = _header_frames(content, sample_rate)
    elif seconds is None:  # a texture as long as its style
        out_frames, content_read = style_frames, 0
    else:
        out_frames, content_read = frames(round(seconds * sample_rate)), 0
    channels = N_FFT // 2 + 1
    flops = evaluation_flops(max(out_frames, WIDTH), filters, channels, WIDTH, content=content is not None)
    memory = estimate_memory(out_frames, style_frames, filters, channels, history_size, read_samples=max(style_read, content_read))
    return SoundCost(out_frames, style_frames, filters, iterations, flops, memory)


INITS = ("spectrum", "noise")
"""How the output's log spectrogram starts: see :func:`starting_noise`."""


def starting_noise(style_X: np.ndarray, frames: int, init: str = "spectrum", seed: int = 0) -> Tensor:
    """The starting log spectrogram (1, F, ``frames``), from ``seed``.

    - ``"noise"``: Ulyanov & Lebedev's N(0, 1e-3²);
    - ``"spectrum"`` (the default): in each frequency bin f, N(μ_f, σ_f²) with the mean and the
      spread over time of the style's log spectrogram ``style_X`` (F, T_s) in that bin: the style's
      average spectrum, and none of its order in time.

    U&L's start relies on scipy's line search to leave the flat region near 0, where G ≈ 0 and
    dE/dX ∝ X; the package's L-BFGS has no line search and crawls there. Measured (2 s of a style,
    a 1 s texture, 256 filters, 60 iterations): the style loss ended at 333 from "noise" and at 11
    from "spectrum" on ``rain``, at 28 and 0.7 on three steady tones.
    """
    if init not in INITS:
        raise AudioError(f"unknown init {init!r}; expected {' or '.join(INITS)}")
    generator = torch.Generator().manual_seed(seed)
    noise = torch.randn(1, style_X.shape[0], frames, generator=generator)
    if init == "noise":
        return noise * 1e-3
    mean, std = (torch.from_numpy(v) for v in (style_X.mean(1, keepdims=True), style_X.std(1, keepdims=True)))
    return noise * std + mean


def sound_transfer(
    content: SoundLike | None,
    style: SoundLike,
    *,
    seconds: float | None = None,
    iterations: int = ITERATIONS,
    content_weight: float = CONTENT_WEIGHT,
    style_weight: float = STYLE_WEIGHT,
    filters: int = FILTERS,
    seed: int = 0,
    sample_rate: int = SAMPLE_RATE,
    griffin_lim_iterations: int = GRIFFIN_LIM_ITERATIONS,
    history_size: int = HISTORY_SIZE,
    init: str = "spectrum",
    device: str | torch.device | None = None,
    check_memory: bool = True,
    progress: bool = True,
    announce: bool = False,
) -> SoundResult:
    """``content`` with the sound texture of ``style`` (Ulyanov & Lebedev, 2016), or with
    ``content=None`` a texture of ``style`` lasting ``seconds`` (default: as long as the style).

    Args:
        content, style: sound files (anything libsndfile reads), example names
            (:data:`nst_lessons.data.SOUNDS`) or mono sample arrays (S,) already at ``sample_rate``.
        seconds: a texture's length; ignored with a content, whose length the output keeps.
        iterations: L-BFGS iterations (one evaluation each).
        content_weight, style_weight: α and β in Ulyanov & Lebedev's units (:func:`ulyanov_weights`).
        filters: N, the random filters.
        seed: draws the filters, the starting noise and Griffin-Lim's starting phase.
        sample_rate: the working rate and the output's, in Hz.
        griffin_lim_iterations: phase-recovery iterations.
        history_size: m of L-BFGS.
        init: ``"spectrum"`` or ``"noise"``, the start (:func:`starting_noise`).
        device: ``None`` means CUDA when available.
        check_memory: refuse with :class:`AudioError` what does not fit, before reading the sounds.
        progress: a progress bar on stderr.
        announce: print the cost (FLOPs, memory, time at a measured rate) before the optimisation.

    Returns:
        A :class:`SoundResult`. Ctrl-C raises KeyboardInterrupt (nothing is returned half-done).
    """
    for name, value, low in (("iterations", iterations, 1), ("filters", filters, 1), ("griffin_lim_iterations", griffin_lim_iterations, 1), ("history_size", history_size, 1)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise AudioError(f"{name} must be a whole number >= {low}, got {value!r}")
    for name, value in (("content_weight", content_weight), ("style_weight", style_weight)):
        if not (value >= 0 and math.isfinite(value)):
            raise AudioError(f"{name} must be a finite number >= 0, got {value}")
    if not MIN_SAMPLE_RATE <= sample_rate <= MAX_SAMPLE_RATE:
        raise AudioError(f"sample_rate must be between {MIN_SAMPLE_RATE} and {MAX_SAMPLE_RATE} Hz, got {sample_rate}")
    if content is None and seconds is not None and not (math.isfinite(seconds) and seconds * sample_rate >= min_samples()):
        raise AudioError(f"seconds must be at least {min_samples() / sample_rate:.3f}, got {seconds}")
    if content is None and seconds is not None and seconds * sample_rate > 2**48:
        raise AudioError(f"seconds must be at most {2**48 / sample_rate:.3g}, got {seconds}")
    if init not in INITS:
        raise AudioError(f"unknown init {init!r}; expected {' or '.join(INITS)}")
    device = default_device(device)
    cost = plan(content, style, seconds=seconds, filters=filters, iterations=iterations, sample_rate=sample_rate, history_size=history_size)
    if check_memory:
        check_fits(cost, device, history_size, sample_rate)

    style_y = _load(style, sample_rate)
    content_y = None if content is None else _load(content, sample_rate)
    samples = len(content_y) if content_y is not None else round((seconds or len(style_y) / sample_rate) * sample_rate)
    style_X, content_X = spectrogram(style_y), None if content_y is None else spectrogram(content_y)
    T = frames(samples)
    network = RandomConv1d(style_X.shape[0], filters, WIDTH, seed, device)
    rate = measure_rate(network, min(T, 128))
    cost = plan(content_y, style_y, seconds=samples / sample_rate, filters=filters, iterations=iterations, history_size=history_size)
    if announce:
        print(f"cost: {cost.describe(rate, device)}", flush=True)

    alpha, beta = ulyanov_weights(content_weight if content is not None else 0.0, style_weight, filters)
    with torch.no_grad():
        F_style = network(torch.from_numpy(style_X).to(device)[None])
        A = losses.gram_targets({"relu": F_style}, ["relu"], positions={"relu": T - WIDTH + 1})["relu"]
        P = None if content_X is None else network(torch.from_numpy(content_X).to(device)[None]).detach()
    del F_style
    x = starting_noise(style_X, T, init, seed).to(device).requires_grad_(True)
    tracker = Tracker(x, iterations)
    loop = Loop(iteration(SoundObjective(network, A, P, alpha, beta), x, tracker, "lbfgs", history_size), tracker, iterations, progress)
    stopped = loop.run(lambda i: False, lambda i, loss: None, reraise_interrupt=True)
    X = tracker.best_x[0].detach().cpu().numpy()
    del network, A, P, x, tracker

    start = time.perf_counter()
    y, convergence = griffin_lim(X, samples, griffin_lim_iterations, seed)
    gl_seconds = time.perf_counter() - start
    settings = dict(
        content_weight=content_weight if content is not None else 0.0, style_weight=style_weight, filters=filters,
        seed=seed, sample_rate=sample_rate, iterations=iterations, griffin_lim_iterations=griffin_lim_iterations,
        history_size=history_size, init=init, device=str(device), seconds=samples / sample_rate, n_fft=N_FFT, hop=HOP, width=WIDTH,
    )  # fmt: skip
    return SoundResult(
        y, sample_rate, X, content_X, style_X, loop.history(), loop.done, loop.seconds, gl_seconds, convergence, cost, rate, stopped, settings
    )  # fmt: skip


def sound_texture(style: SoundLike, seconds: float | None = None, **options: object) -> SoundResult:
    """A sound texture of ``style`` lasting ``seconds``: :func:`sound_transfer` without content (α = 0)."""
    return sound_transfer(None, style, seconds=seconds, **options)


# --------------------------------------------------------------------------- the command line


def _sample_rate(text: str) -> int:
    value = int_at_least(MIN_SAMPLE_RATE)(text)
    if value > MAX_SAMPLE_RATE:
        raise argparse.ArgumentTypeError(f"must be at most {MAX_SAMPLE_RATE}, got {value}")
    return value


SOUND_ONLY_OPTIONS = {"seconds": "--seconds", "filters": "--filters", "sample_rate": "--sample-rate",
                      "griffin_lim_iterations": "--griffin-lim-iterations", "init": "--init"}
"""``texture``'s options that only a sound takes (argparse dest -> flag), for refusing them with an image."""


def add_sound_options(p: argparse.ArgumentParser, texture: bool = False, defaults: bool = True) -> None:
    """The options only a sound run has: ``--filters``, ``--sample-rate``, ``--griffin-lim-iterations``,
    ``--init`` (and ``--seconds`` for a texture). With ``defaults=False`` they default to None, so
    that a command serving images too can tell whether one was given (:func:`run_sound_command`
    fills in the defaults)."""
    default = (lambda value: value) if defaults else (lambda value: None)
    p.add_argument("--filters", type=int_at_least(1), default=default(FILTERS), help=f"sound: N, random filters of width {WIDTH} frames (default {FILTERS})")
    p.add_argument("--sample-rate", type=_sample_rate, default=default(SAMPLE_RATE), help=f"sound: working and output rate in Hz; inputs are resampled (default {SAMPLE_RATE})")
    p.add_argument("--griffin-lim-iterations", type=int_at_least(1), default=default(GRIFFIN_LIM_ITERATIONS), help=f"sound: phase recovery iterations (default {GRIFFIN_LIM_ITERATIONS})")
    p.add_argument("--init", choices=INITS, default=default("spectrum"), help="sound: the start, noise around the style's mean spectrum or Ulyanov & Lebedev's N(0, 1e-3^2) (default spectrum)")
    if texture:
        p.add_argument("--seconds", type=positive, help="sound: the texture's length (default: the style's)")


def _add_common(p: argparse.ArgumentParser) -> None:
    """The options of ``audio`` (``texture`` has its own, with the same names: :mod:`nst_lessons.texture`)."""
    p.add_argument("-o", "--output", type=Path, required=True, help="the result, .wav or .flac (16-bit, peak at -1 dBFS)")
    p.add_argument("--iterations", type=int_at_least(1), default=ITERATIONS, help=f"L-BFGS iterations (default {ITERATIONS})")
    p.add_argument("--seed", type=seed_type, default=0, help="draws the filters, the starting noise and Griffin-Lim's phase (default 0)")
    add_sound_options(p)
    p.add_argument("--device", type=device_type, help="cpu, cuda or cuda:N (default: cuda when available)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")


def add_audio_parser(subparsers: argparse._SubParsersAction) -> None:
    """``nst-lessons audio CONTENT STYLE -o OUT.wav``."""
    from nst_lessons.data import SOUNDS

    p = subparsers.add_parser(
        "audio",
        help="give a sound the texture of another (Ulyanov & Lebedev, 2016)",
        description="Audio style transfer with random filters (Ulyanov & Lebedev, 2016): optimise the "
        "log spectrogram of OUT so that a random 1-D convolution's features match CONTENT's and their "
        "Gram matrix STYLE's, then recover a phase with Griffin-Lim. CONTENT and STYLE are sound files "
        f"(WAV, FLAC, OGG, MP3, ...: what libsndfile reads) or example sounds ({', '.join(SOUNDS)}). "
        "The output keeps CONTENT's length.",
    )
    p.add_argument("content", metavar="CONTENT", help="the sound whose content is kept (file or example name, e.g. melody)")
    p.add_argument("style", metavar="STYLE", help="the sound whose texture is taken (file or example name, e.g. rain)")
    _add_common(p)
    p.add_argument("--content-weight", type=non_negative, default=CONTENT_WEIGHT, help=f"alpha, in Ulyanov & Lebedev's units (default {CONTENT_WEIGHT:g}); larger keeps more of CONTENT")
    p.add_argument("--style-weight", type=non_negative, default=STYLE_WEIGHT, help=f"beta (default {STYLE_WEIGHT:g})")
    p.set_defaults(func=run_sound_command)


def run_sound_command(args: argparse.Namespace) -> int:
    """``audio`` (with ``args.content``) or a sound ``texture`` (without): checks everything the
    run needs before any work (inputs, output, memory), then runs, then writes atomically. An
    option missing from ``args`` or None takes its default (a ``texture`` serving images too)."""

    def option(name: str, default: object) -> object:
        value = getattr(args, name, None)
        return default if value is None else value

    content = getattr(args, "content", None)
    paths = [resolve_sound(name) for name in ([content] if content is not None else []) + [args.style]]
    check_output(args.output, paths)
    weights = dict(content_weight=args.content_weight, style_weight=args.style_weight) if content is not None else {}
    result = sound_transfer(
        paths[0] if content is not None else None, paths[-1], seconds=getattr(args, "seconds", None),
        iterations=option("iterations", ITERATIONS), filters=option("filters", FILTERS), seed=option("seed", 0),
        sample_rate=option("sample_rate", SAMPLE_RATE), griffin_lim_iterations=option("griffin_lim_iterations", GRIFFIN_LIM_ITERATIONS),
        init=option("init", "spectrum"), device=getattr(args, "device", None), progress=not getattr(args, "quiet", False),
        announce=True, **weights,
    )  # fmt: skip
    save_sound(result.samples, result.sample_rate, args.output)
    print(
        f"wrote {args.output} ({len(result.samples) / result.sample_rate:.2f} s at {result.sample_rate} Hz) after "
        f"{result.iterations} iterations in {result.seconds:.1f} s; style loss fell {result.style_drop:.3g}x; "
        f"Griffin-Lim {result.griffin_lim_seconds:.1f} s, spectral convergence {result.spectral_convergence:.3f}"
    )
    return 0


def is_sound_input(style: str | os.PathLike[str]) -> bool:
    """Whether ``texture``'s STYLE is a sound: an example sound's name or a file whose suffix
    libsndfile reads (anything else is an image)."""
    from nst_lessons.data import SOUNDS

    return str(style) in SOUNDS or is_sound_path(style)


__all__ = [
    "AudioError",
    "CONTENT_WEIGHT",
    "FILTERS",
    "GRIFFIN_LIM_ITERATIONS",
    "HOP",
    "INITS",
    "ITERATIONS",
    "MonoMixWarning",
    "N_FFT",
    "PEAK",
    "RandomConv1d",
    "SAMPLE_RATE",
    "STYLE_WEIGHT",
    "SoundCost",
    "SoundObjective",
    "SoundResult",
    "WIDTH",
    "add_audio_parser",
    "SOUND_ONLY_OPTIONS",
    "add_sound_options",
    "check_fits",
    "check_output",
    "estimate_memory",
    "evaluation_flops",
    "frames",
    "griffin_lim",
    "is_sound_input",
    "is_sound_path",
    "magnitude",
    "measure_rate",
    "plan",
    "read_sound",
    "resolve_sound",
    "run_sound_command",
    "save_sound",
    "sound_suffixes",
    "sound_texture",
    "sound_transfer",
    "spectral_convergence",
    "spectrogram",
    "starting_noise",
]
