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


def _palette_with_transparency() -> Image.Image:
    im = Image.new("P", (40, 40), 1)
    im.putpalette([255, 0, 0, 0, 0, 255] + [0] * 762)  # index 0 red, index 1 blue
    im.info["transparency"] = 1
    return im


@pytest.mark.parametrize(
    "make, name, expected",
    [
        (lambda: Image.new("L", (40, 40), 100), "x.png", (100, 100, 100)),
        (lambda: Image.new("RGB", (40, 40), (200, 30, 60)).convert("P", palette=Image.Palette.ADAPTIVE), "x.png", (200, 30, 60)),
        (_palette_with_transparency, "x.png", (255, 255, 255)),  # transparent blue -> white
        (lambda: Image.new("LA", (40, 40), (0, 0)), "x.png", (255, 255, 255)),
        (lambda: Image.new("RGB", (40, 40), (0, 255, 255)).convert("CMYK"), "x.jpg", None),
        (lambda: Image.fromarray(np.full((40, 40), 128 * 257, np.uint16)), "x.png", (128, 128, 128)),
        (lambda: Image.fromarray(np.full((40, 40), 1024, np.uint16)), "x.png", (4, 4, 4)),  # dark, 16 bits
        (lambda: Image.new("RGBA", (40, 40), (255, 0, 0, 0)), "x.png", (255, 255, 255)),
    ],
    ids=["L", "P", "P+transparency", "LA", "CMYK", "I;16 grey", "I;16 dark", "RGBA"],
)
def test_modes_become_rgb(tmp_path: Path, make, name: str, expected: tuple[int, int, int] | None) -> None:  # noqa: ANN001
    make().save(tmp_path / name)
    loaded = load_image(tmp_path / name)
    assert loaded.mode == "RGB"
    r, g, b = loaded.getpixel((5, 5))
    if expected is None:  # CMYK cyan through JPEG: blue and green high, red low
        assert r < 60 and g > 190 and b > 190
    else:
        assert (r, g, b) == expected


def test_half_transparent_pixels_are_composited_on_white() -> None:
    im = Image.new("RGBA", (40, 40), (0, 0, 0, 128))
    r, g, b = load_image(im).getpixel((0, 0))
    assert 120 < r < 135 and r == g == b


def test_resize_by_the_long_side() -> None:
    assert load_image(gradient_rgb(300, 200), size=150).size == (150, 100)
    assert load_image(gradient_rgb(200, 300), size=150).size == (100, 150)


def test_exif_orientation_of_a_png(tmp_path: Path) -> None:
    exif = Image.Exif()
    exif[0x0112] = 8  # "rotate 90 CCW to display"
    gradient_rgb(60, 40).save(tmp_path / "rotated.png", exif=exif)
    assert load_image(tmp_path / "rotated.png").size == (40, 60)


def test_small_images_are_refused() -> None:
    with pytest.raises(ImageError, match="at least 32 px"):
        load_image(gradient_rgb(100, 31))
    with pytest.raises(ImageError, match="1000x40 pixels"):  # fine as it is...
        load_image(gradient_rgb(1000, 40), size=64)  # ...but 64x3 after resizing
    assert load_image(gradient_rgb(1000, 40)).size == (1000, 40)
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


def test_save_image_checks_the_name(tmp_path: Path) -> None:
    path = save_image(to_tensor(gradient_rgb()), tmp_path / "out.png")
    assert Image.open(path).size == (60, 40)
    assert path.stat().st_mode & 0o044 == 0o044  # readable by others (umask 022), not mkstemp's 0600
    (tmp_path / "dir.png").mkdir()
    for bad, message in [
        ("out.unknown", "image format"),
        ("out.psd", "image format"),  # Pillow reads PSD but cannot write it
        ("out.xbm", "cannot write an RGB image"),  # XBM is 1-bit only
        ("nowhere/out.png", "does not exist"),
        ("dir.png", "is a directory"),
    ]:
        with pytest.raises(ImageError, match=message):
            save_image(gradient_rgb(), tmp_path / bad)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dir.png", "out.png"]


def test_a_failed_save_leaves_the_old_file_and_nothing_else(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    save_image(gradient_rgb(), tmp_path / "out.png")
    before = (tmp_path / "out.png").read_bytes()

    save = Image.Image.save

    def half_written(self, fp, format=None, **params):  # noqa: ANN001, ANN003, A002
        if not isinstance(fp, Path):  # the format probe writes to memory
            return save(self, fp, format, **params)
        fp.write_bytes(b"\x89PNG half")
        raise OSError("disk full")

    monkeypatch.setattr(Image.Image, "save", half_written)
    with pytest.raises(OSError, match="disk full"):
        save_image(Image.new("RGB", (40, 40)), tmp_path / "out.png")
    assert (tmp_path / "out.png").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.png"]
