"""Style transfer for videos with temporal consistency (Ruder, Dosovitskiy & Brox, *Artistic Style
Transfer for Videos*, GCPR 2016).

Stylising each frame on its own flickers: every frame's optimisation lands in a different local
minimum, so the strokes jump about even where the scene stands still. Ruder et al. tie frame i to
the stylised frame i-1 along the optical flow between the input frames:

- the flows: w = (u, v) forward, from frame i-1 to frame i, and ŵ = (û, v̂) backward, from frame i
  to frame i-1, both from OpenCV's DIS optical flow (:func:`optical_flow`);
- the warp: ω(x)(p) = x(p + ŵ(p)), the previous stylised frame x^(i-1) carried to frame i
  (bilinear, :func:`warp`);
- the weights c (:func:`consistency_weights`): 0 where the forward-backward check fails, i.e. a
  disocclusion, |w̃ + ŵ|² > 0.01(|w̃|² + |ŵ|²) + 0.5 with w̃(p) = w(p + ŵ(p)); 0 at a motion
  boundary, |∇û|² + |∇v̂|² > 0.01|ŵ|² + 0.002; 0 where p + ŵ(p) leaves the frame; 1 elsewhere;
- the short-term temporal loss L_temporal(x) = 1/D Σ_k c_k (x_k − ω_k)², D = 3 H W
  (:func:`nst_lessons.losses.temporal_loss`), added to the frame's objective with the weight λ
  (``temporal_weight``): L = α L_content + β L_style + γ L_TV + λ L_temporal;
- the initialisation: frame i starts from c·ω(x^(i-1)) + (1 − c)·p^(i) (the content frame where the
  flow is not trusted), and the first frame from its content frame.

λ = 0 is plain frame-by-frame transfer: no flow, every frame starts from its own content frame.
:func:`warped_differences` measures flicker: the mean over frames of |y_i − ω(y_(i-1))| on the
pixels with c = 1, in [0, 1] units, with the flow of the *input* frames, so that two stylisations
of one clip are measured alike.

Files (:func:`probe`, :func:`iter_frames`, :class:`VideoWriter`): mp4 (H.264), webm (VP9) and gif, read and written
with imageio and the ffmpeg that imageio-ffmpeg ships; also read: mov, mkv, avi, m4v; and a folder
of numbered frames (png, jpg, ...; the frame rate then comes from ``fps``, default 25). Every input
frame gives one output frame, at the input's frame rate. H.264 and VP9 need even sides, so an
mp4/webm output's sides are rounded down to even numbers. GIF stores each frame's duration in
hundredths of a second: frame k is written to end at round(100 (k+1) / fps) / 100 s, so the clip's
length and mean frame rate are kept to within 10 ms while single durations alternate (30 fps:
30, 40, 30 ms, ...). Pillow stores a frame identical (after the palette) to the one before it by
lengthening that frame: the timing is kept, but such a GIF reads back with fewer frames (mp4, webm
and folders keep every frame). Browsers play delays under 20 ms at 100 ms: a GIF above 50 fps
plays slowly.

Memory: frames are streamed (two input frames and one stylised frame are held), except that a GIF is
assembled in memory before it is written; :func:`check_fits` refuses up front a frame size that does
not fit the device (:func:`nst_lessons.transfer.memory_model`) or a GIF too long for the host.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import itertools
import logging
import math
import os
import re
import signal
import sys
import warnings
from collections.abc import Callable, Generator, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import imageio.v3 as iio
import imageio_ffmpeg
import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from nst_lessons import arguments, memory
from nst_lessons.batch import is_batch_output
from nst_lessons.data import resolve_image
from nst_lessons.files import atomic_dir, atomic_path, check_outputs, check_writable
from nst_lessons.images import MAX_PIXELS, MIN_SIDE, ImageError, ImageLike, image_size, load_image, resized_size, to_uint8
from nst_lessons.networks import FeatureNetwork
from nst_lessons.targets import StyleTargets, shared_targets
from nst_lessons.transfer import (
    CONTENT_LAYERS, PRECISIONS, STYLE_LAYERS, Network, Speed, TransferResult, described, load_networks, memory_model, pop_legacy,
    style_transfer,
)  # fmt: skip
from nst_lessons.vgg import default_device

VIDEO_SUFFIXES = (".mp4", ".webm", ".gif")
"""Video files that can be written (and read)."""
READ_SUFFIXES = (*VIDEO_SUFFIXES, ".mov", ".mkv", ".avi", ".m4v")
FRAME_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
"""Image files taken as frames from a folder (in natural order of their names)."""
FOLDER_FPS = 25.0
"""The frame rate of a folder of frames when none is given."""

DEFAULT_TEMPORAL_WEIGHTS: dict[str, float] = {"imagenet": 1e8, "random": 1e8, "caffe": 1e12}
"""λ per weights option, for the default α and β of :data:`nst_lessons.transfer.DEFAULT_LOSS_WEIGHTS`:
λ = β for "imagenet" and "random". L_temporal is a mean over pixels, so, like β E_l, its gradient
per pixel falls as 1/(H W): λ/β keeps the balance at any size. The Caffe network's losses are ~1e4
larger at the same look (see ``DEFAULT_LOSS_WEIGHTS``) while L_temporal is not, hence 1e4 times
the λ. Scale λ with β when you change β.

