"""Image loading: modes, orientation, sizes, refusals; atomic saving."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from nst_lessons import images
from nst_lessons.images import ImageError, load_image, save_image, to_pil, to_tensor


def gradient_rgb(w: int = 60, h: int = 40) -> Image.Image:
    a = np.zeros((h, w, 3), np.uint8)
    a[..., 0] = np.linspace(0, 255, w)[None, :]
    a[..., 1] = np.linspace(0, 255, h)[:, None]
    a[..., 2] = 128
    return Image.fromarray(a, "RGB")


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    im = gradient_rgb(60, 40)
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    im.save(tmp_path / "rotated.jpg", exif=exif)
    loaded = load_image(tmp_path / "rotated.jpg")
    assert loaded.size == (40, 60)


@pytest.mark.parametrize(
    "mode, expected",
    [("L", (100, 100, 100)), ("P", None), ("CMYK", None), ("I;16", (128, 128, 128)), ("RGBA", (255, 255, 255))],
)
def test_modes_become_rgb(tmp_path: Path, mode: str, expected: tuple[int, int, int] | None) -> None:
    if mode == "L":
        im = Image.new("L", (40, 40), 100)
    elif mode == "P":
        im = gradient_rgb().convert("P")
    elif mode == "CMYK":
        im = gradient_rgb().convert("CMYK")
    elif mode == "I;16":
        im = Image.fromarray(np.full((40, 40), 128 * 257, np.uint16))  # mid-grey in 16 bits
    else:
        im = Image.new("RGBA", (40, 40), (255, 0, 0, 0))  # fully transparent red
    path = tmp_path / ("x.jpg" if mode == "CMYK" else "x.png")
    im.save(path)
    loaded = load_image(path)
    assert loaded.mode == "RGB"
    if expected is not None:
        assert loaded.getpixel((5, 5)) == expected


def test_half_transparent_pixels_are_composited_on_white() -> None:
    im = Image.new("RGBA", (40, 40), (0, 0, 0, 128))
    r, g, b = load_image(im).getpixel((0, 0))
    assert 120 < r < 135 and r == g == b


def test_resize_by_the_long_side() -> None:
    assert load_image(gradient_rgb(300, 200), size=150).size == (150, 100)
    assert load_image(gradient_rgb(200, 300), size=150).size == (100, 150)


def test_small_images_are_refused() -> None:
    with pytest.raises(ImageError, match="at least 32 px"):
        load_image(gradient_rgb(100, 31))
    with pytest.raises(ImageError, match="size must be at least 32"):
        load_image(gradient_rgb(), size=16)


def test_decompression_bombs_are_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    gradient_rgb(100, 100).save(tmp_path / "big.png")
    monkeypatch.setattr(images, "MAX_PIXELS", 5000)
    with pytest.raises(ImageError, match="decompression bomb"):
        load_image(tmp_path / "big.png")


def test_missing_and_broken_files(tmp_path: Path) -> None:
    with pytest.raises(ImageError, match="no image file at"):
        load_image(tmp_path / "missing.jpg")
    (tmp_path / "text.jpg").write_text("hello")
    with pytest.raises(ImageError, match="not a readable image"):
        load_image(tmp_path / "text.jpg")
    noise = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    Image.fromarray(noise).save(tmp_path / "ok.png")
    data = (tmp_path / "ok.png").read_bytes()
    (tmp_path / "truncated.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageError, match="not a readable image"):
        load_image(tmp_path / "truncated.png")


def test_tensor_round_trip() -> None:
    im = gradient_rgb()
    x = to_tensor(im)
    assert x.shape == (1, 3, 40, 60) and x.dtype == torch.float32 and x.is_contiguous()
    assert 0 <= x.min() and x.max() <= 1
    assert np.array_equal(np.asarray(to_pil(x)), np.asarray(im))
    assert np.array_equal(np.asarray(load_image(x[0])), np.asarray(im))
    assert to_pil(torch.full((3, 4, 4), 2.0)).getpixel((0, 0)) == (255, 255, 255)  # clamped


def test_save_image_is_atomic_and_checks_the_name(tmp_path: Path) -> None:
    path = save_image(to_tensor(gradient_rgb()), tmp_path / "out.png")
    assert Image.open(path).size == (60, 40)
    with pytest.raises(ImageError, match="image format"):
        save_image(gradient_rgb(), tmp_path / "out.unknown")
    with pytest.raises(ImageError, match="does not exist"):
        save_image(gradient_rgb(), tmp_path / "nowhere" / "out.png")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.png"]
