"""Image I/O: any Pillow-readable file in, RGB out; tensors of shape (1,3,H,W) in [0,1] for the network."""

from __future__ import annotations

import io
import os
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError
from torch import Tensor

from nst_lessons.files import atomic_path, check_writable

MIN_SIDE = 32
"""Smallest accepted side in pixels: VGG-19's five poolings leave nothing of a smaller image."""

MAX_PIXELS = 100_000_000
"""Largest accepted image (width x height) before decoding: a guard against decompression bombs."""

ImageLike = str | os.PathLike[str] | Image.Image | Tensor | np.ndarray


class ImageError(ValueError):
    """An image could not be read or is unusable; the message is one line for the user."""


def _open(path: str | os.PathLike[str]) -> Image.Image:
    """The file opened lazily: its header read and its size checked, its pixels not yet decoded."""
    path = Path(path)
    if not path.is_file():
        raise ImageError(f"no image file at {path}")
    try:
        with warnings.catch_warnings():
            # Pillow warns from 89 Mpx; our own limit, checked below, is the one that decides.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im = Image.open(path)
    except Image.DecompressionBombError:
        raise ImageError(f"{path} is too large to decode safely (a possible decompression bomb)") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        raise ImageError(f"{path} is not a readable image ({error})") from None
    if im.width * im.height > MAX_PIXELS:
        im.close()
        raise ImageError(
            f"{path} is {im.width}x{im.height} pixels, over the limit of {MAX_PIXELS:,} "
            "(a possible decompression bomb); resize it first"
        )
    return im


def _decode(im: Image.Image, path: str | os.PathLike[str]) -> Image.Image:
    """The pixels of a lazily opened file (:func:`_open`), EXIF orientation applied; the file is closed."""
    try:
        with im:
            im.load()
            return ImageOps.exif_transpose(im)
    except (OSError, SyntaxError, ValueError) as error:
        raise ImageError(f"{path} is not a readable image ({error})") from None


def image_size(image: ImageLike) -> tuple[int, int]:
    """(width, height) of an image, a file's read from its header without decoding its pixels: what
    the checks plan with before anything is decoded at the requested size. A file's EXIF
    orientation is not applied (Pillow decodes a whole PNG to look for it), so width and height may
    come swapped; every check made with them depends only on the long side, the short side and the
    number of pixels, which a swap leaves as they are."""
    if isinstance(image, Image.Image):
        return image.size
    if isinstance(image, Tensor):
        return int(image.shape[-1]), int(image.shape[-2])
    if isinstance(image, np.ndarray):
        return int(image.shape[1]), int(image.shape[0])
    with _open(image) as im:
        return im.size


def resized_size(size: tuple[int, int], long_side: int) -> tuple[int, int]:
    """(width, height) of an image of ``size`` (width, height) resized to a long side of ``long_side``
    px, keeping the aspect ratio (:func:`resize_long_side`)."""
    w, h = size
    scale = long_side / max(w, h)
    return max(1, round(w * scale)), max(1, round(h * scale))


def _to_rgb(im: Image.Image) -> Image.Image:
    """Any Pillow mode -> 8-bit RGB: alpha composited on white, 16-bit and float rescaled, CMYK converted."""
    if im.mode.startswith("I;16"):
        full_scale = 65535.0
    elif im.mode in ("I", "F"):  # 32-bit modes carry no bit depth: judge by the values
        peak = float(np.asarray(im).max(initial=0))
        full_scale = 1.0 if im.mode == "F" and peak <= 1.0 else 255.0 if peak <= 255 else 65535.0
    else:
        full_scale = 0.0
    if full_scale:
        a = np.asarray(im, dtype=np.float64) / full_scale
        im = Image.fromarray(to_uint8(a), mode="L")
    if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
        rgba = im.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return im.convert("RGB")


def resize_long_side(im: Image.Image, size: int) -> Image.Image:
    """Resize so that the longer side is ``size`` pixels, keeping the aspect ratio."""
    new = resized_size(im.size, size)
    return im if new == im.size else im.resize(new, Image.Resampling.LANCZOS)


def load_image(image: ImageLike, size: int | None = None) -> Image.Image:
    """Read an image as 8-bit RGB, optionally resized so its longer side is ``size`` pixels.

    Accepts a path to any Pillow-readable file, a PIL image, a tensor (3,H,W) or (1,3,H,W) in
    [0,1], or a uint8 / float array (H,W,3). EXIF orientation is applied; grayscale, palette,
    RGBA/LA (composited on white), 16-bit and CMYK images are converted to RGB.

    Raises:
        ImageError: missing or unreadable file, too small (under 32 px a side as given, or after
            resizing to ``size``), or too large (over :data:`MAX_PIXELS` as given, or after
            resizing: both judged from a file's header, before its pixels are decoded). The
            message names the file.
    """
    if size is not None and size < MIN_SIDE:
        raise ImageError(f"size must be at least {MIN_SIDE} px, got {size}")
    name = "image"
    if isinstance(image, Image.Image):
        im = _to_rgb(ImageOps.exif_transpose(image))
    elif isinstance(image, Tensor):
        im = to_pil(image)
    elif isinstance(image, np.ndarray):
        im = _to_rgb(Image.fromarray(to_uint8(image)))
    else:
        name = str(image)
        _check_sizes(name, image_size(image), size)  # from the header, before decoding
        im = _to_rgb(_decode(_open(image), image))
    _check_sizes(name, im.size, size)
    return im if size is None else resize_long_side(im, size)


