"""Image I/O: any Pillow-readable file in, RGB out; tensors of shape (1,3,H,W) in [0,1] for the network."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError
from torch import Tensor

MIN_SIDE = 32
"""Smallest accepted side in pixels: VGG-19's five poolings leave nothing of a smaller image."""

MAX_PIXELS = 100_000_000
"""Largest accepted image (width x height) before decoding: a guard against decompression bombs."""

ImageLike = str | os.PathLike[str] | Image.Image | Tensor | np.ndarray


class ImageError(ValueError):
    """An image could not be read or is unusable; the message is one line for the user."""


def _open(path: str | os.PathLike[str]) -> Image.Image:
    path = Path(path)
    if not path.is_file():
        raise ImageError(f"no image file at {path}")
    try:
        with Image.open(path) as im:
            if im.width * im.height > MAX_PIXELS:
                raise ImageError(
                    f"{path} is {im.width}x{im.height} pixels, over the limit of {MAX_PIXELS:,} "
                    "(a possible decompression bomb); resize it first"
                )
            im.load()
            return ImageOps.exif_transpose(im)
    except Image.DecompressionBombError:
        raise ImageError(f"{path} is too large to decode safely (a possible decompression bomb)") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        if isinstance(error, ImageError):
            raise
        raise ImageError(f"{path} is not a readable image ({error})") from None


def _to_rgb(im: Image.Image) -> Image.Image:
    """Any Pillow mode -> 8-bit RGB: alpha composited on white, 16-bit and float rescaled, CMYK converted."""
    if im.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        a = np.asarray(im, dtype=np.float64)
        scale = 1.0 if im.mode == "F" and a.max(initial=0) <= 1.0 else (255.0 if a.max(initial=0) <= 255 else 65535.0)
        im = Image.fromarray(np.clip(a / scale * 255.0 + 0.5, 0, 255).astype(np.uint8), mode="L")
    if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
        rgba = im.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return im.convert("RGB")


def resize_long_side(im: Image.Image, size: int) -> Image.Image:
    """Resize so that the longer side is ``size`` pixels, keeping the aspect ratio."""
    w, h = im.size
    scale = size / max(w, h)
    new = (max(1, round(w * scale)), max(1, round(h * scale)))
    return im if new == im.size else im.resize(new, Image.Resampling.LANCZOS)


def load_image(image: ImageLike, size: int | None = None) -> Image.Image:
    """Read an image as 8-bit RGB, optionally resized so its longer side is ``size`` pixels.

    Accepts a path to any Pillow-readable file, a PIL image, a tensor (3,H,W) or (1,3,H,W) in
    [0,1], or a uint8 / float array (H,W,3). EXIF orientation is applied; grayscale, palette,
    RGBA/LA (composited on white), 16-bit and CMYK images are converted to RGB.

    Raises:
        ImageError: missing or unreadable file, too small (under 32 px a side), or too large.
    """
    if size is not None and size < MIN_SIDE:
        raise ImageError(f"size must be at least {MIN_SIDE} px, got {size}")
    if isinstance(image, Image.Image):
        im = _to_rgb(ImageOps.exif_transpose(image))
    elif isinstance(image, Tensor):
        im = to_pil(image)
    elif isinstance(image, np.ndarray):
        a = image if image.dtype == np.uint8 else np.clip(image * 255.0 + 0.5, 0, 255).astype(np.uint8)
        im = _to_rgb(Image.fromarray(a))
    else:
        im = _to_rgb(_open(image))
    if min(im.size) < MIN_SIDE:
        raise ImageError(f"image is {im.width}x{im.height} pixels; at least {MIN_SIDE} px a side is needed")
    return im if size is None else resize_long_side(im, size)


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
    a = (x.detach().float().clamp(0, 1) * 255.0 + 0.5).byte().permute(1, 2, 0).cpu().numpy()
    return Image.fromarray(a, mode="RGB")


def save_image(image: Image.Image | Tensor, path: str | os.PathLike[str]) -> Path:
    """Write an image atomically (format from the extension); nothing is left behind on failure."""
    path = Path(path)
    im = to_pil(image) if isinstance(image, Tensor) else image
    fmt = Image.registered_extensions().get(path.suffix.lower())
    if fmt is None:
        raise ImageError(f"cannot tell an image format from {path.name!r}; use .png or .jpg")
    if not path.parent.is_dir():
        raise ImageError(f"folder {path.parent} does not exist")
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".partial", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            im.save(f, format=fmt)
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return path
