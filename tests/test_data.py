"""Example images: the committed generated styles, the offline photo, pinned downloads."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from nst_lessons import data
from nst_lessons.download import ChecksumError
from nst_lessons.images import ImageError, load_image

REPO_DATA = Path(__file__).resolve().parent.parent / "data"


@pytest.mark.parametrize("name", data.GENERATED)
def test_committed_styles_are_what_the_generator_makes(name: str) -> None:
    committed = np.asarray(Image.open(REPO_DATA / f"{name}.png").convert("RGB"), dtype=float)
    # A tolerance, so that a Pillow release that rasterises a line a little differently is no failure.
    assert np.abs(committed - np.asarray(data.generate_style(name), dtype=float)).mean() < 1.0


def test_generated_styles_differ_by_seed_and_from_each_other() -> None:
    a = np.asarray(data.generate_style("waves", size=64, seed=0), dtype=float)
    b = np.asarray(data.generate_style("waves", size=64, seed=1), dtype=float)
    c = np.asarray(data.generate_style("mosaic", size=64, seed=0), dtype=float)
    assert np.abs(a - b).mean() > 10 and np.abs(a - c).mean() > 10
    with pytest.raises(ValueError, match="unknown generated style"):
        data.generate_style("cubism")


def test_offline_examples_load() -> None:
    for name in data.OFFLINE:
        im = load_image(data.example_path(name), size=64)
        assert max(im.size) == 64


def test_installed_package_generates_styles_into_the_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(data, "_REPO_DATA", tmp_path / "absent")
    monkeypatch.setenv("NST_LESSONS_HOME", str(tmp_path / "home"))
    path = data.example_path("strokes")
    assert path == tmp_path / "home" / "images" / "strokes.png"
    assert np.array_equal(np.asarray(Image.open(path).convert("RGB")), np.asarray(data.generate_style("strokes")))


def test_classics_are_pinned_to_one_commit() -> None:
    assert data.classic_url("starry_night") == (
        "https://raw.githubusercontent.com/jcjohnson/neural-style/"
        "07c4b8299f8fbdafec0c514fc820ff1d7ff62e46/examples/inputs/starry_night.jpg"
    )
    assert all(len(sha) == 64 for _, sha in data.CLASSICS.values())


@pytest.fixture
def local_classic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """``tubingen`` served from a file:// folder holding a small JPEG pinned by its real hash."""
    served = tmp_path / "served"
    served.mkdir()
    Image.new("RGB", (64, 48), (10, 200, 30)).save(served / "tubingen.jpg")
    sha = hashlib.sha256((served / "tubingen.jpg").read_bytes()).hexdigest()
    monkeypatch.setattr(data, "_CLASSICS_BASE", served.as_uri() + "/")
    monkeypatch.setitem(data.CLASSICS, "tubingen", ("tubingen.jpg", sha))
    monkeypatch.setenv("NST_LESSONS_HOME", str(tmp_path / "home"))
    return served / "tubingen.jpg"


def test_classic_is_downloaded_once_and_verified(local_classic: Path) -> None:
    path = data.resolve_image("tubingen")
    assert path.read_bytes() == local_classic.read_bytes()
    local_classic.unlink()  # a second call must not need the source
    assert data.example_path("tubingen", progress=False) == path


def test_classic_with_the_wrong_bytes_is_discarded(local_classic: Path, tmp_path: Path) -> None:
    Image.new("RGB", (64, 48), (0, 0, 0)).save(local_classic)
    with pytest.raises(ChecksumError, match="checksum mismatch"):
        data.fetch_classic("tubingen", progress=False)
    assert list((tmp_path / "home" / "images").iterdir()) == []


def test_offline_classic_message(local_classic: Path) -> None:
    local_classic.unlink()
    with pytest.raises(ImageError, match="could not download 'tubingen'.*offline example: grace_hopper"):
        data.fetch_classic("tubingen", progress=False)


def test_resolve_image_prefers_files_and_refuses_unknown_names(tmp_path: Path) -> None:
    (tmp_path / "waves").write_bytes(b"a file called waves")
    assert data.resolve_image(tmp_path / "waves") == tmp_path / "waves"
    with pytest.raises(ImageError, match="no image file at nothing.png"):
        data.resolve_image("nothing.png")