Measured on the tests' synthetic clip (a texture translating 2-3 px per frame; random weights; 4-5
frames of 64 and 128 px, 15 and 30 iterations per frame): the warped start alone cuts the
frame-by-frame flicker 3.5x; λ = β cuts what is left by another 2.2x (64 px) and 3.4x (128 px),
with λ L_temporal about a third of β L_style; λ = 10 β cuts it 2.3-2.6x more but doubles β L_style."""

DIS_PRESET = cv2.DISOPTICAL_FLOW_PRESET_MEDIUM


class VideoError(ImageError):
    """A video could not be read or written; the message is one line for the user."""


# --------------------------------------------------------------------------- optical flow


def optical_flow(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """The dense optical flow f from ``source`` to ``target``: source(p) ≈ target(p + f(p)).

    OpenCV's DIS optical flow (Kroeger et al. 2016), medium preset, on the grey frames.

    Args:
        source, target: frames (H,W,3) in [0,1] (float) or 0-255 (uint8).

    Returns:
        f, (H,W,2) float32, in pixels: f[..., 0] along x (columns), f[..., 1] along y (rows).
    """
    grey = [cv2.cvtColor(to_uint8(a), cv2.COLOR_RGB2GRAY) for a in (source, target)]
    return cv2.DISOpticalFlow_create(DIS_PRESET).calc(grey[0], grey[1], None)


def warp(image: np.ndarray, flow: np.ndarray) -> np.ndarray:
    """Backward warp: ω(image)(p) = image(p + flow(p)), bilinear, the border repeated outside.

    Args:
        image: (H,W) or (H,W,C) float32. flow: (H,W,2) in pixels (x, y), e.g. the backward flow ŵ.

    Returns:
        The warped image, image's shape and dtype.
    """
    h, w = flow.shape[:2]
    grid_x, grid_y = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    return cv2.remap(image, grid_x + flow[..., 0], grid_y + flow[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def consistency_weights(
    forward: np.ndarray, backward: np.ndarray, warp_with: Callable[[np.ndarray, np.ndarray], np.ndarray] = warp
) -> np.ndarray:
    """Ruder et al.'s per-pixel weights c of frame i: 0 where the flow is not trusted, 1 elsewhere.

    With w = ``forward`` (frame i-1 to i), ŵ = ``backward`` (frame i to i-1), w̃(p) = w(p + ŵ(p)):
    c = 0 at disocclusions, |w̃ + ŵ|² > 0.01(|w̃|² + |ŵ|²) + 0.5; at motion boundaries,
    |∇û|² + |∇v̂|² > 0.01|ŵ|² + 0.002 (central differences); and where p + ŵ(p) is outside the frame.

    Args:
        forward, backward: (H,W,2) float32 flows in pixels.
        warp_with: the backward warp that gives w̃: :func:`warp` (OpenCV), or the exact bilinear
            :func:`nst_lessons.scratch.warping.warp` (the ``nst_video`` exercises' reference).

    Returns:
        c, (H,W) float32 of 0s and 1s.
    """
    h, w = backward.shape[:2]
    w_tilde = warp_with(forward, backward)
    sq = lambda f: (f**2).sum(-1)  # noqa: E731
    disoccluded = sq(w_tilde + backward) > 0.01 * (sq(w_tilde) + sq(backward)) + 0.5
    du_dy, du_dx = np.gradient(backward[..., 0])
    dv_dy, dv_dx = np.gradient(backward[..., 1])
    boundary = du_dx**2 + du_dy**2 + dv_dx**2 + dv_dy**2 > 0.01 * sq(backward) + 0.002
    x = np.arange(w)[None, :] + backward[..., 0]
    y = np.arange(h)[:, None] + backward[..., 1]
    outside = (x < 0) | (x > w - 1) | (y < 0) | (y > h - 1)
    return (~(disoccluded | boundary | outside)).astype(np.float32)


def frame_flow(previous: np.ndarray, current: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(ŵ, c) for frame i from the input frames i-1 and i (H,W,3): the backward flow (H,W,2) that
    carries frame i-1 to frame i, and the weights c (H,W)."""
    backward = optical_flow(current, previous)
    forward = optical_flow(previous, current)
    return backward, consistency_weights(forward, backward)


def warped_differences(outputs: Sequence[np.ndarray], inputs: Sequence[np.ndarray]) -> np.ndarray:
    """The flicker of a stylised clip, frame by frame: for i >= 1 the mean of |y_i − ω(y_(i-1))| over
    the pixels with c = 1 and the channels, with ŵ and c from the input frames.

    Args:
        outputs: the stylised frames y_i, (H,W,3) in [0,1] (float) or 0-255 (uint8).
        inputs: the input frames at the same size.

    Returns:
        (T-1,) float64 in [0,1] units; its mean is the clip's mean warped-frame difference.
    """
    if len(outputs) != len(inputs) or len(outputs) < 2:
        raise ValueError(f"expected as many outputs as inputs, at least 2, got {len(outputs)} and {len(inputs)}")
    return np.array([warped_difference(inputs[i - 1], inputs[i], outputs[i - 1], outputs[i]) for i in range(1, len(outputs))])


def warped_difference(
    input_before: np.ndarray,
    input_now: np.ndarray,
    before: np.ndarray,
    now: np.ndarray,
    flow: tuple[np.ndarray, np.ndarray] | None = None,
) -> float:
    """One term of :func:`warped_differences`: mean |y_i − ω(y_(i-1))| over the pixels with c = 1.

    Args:
        input_before, input_now: the input frames i-1 and i; before, now: y_(i-1) and y_i; all
            (H,W,3), uint8 or float in [0,1].
        flow: ``(backward, c)`` of :func:`frame_flow` for these input frames, if already computed
            (as :attr:`Frame.flow` and :attr:`Frame.weights`); otherwise it is computed here.
    """
    backward, c = flow if flow is not None else frame_flow(_to_float(input_before), _to_float(input_now))
    d = np.abs(_to_float(now) - warp(_to_float(before), backward)).mean(-1)
    return float((c * d).sum() / max(c.sum(), 1.0))


def _to_float(a: np.ndarray) -> np.ndarray:
    return a.astype(np.float32) / 255.0 if a.dtype == np.uint8 else a.astype(np.float32)


# --------------------------------------------------------------------------- stylising frames


@dataclass
class Frame:
    """One stylised frame from :func:`stylise_frames`.

    Attributes:
        output: y_i, (H,W,3) float32 in [0,1] (not rounded to 8 bits).
        content: the input frame at the output's size, (H,W,3) float32 in [0,1].
        weights: c, (H,W) float32, or ``None`` where not computed (the first frame; λ = 0 without
            ``warm_start``).
        result: the frame's :class:`~nst_lessons.transfer.TransferResult` (its history has the
            ``temporal`` term).
        flow: ŵ, the backward flow of :func:`frame_flow` (H,W,2) float32, computed with c;
            ``None`` where c is.
    """

    output: np.ndarray
    content: np.ndarray
    weights: np.ndarray | None
    result: TransferResult
    flow: np.ndarray | None = None


_OWN_OPTIONS = ("init", "temporal", "temporal_weight", "size", "progress", "check_memory", "callback",
                "style_targets", "style_scale", "style_blend_weights", "masks")  # fmt: skip


def default_temporal_weight(model: FeatureNetwork) -> float:
    """λ of :data:`DEFAULT_TEMPORAL_WEIGHTS` for a loaded model's weights (a checkpoint file counts as
    "caffe" or "imagenet" by its preprocessing, as :data:`~nst_lessons.transfer.DEFAULT_LOSS_WEIGHTS` does)."""
    fallback = "caffe" if getattr(model, "preprocessing", "imagenet") == "caffe" else "imagenet"
    return DEFAULT_TEMPORAL_WEIGHTS.get(model.spec.weights, DEFAULT_TEMPORAL_WEIGHTS[fallback])


def stylise_frames(
    frames: Iterable[np.ndarray | Image.Image],
    style: ImageLike,
    *,
    size: int | tuple[int, int] | None = None,
    temporal_weight: float | None = None,
    warm_start: bool | None = None,
    network: Network = "vgg19",
    style_network: Network | None = None,
    device: str | torch.device | None = None,
    seed: int | None = None,
    style_size: int | None = None,
    **options: object,
) -> Iterator[Frame]:
    """Stylise frames one after another, each tied to the last by Ruder et al.'s temporal loss.

    The network(s) are loaded once for all frames, and the style targets A^l are computed once
    (:class:`~nst_lessons.targets.StyleTargets`; per frame only with ``preserve_color``
    "luminance" or "histogram", which match the style to each photo). Ctrl-C during a frame raises
    ``KeyboardInterrupt`` after the frames already yielded (the interrupted frame is dropped).

    Args:
        frames: the input frames, (H,W,3) uint8 or float in [0,1] arrays or PIL images, all one size
            (:class:`VideoError` at the first frame of another size: nothing is stretched).
        style: the style image (one; no masks or blends).
        size: the output's long side, or its (width, height); ``None`` keeps the frames' size.
        temporal_weight: λ; ``None`` takes :func:`default_temporal_weight`; 0 is plain
            frame-by-frame transfer.
        warm_start: start frame i from the warped y_(i-1) (content where c = 0); default: λ > 0.
            With λ = 0 and ``warm_start=True`` only the initialisation ties the frames.
        network, style_network, device, seed: as :func:`~nst_lessons.transfer.style_transfer`; a
            loaded network is used as it is. λ's default follows the style network's weights.
        style_size: the style image's long side (default: the output's long side).
        options: passed to :func:`~nst_lessons.transfer.style_transfer` (``iterations``,
            ``content_weight``, ``style_weight``, ``tv_weight``, ``optimizer``, ``speed``, ...).

    Yields:
        A :class:`Frame` per input frame.
    """
    if clash := sorted(set(options) & set(_OWN_OPTIONS)):
        raise ValueError(f"stylise_frames sets {', '.join(clash)} itself")
    network, _ = pop_legacy(options, network, seed, "stylise_frames")
    model, style_model = load_networks(network, style_network, device, seed)
    lam = default_temporal_weight(style_model or model) if temporal_weight is None else temporal_weight
    if not (lam >= 0 and math.isfinite(lam)):
        raise ValueError(f"temporal_weight must be a finite number >= 0, got {lam}")
    warm = lam > 0 if warm_start is None else warm_start
    style_image: Image.Image | None = None
    targets: StyleTargets | None = None
    previous: tuple[np.ndarray, np.ndarray] | None = None  # (input frame, output frame) i-1
    first: tuple[int, int] | None = None  # (width, height) of input frame 1, before any resizing
    for number, frame in enumerate(frames, start=1):
        content_im = load_image(frame)
        first = first or content_im.size
        if content_im.size != first:  # checked before resizing, which would hide it
            raise _size_error(number, content_im.size, first)
        if size is not None:
            wh = size if isinstance(size, tuple) else frame_size(*content_im.size, size)
            content_im = content_im if content_im.size == wh else content_im.resize(wh, Image.Resampling.LANCZOS)
        if style_image is None:
            style_image = load_image(style, style_size or max(content_im.size))
            # the Grams A^l once for all frames (they are all one size), unless matched to each frame
            targets = shared_targets(
                style_model or model, [style_image], (content_im.height, content_im.width), {**options, "style_size": max(style_image.size)}
            )
        p = np.asarray(content_im, dtype=np.float32) / 255.0
        init: str | torch.Tensor = "content"
        backward = c = temporal = None
        if previous is not None and (lam > 0 or warm):
            backward, c = frame_flow(previous[0], p)
            warped = warp(previous[1], backward)
            temporal = (_chw(warped), torch.from_numpy(c)[None, None])
            if warm:
                init = _chw(c[..., None] * warped + (1 - c[..., None]) * p)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            result = style_transfer(
                content_im, style_image, size=None, style_size=None if targets else max(style_image.size), style_targets=targets,
                init=init, network=model, style_network=style_model, temporal=temporal if lam > 0 else None, temporal_weight=lam, check_memory=False,
                progress=False, **options,  # type: ignore[arg-type]
            )  # fmt: skip
        if result.stopped is not None and result.stopped.startswith("interrupted"):
            raise KeyboardInterrupt
        for w in caught:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
        y = result.tensor[0].permute(1, 2, 0).numpy()
        previous = (p, y)
        yield Frame(y, p, c, result, backward)


def _size_error(number: int, size: tuple[int, int], first: tuple[int, int]) -> VideoError:
    return VideoError(f"frames differ in size: frame {number} is {size[0]}x{size[1]}, frame 1 is {first[0]}x{first[1]}")


def _chw(a: np.ndarray) -> torch.Tensor:
    """(H,W,3) array -> (1,3,H,W) tensor."""
    return torch.from_numpy(np.ascontiguousarray(a)).permute(2, 0, 1)[None].float()


def frame_size(width: int, height: int, size: int, even: bool = False) -> tuple[int, int]:
    """(width, height) of a frame scaled to a long side of ``size`` px; ``even`` rounds both sides
    down to even numbers (H.264 and VP9 need them). Raises :class:`VideoError` under 32 px a side
    or over :data:`~nst_lessons.images.MAX_PIXELS`."""
    scale = size / max(width, height)
    w, h = max(1, round(width * scale)), max(1, round(height * scale))
    if even:
        w, h = w - w % 2, h - h % 2
    if min(w, h) < MIN_SIDE:
        raise VideoError(f"frames of {width}x{height} are {w}x{h} at size {size}; at least {MIN_SIDE} px a side is needed")
    if w * h > MAX_PIXELS:
        raise VideoError(f"frames of {width}x{height} would be {w}x{h} at size {size}, over the limit of {MAX_PIXELS:,} pixels")
    return w, h


# --------------------------------------------------------------------------- reading


@dataclass(frozen=True)
class VideoInfo:
    """What :func:`probe` finds: the number of frames, the frame rate, the frame size (width, height)."""

    path: Path
    frames: int
    fps: float
    width: int
    height: int


def _folder_frames(path: Path) -> list[Path]:
    natural = lambda p: [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", p.name)]  # noqa: E731
    return sorted((p for p in path.iterdir() if p.suffix.lower() in FRAME_SUFFIXES and p.is_file()), key=natural)


def _gif_durations(path: Path) -> list[int]:
    with iio.imopen(path, "r", plugin="pillow") as f:
        n = f.properties(index=None).shape[0]
        return [int(f.metadata(index=i).get("duration", 0) or 0) for i in range(n)]


def probe(path: str | os.PathLike[str], fps: float | None = None) -> VideoInfo:
    """Check that ``path`` is a readable video (or a folder of frames) and describe it; decodes the
    first frame. ``fps`` is the frame rate of a folder of frames (default :data:`FOLDER_FPS`).

    Raises:
        VideoError: missing, unsupported or broken input (one line).
    """
    path = Path(path)
    if path.is_dir():
        files = _folder_frames(path)
        if not files:
            raise VideoError(f"no frames ({', '.join(FRAME_SUFFIXES)}) in the folder {path}")
        width, height = load_image(files[0]).size
        return VideoInfo(path, len(files), fps or FOLDER_FPS, width, height)
    if not path.is_file():
        raise VideoError(f"no video file or folder of frames at {path}")
    suffix = path.suffix.lower()
    if suffix not in READ_SUFFIXES:
        raise VideoError(f"cannot read {path.name!r}: expected a video ({', '.join(READ_SUFFIXES)}) or a folder of frames")
    try:
        if suffix == ".gif":
            durations = _gif_durations(path)
            first = next(iter_frames(path))  # decoded: a GIF cut inside frame 1 still has a readable header
            total = sum(durations)
            rate = 1000.0 * len(durations) / total if total else 10.0  # browsers play a 0 delay at 10 fps
            return VideoInfo(path, len(durations), rate, first.shape[1], first.shape[0])
        reader = imageio_ffmpeg.read_frames(str(path))
        with _upright_frames():
            meta = next(reader)
        next(reader)  # one frame decodes
        reader.close()
        n, _ = imageio_ffmpeg.count_frames_and_secs(str(path))
        return VideoInfo(path, n, float(meta["fps"]), *meta["size"])
    except (OSError, RuntimeError, ValueError, StopIteration, KeyError) as error:
        raise VideoError(f"{path} is not a readable video ({_reason(error)})") from None


class _RotatedSize(logging.Filter):
    """Drops imageio-ffmpeg's warning that the frames' size differs from the stream's: ffmpeg turns
    a rotated (phone) video upright, so the frames it gives are (height, width) of the stored ones,
    and that is the size we want."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("The frame size for reading")


@contextlib.contextmanager
def _upright_frames() -> Iterator[None]:
    """Around the start of an imageio-ffmpeg reader (where it logs the sizes): no rotated-size warning."""
    logger, quiet = logging.getLogger("imageio_ffmpeg"), _RotatedSize()
    logger.addFilter(quiet)
    try:
        yield
    finally:
        logger.removeFilter(quiet)


def _reason(error: Exception) -> str:
    """The first line of an error from ffmpeg or Pillow (ffmpeg's are many lines long)."""
    text = str(error).strip()
    return text.splitlines()[0] if text else "no frames"


def check_frames(path: str | os.PathLike[str], count: int, size: tuple[int, int]) -> None:
    """Decode the first ``count`` frames of a video file or folder of frames and check that each is
    ``size`` (width, height), frame 1's: a corrupt frame, or one of another size, is then found
    before the first frame is stylised rather than after the frames before it. Costs one decoding
    of the clip, small beside stylising it (one optimisation per frame).

    Raises:
        VideoError: naming the frame (and, in a folder, its file), one line.
    """
    frames, number = iter_frames(path), 0
    try:
        for number, frame in enumerate(itertools.islice(frames, count), start=1):
            if (frame.shape[1], frame.shape[0]) != size:
                raise _size_error(number, (frame.shape[1], frame.shape[0]), size)
    except VideoError:
        raise
    except (ImageError, OSError, RuntimeError, ValueError) as error:
        raise VideoError(f"frame {number + 1} of {path} cannot be decoded ({_reason(error)})") from None
    finally:
        frames.close()


def iter_frames(path: str | os.PathLike[str]) -> Iterator[np.ndarray]:
    """The frames of a video file or folder of frames, one at a time, as (H,W,3) uint8 RGB."""
    path = Path(path)
    if path.is_dir():
        for file in _folder_frames(path):
            yield np.asarray(load_image(file))
    elif path.suffix.lower() == ".gif":
        for frame in iio.imiter(path, plugin="pillow", mode="RGB"):
            yield frame
    else:
        reader = imageio_ffmpeg.read_frames(str(path), pix_fmt="rgb24")
        try:
            with _upright_frames():
                width, height = next(reader)["size"]
            for data in reader:
                yield np.frombuffer(data, np.uint8).reshape(height, width, 3)
        except (OSError, RuntimeError, StopIteration) as error:
            raise VideoError(f"{path} could not be decoded ({_reason(error)})") from None
        finally:
            reader.close()


# --------------------------------------------------------------------------- writing


def output_kind(path: str | os.PathLike[str]) -> str:
    """``"mp4"``, ``"webm"``, ``"gif"``, or ``"folder"`` (no suffix, or an existing folder)."""
    path = Path(path)
    if is_batch_output(path):
        return "folder"
    if path.suffix.lower() in VIDEO_SUFFIXES:
        return path.suffix.lower()[1:]
    raise VideoError(f"cannot write a video as {path.name!r}; use {', '.join(VIDEO_SUFFIXES)} or a folder name")


def check_output(path: str | os.PathLike[str]) -> str:
    """:func:`output_kind` after checking that ``path`` can be written (its folder exists and a file
    can be created there; a folder of frames must be new or empty)."""
    path = Path(path)
    kind = output_kind(path)
    if not path.parent.is_dir():
        raise VideoError(f"cannot write {path}: folder {path.parent} does not exist")
    if kind == "folder" and path.is_dir() and any(path.iterdir()):
        raise VideoError(f"cannot write frames into {path}: the folder is not empty")
    check_writable(path.parent)  # where the temporary file or folder goes
    return kind


def gif_durations(frames: int, fps: float) -> list[int]:
    """Per-frame GIF durations in ms, multiples of 10: frame k ends at round(100 (k+1) / fps) cs."""
    ends = [10 * round(100 * k / fps) for k in range(frames + 1)]
    return [max(10, b - a) for a, b in zip(ends, ends[1:])]


def gif_frames(frames: Sequence[np.ndarray], sample: int = 32) -> list[Image.Image]:
    """Frames (H,W,3) uint8 as palette images sharing one 256-colour palette (median cut over up to
    ``sample`` frames, no dithering): a colour maps to the same entry in every frame, where a palette
    per frame (Pillow's default) makes still colours flicker."""
    picked = frames[:: max(1, math.ceil(len(frames) / sample))]
    palette = Image.fromarray(np.concatenate(picked)).quantize(256, Image.Quantize.MEDIANCUT)
    return [Image.fromarray(f).quantize(palette=palette, dither=Image.Dither.NONE) for f in frames]


class VideoWriter:
    """Writes frames to a video file or a folder of frames, atomically: nothing appears at ``path``
    until the ``with`` block ends without an exception, and leaving it early (after catching
    Ctrl-C inside it, say) still gives a playable, shorter video. An exception out of the block, or
    no frame at all, leaves nothing behind.

    mp4 (H.264, CRF 18) and webm (VP9, CRF 30) are streamed to ffmpeg; a GIF is assembled in memory
    and written at the end, with one palette for all frames (:func:`gif_frames`); a folder gets ``frame_00001.png``, ... and appears when complete.

    Args:
        path: ``.mp4``, ``.webm``, ``.gif``, or a folder (new or empty).
        fps: frames per second. size: (width, height) of every frame (even sides for mp4/webm).
    """

    def __init__(self, path: str | os.PathLike[str], fps: float, size: tuple[int, int]) -> None:
        self.path, self.fps, self.size = Path(path), fps, size
        self.kind = check_output(self.path)
        if self.kind in ("mp4", "webm") and (size[0] % 2 or size[1] % 2):
            raise VideoError(f"{self.kind} needs even frame sides, got {size[0]}x{size[1]}")
        self.count = 0
        self._gif: list[np.ndarray] = []
        self._tmp: Path | None = None
        self._files = contextlib.ExitStack()
        self._ffmpeg: Generator[None, np.ndarray | None, None] | None = None

    def __enter__(self) -> VideoWriter:
        self._tmp = self._files.enter_context((atomic_dir if self.kind == "folder" else atomic_path)(self.path))
        try:
            if self.kind in ("mp4", "webm"):
                quality = {"mp4": ["-crf", "18"], "webm": ["-crf", "30", "-b:v", "0"]}[self.kind]
                self._ffmpeg = imageio_ffmpeg.write_frames(
                    str(self._tmp), self.size, fps=self.fps, codec="libx264" if self.kind == "mp4" else "libvpx-vp9",
                    quality=None, macro_block_size=1, output_params=[*quality, "-f", self.kind], ffmpeg_log_level="error",
                )  # fmt: skip
                self._ffmpeg.send(None)
        except BaseException as error:  # __exit__ will not run: remove the temporary file here (SIGTERM while ffmpeg starts)
            self.__exit__(type(error), error, error.__traceback__)
            raise
        return self

    def append(self, frame: np.ndarray) -> None:
        """Add a frame, (H,W,3) uint8 or float in [0,1], of this writer's size."""
        frame = np.ascontiguousarray(to_uint8(frame))
        if frame.shape != (self.size[1], self.size[0], 3):
            raise VideoError(f"a frame of shape {frame.shape} in a {self.size[0]}x{self.size[1]} video")
        if self._ffmpeg is not None:
            self._ffmpeg.send(frame)
        elif self.kind == "gif":
            self._gif.append(frame)
        else:
            Image.fromarray(frame).save(self._tmp / f"frame_{self.count + 1:05d}.png")
        self.count += 1

    def _finish(self) -> None:
        if self.count == 0:
            raise VideoError(f"no frames to write to {self.path}")
        if self._ffmpeg is not None:
            self._ffmpeg, ffmpeg = None, self._ffmpeg
            ffmpeg.close()  # waits for ffmpeg to write the trailer
        elif self.kind == "gif":
            frames = gif_frames(self._gif)
            frames[0].save(self._tmp, format="GIF", save_all=True, append_images=frames[1:],
                           duration=gif_durations(self.count, self.fps), loop=0)  # fmt: skip

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: object) -> None:
        try:
            if kind is None:
                self._finish()
        except BaseException as failure:
            kind, error = type(failure), failure
            raise
        finally:
            if self._ffmpeg is not None:
                with contextlib.suppress(Exception):  # ffmpeg may already be gone; the file is dropped anyway
                    self._ffmpeg.close()
            if kind is not None and self._tmp is not None:
                _stop_children_writing(self._tmp)
            self._files.__exit__(kind, error, None)  # atomic_path / atomic_dir: replace on success, else remove


def _stop_children_writing(path: Path) -> None:
    """Kill and reap this process's children that name ``path`` on their command line.

    A signal that lands while imageio-ffmpeg starts ffmpeg (inside ``Popen``, before its generator
    holds the process) leaves an ffmpeg that nothing stops: it opens ``path`` after the temporary
    file is removed and writes an empty video there. Linux only (``/proc``); elsewhere nothing is done.
    """
    me, target = os.getpid(), os.fsencode(str(path))
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            ppid = int((proc / "stat").read_bytes().rsplit(b")", 1)[1].split()[1])
            if ppid != me or target not in (proc / "cmdline").read_bytes().split(b"\0"):
                continue
            os.kill(int(proc.name), signal.SIGKILL)
            os.waitpid(int(proc.name), 0)
        except (OSError, ValueError, IndexError):  # gone meanwhile, or not ours to wait for
            continue


# --------------------------------------------------------------------------- memory


def check_fits(
    frames: int,
    frame: tuple[int, int],
    style: tuple[int, int],
    kind: str,
    device: torch.device,
    *,
    content_layers: Sequence[str] = CONTENT_LAYERS,
    style_layers: Iterable[str] = STYLE_LAYERS,
    **settings: object,
) -> memory.MemoryEstimate:
    """Refuse up front a video that will not fit: one frame's run on ``device`` (the estimate of
    :func:`nst_lessons.transfer.memory_model` plus the warped frame, c and the start image) and, for
    a GIF, all output frames assembled in host memory (twice: as RGB and as palette images, with
    room to spare).

    Args:
        frames: how many frames will be stylised. frame, style: (width, height) of the output frames
            and the style image.
        kind: the output's :func:`output_kind`. settings: keyword arguments of :func:`memory.estimate`.

    Raises:
        memory.InsufficientMemoryError: a ``ValueError`` naming the largest size that fits, or
            saying how many GIF frames would.
    """
    run = memory_model(frame, style, content_layers, list(style_layers), **settings)

    def per_frame(long_side: int) -> memory.MemoryEstimate:
        estimate = run(long_side)  # + the warped frame (3 channels), c (1) and the start image (3), float32
        return dataclasses.replace(estimate, images=estimate.images + 7 * estimate.height * estimate.width * 4)

    bf16 = " or use --precision bf16" if settings.get("precision", "fp32") != "bf16" else ""
    needed = memory.check_fits(per_frame, max(frame), device, remedies=f"give a smaller --size{bf16}")  # the command's options
    if kind != "gif":
        return needed
    host = memory.available_bytes(torch.device("cpu"))
    per_gif_frame = 2 * frame[0] * frame[1] * 3  # uint8 RGB, in the list and in the palette images
    on_host = needed.total if device.type == "cpu" else 0
    buffered = frames * per_gif_frame + on_host
    if host is not None and buffered > 0.9 * host:
        fit = max(0, int((0.9 * host - on_host) // per_gif_frame))
        raise memory.InsufficientMemoryError(
            f"a {frames}-frame {frame[0]}x{frame[1]} GIF is assembled in memory and needs about "
            f"{buffered / 2**30:.1f} GiB but {host / 2**30:.1f} GiB are free; about {fit} frames fit "
            "(write .mp4 or .webm, which are streamed, or use --max-frames or a smaller --size)"
        )
    return needed


# --------------------------------------------------------------------------- the whole video


@dataclass
class VideoResult:
    """What :func:`stylise_video` returns.

    Attributes:
        path: the video written. frames: frames written. total: frames in the input (or
        ``max_frames``). fps: frame rate. size: (width, height). seconds: optimisation time summed
        over frames. interrupted: Ctrl-C ended the run early; ``path`` holds the frames done.
        flicker: the warped-frame differences (T-1,) of the frames written (:func:`warped_differences`).
    """

    path: Path
    frames: int
    total: int
    fps: float
    size: tuple[int, int]
    seconds: float
    interrupted: bool
    flicker: np.ndarray


def stylise_video(
    source: str | os.PathLike[str],
    style: ImageLike,
    output: str | os.PathLike[str],
    *,
    size: int = 512,
    fps: float | None = None,
    max_frames: int | None = None,
    network: Network = "vgg19",
    style_network: Network | None = None,
    device: str | torch.device | None = None,
    check_memory: bool = True,
    progress: bool = True,
    **options: object,
) -> VideoResult:
    """Stylise a video file or folder of frames into ``output`` (see the module docstring).

    Before anything is written or the model loaded: the input is probed, the output path checked
    (its folder writable, and not the input or the style however spelled), the memory checked from
    the sizes alone, and every frame decoded once and checked for its size (:func:`check_frames`).
    A progress bar runs over frames. Ctrl-C keeps the finished frames: ``output`` then holds a
    playable shorter video and ``interrupted`` is set (none is written if no frame was finished).

    Args:
        source: a video file or a folder of frames. style: the style image. output: see :class:`VideoWriter`.
        size: the output's long side in px (mp4/webm: sides rounded down to even).
        fps: the frame rate of a folder of frames (default 25; ignored for video files).
        max_frames: stylise only the first frames.
        network, style_network, device: as :func:`~nst_lessons.transfer.style_transfer`; each is loaded once.
        check_memory: refuse up front what does not fit (:func:`check_fits`).
        options: passed to :func:`stylise_frames` (``temporal_weight``, ``iterations``, ...).
    """
    info = probe(source, fps)
    kind = check_output(output)
    inputs = [("the input", source), *([("the style image", style)] if isinstance(style, (str, os.PathLike)) else [])]
    check_outputs([("the output", output)], inputs)
    total = info.frames if max_frames is None else min(info.frames, max_frames)
    wh = frame_size(info.width, info.height, size, even=kind in ("mp4", "webm"))
    network, _ = pop_legacy(options, network, options.get("seed"), "stylise_video")  # type: ignore[arg-type]
    run_device = network.device if isinstance(network, FeatureNetwork) else default_device(device)
    style_side = options.get("style_size") or max(wh)
    seed = options.pop("seed", None)
    if check_memory:  # from the headers and the networks' descriptions: before the style or a frame is resized, or a network loaded
        nets = described(network, seed), None if style_network is None else described(style_network, seed)  # type: ignore[arg-type]
        settings = {k: options[k] for k in ("optimizer", "history_size") if k in options}
        check_fits(total, wh, resized_size(image_size(style), style_side), kind, run_device,  # type: ignore[arg-type]
                   content_layers=options.get("content_layers") or nets[0].content_layers,  # type: ignore[arg-type]
                   style_layers=list(options.get("style_layers") or (nets[1] or nets[0]).style_layers),  # type: ignore[call-overload]
                   network=nets[0], style_network=nets[1], tv=options.get("tv_weight") != 0,
                   precision=getattr(options.get("speed"), "precision", "fp32"), **settings)  # fmt: skip
    style_image = load_image(style, style_side)  # type: ignore[arg-type]
    check_frames(source, total, (info.width, info.height))  # a bad frame is found before the first is stylised
    model, style_model = load_networks(network, style_network, run_device, seed)  # type: ignore[arg-type]
    frames = itertools.islice(iter_frames(source), total)
    flicker: list[float] = []
    seconds, interrupted, previous = 0.0, False, None
    bar = tqdm(total=total, unit="frame", disable=not progress, file=sys.stderr, desc=Path(output).name)
    with VideoWriter(output, info.fps, wh) as writer:
        try:
            frames_out = stylise_frames(frames, style_image, size=wh, network=model, style_network=style_model, seed=seed, **options)  # type: ignore[arg-type]
            for frame in frames_out:
                written = to_uint8(frame.output)
                writer.append(written)
                if previous is not None:
                    flow = None if frame.flow is None else (frame.flow, frame.weights)
                    flicker.append(warped_difference(previous[0], frame.content, previous[1], written, flow))
                previous = (frame.content, written)
                seconds += frame.result.seconds
                bar.set_postfix(loss=f"{frame.result.best_loss:.3g}")
                bar.update()
        except KeyboardInterrupt:
            if writer.count == 0:
                raise
            interrupted = True
        finally:
            bar.close()
    return VideoResult(Path(output), writer.count, total, info.fps, wh, seconds, interrupted, np.array(flicker))


# --------------------------------------------------------------------------- command line


def add_video_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``nst-lessons video IN STYLE -o OUT``."""
    p = subparsers.add_parser(
        "video",
        help="stylise a video, frame by frame, with temporal consistency",
        description="Style transfer for a video (Ruder et al., 2016): each frame starts from the previous "
        "stylised frame warped along the optical flow, and a temporal loss keeps it there except at "
        "occlusions and motion boundaries. IN is a video (.mp4 .webm .gif .mov .mkv .avi .m4v) or a folder of "
        "frames; OUT is .mp4, .webm, .gif or a new folder of PNG frames. The frame count and rate are kept.",
    )
    p.add_argument("input", type=Path, metavar="IN", help="a video file or a folder of frames")
    p.add_argument("style", help="style image: a file, or an example name such as starry_night or strokes")
    p.add_argument("-o", "--output", type=Path, required=True, metavar="OUT", help="where to write the result (.mp4, .webm, .gif or a folder)")
    p.add_argument("--size", type=arguments.int_at_least(MIN_SIDE), default=512, help="long side of the output frames in px (default 512)")
    p.add_argument("--style-size", type=arguments.int_at_least(MIN_SIDE), help="long side of the style image in px (default: --size)")
    p.add_argument("--iterations", type=arguments.int_at_least(1), default=300, help="L-BFGS iterations per frame (default 300)")
    p.add_argument(
        "--temporal-weight",
        type=arguments.non_negative,
        help="lambda of the temporal loss (default: 1e8, the default beta, for imagenet and random weights; "
        "1e12 for caffe); 0 is plain frame-by-frame transfer",
    )
    p.add_argument("--fps", type=arguments.positive, help=f"frame rate of a folder of frames (default {FOLDER_FPS:g})")
    p.add_argument("--max-frames", type=arguments.int_at_least(1), help="stylise only the first N frames")
    arguments.add_network_arguments(p, seed_help="seed for random weights")
    arguments.add_loss_weight_arguments(p)
    p.add_argument("--precision", choices=PRECISIONS, default="fp32", help="GPU arithmetic (default fp32)")
    p.add_argument("--no-memory-check", action="store_true", help="skip the memory estimate that refuses videos too large")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_run_video)


def _run_video(args: argparse.Namespace) -> int:
    style = resolve_image(args.style)
    options = {
        name: getattr(args, name)
        for name in ("style_size", "content_weight", "style_weight", "tv_weight", "temporal_weight", "seed")
        if getattr(args, name) is not None
    }
    result = stylise_video(
        args.input, style, args.output, size=args.size, fps=args.fps, max_frames=args.max_frames,
        network=arguments.network_spec(args), style_network=arguments.style_network_spec(args), device=args.device,
        check_memory=not args.no_memory_check, progress=not args.quiet, iterations=args.iterations,
        speed=Speed(args.precision), **options,
    )  # fmt: skip
    flicker = f", mean warped-frame difference {result.flicker.mean():.4f}" if result.flicker.size else ""
    done = f"{result.frames} frames" if not result.interrupted else f"the first {result.frames} of {result.total} frames"
    print(
        f"wrote {args.output} ({done}, {result.size[0]}x{result.size[1]} at {result.fps:g} fps) in "
        f"{result.seconds:.1f} s of optimisation{flicker}"
    )
    if result.interrupted:
        print("nst-lessons: interrupted; the video holds the frames finished so far", file=sys.stderr)
        return 130
    return 0