def _check_sizes(name: str, original: tuple[int, int], size: int | None) -> None:
    """An :class:`ImageError` naming the image unless it is at least 32 px a side as given and after
    resizing to ``size``, and at most :data:`MAX_PIXELS` after resizing."""
    if min(original) < MIN_SIDE:  # a 1x1 or 8x8 source has no detail to upscale, whatever the size asked
        raise ImageError(
            f"{name} is {original[0]}x{original[1]} pixels; at least {MIN_SIDE} px a side is needed "
            "(in the image as given, before resizing)"
        )
    if size is None:
        return
    w, h = resized_size(original, size)
    if min(w, h) < MIN_SIDE:
        resized = "" if (w, h) == original else f", {w}x{h} at size {size}"
        raise ImageError(f"{name} is {original[0]}x{original[1]} pixels{resized}; at least {MIN_SIDE} px a side is needed")
    if w * h > MAX_PIXELS:
        raise ImageError(f"{name} would be {w}x{h} pixels at size {size}, over the limit of {MAX_PIXELS:,}; give a smaller size")


def to_tensor(im: Image.Image, device: str | torch.device | None = None, dtype: torch.dtype = torch.float32) -> Tensor:
    """RGB PIL image -> tensor (1,3,H,W) in [0,1]."""
    a = np.asarray(im.convert("RGB"), dtype=np.float32) / 255.0
    return torch.from_numpy(a).permute(2, 0, 1).unsqueeze(0).to(device=device, dtype=dtype).contiguous()


def to_pil(x: Tensor) -> Image.Image:
    """Tensor (3,H,W) or (1,3,H,W), values in [0,1] (clamped), -> RGB PIL image."""
    if x.dim() == 4:
        if x.shape[0] != 1:
            raise ImageError(f"expected one image, got a batch of {x.shape[0]}")
        x = x[0]
    if x.dim() != 3 or x.shape[0] != 3:
        raise ImageError(f"expected an RGB tensor of shape (3,H,W), got {tuple(x.shape)}")
    return Image.fromarray(to_uint8(x.detach().float().permute(1, 2, 0).cpu().numpy()), mode="RGB")


def to_uint8(a: np.ndarray) -> np.ndarray:
    """Values in [0,1] (clipped) -> uint8, rounded to nearest; a uint8 array is returned as it is. Any shape."""
    return a if a.dtype == np.uint8 else np.clip(a * 255.0 + 0.5, 0, 255).astype(np.uint8)


def image_format(name: str | os.PathLike[str]) -> str:
    """The Pillow format an RGB image named ``name`` would be saved in (from its extension); a clear
    :class:`ImageError` if none can take it (unknown or read-only format). Looks at the name only."""
    name = Path(name)
    fmt = Image.registered_extensions().get(name.suffix.lower())
    if fmt is None or fmt not in Image.SAVE:
        raise ImageError(f"cannot write an image format from {name.name!r}; use .png or .jpg")
    try:
        Image.new("RGB", (1, 1)).save(io.BytesIO(), format=fmt)
    except (OSError, ValueError, KeyError) as error:
        raise ImageError(f"cannot write an RGB image as {fmt} ({error}); use .png or .jpg") from None
    return fmt


def check_output_path(path: str | os.PathLike[str]) -> str:
    """The Pillow format an RGB image would be saved in at ``path`` (:func:`image_format`); a clear
    :class:`ImageError` if that path cannot take one (the format, a missing folder, a directory), or
    a ``PermissionError`` naming the folder if no file can be created there (:func:`check_writable`)."""
    path = Path(path)
    fmt = image_format(path)
    if not path.parent.is_dir():
        raise ImageError(f"cannot write {path}: folder {path.parent} does not exist")
    if path.is_dir():
        raise ImageError(f"cannot write {path}: it is a directory")
    check_writable(path.parent)
    return fmt


def save_image(image: Image.Image | Tensor, path: str | os.PathLike[str]) -> Path:
    """Write an image atomically (format from the extension); nothing is left behind on failure."""
    path = Path(path)
    fmt = check_output_path(path)
    im = to_pil(image) if isinstance(image, Tensor) else image
    with atomic_path(path) as tmp:
        im.save(tmp, format=fmt)
    return path
