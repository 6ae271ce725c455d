"""The transfer command's controls: several styles, masks, colour, scale, snapshots and printing
from one command line, and bad values that exit 2 with one line and write nothing."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from nst_lessons.cli import main
from nst_lessons.data import example_path

pytestmark = [pytest.mark.filterwarnings("ignore::nst_lessons.vgg.RandomWeightsWarning"), pytest.mark.usefixtures("one_thread")]

FAST = ["--weights", "random", "--size", "40", "--iterations", "2", "--quiet"]


@pytest.fixture
def folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Masks for grace_hopper at 40 px (34x40) and for a 32x32 style, top and bottom halves."""
    monkeypatch.chdir(tmp_path)
    for name, (w, h) in (("top", (34, 40)), ("style_top", (32, 32))):
        a = np.zeros((h, w), np.uint8)
        a[: h // 2] = 255
        Image.fromarray(a).save(tmp_path / f"{name}.png")
        Image.fromarray(255 - a).save(tmp_path / f"{name.replace('top', 'bottom')}.png")
    column = np.zeros((40, 34), np.uint8)
    column[:, -1] = 255  # only the last column: cropped away by the second pooling
    Image.fromarray(column).save(tmp_path / "last_column.png")
    Image.new("RGB", (1, 1)).save(tmp_path / "dot.png")
    return tmp_path


def files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_two_regions_with_two_styles_in_one_line(folder: Path) -> None:
    argv = ["transfer", "grace_hopper", "strokes", "waves", "-o", "out.png", "--style-size", "32", "--history", "h.json",
            "--content-mask", "top.png", "--style-mask", "style_top.png",
            "--content-mask", "bottom.png", "--style-mask", "style_bottom.png", *FAST]  # fmt: skip
    assert main(argv) == 0
    settings = json.loads((folder / "h.json").read_text())["settings"]
    assert settings["regions"] == 2 and settings["styles"] == 2 and Image.open(folder / "out.png").size == (34, 40)


def test_comma_separated_styles_blend_weights_colour_and_scale(folder: Path) -> None:
    argv = ["transfer", "grace_hopper", "strokes,waves", "-o", "out.png", "--style-blend-weights", "0.7,0.3",
            "--preserve-color", "luminance", "--style-scale", "1.5", "--normalize-gradients", "--history", "h.json", *FAST]  # fmt: skip
    assert main(argv) == 0
    s = json.loads((folder / "h.json").read_text())["settings"]
    assert (s["styles"], s["style_blend_weights"], s["preserve_color"], s["style_scale"], s["normalize_gradients"]) == (
        2, [0.7, 0.3], "luminance", 1.5, True,
    )  # fmt: skip


def test_snapshots_and_printed_terms(folder: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["transfer", "grace_hopper", "strokes", "-o", "out.png", *FAST, "--iterations", "4", "--save-every", "2", "--print-every", "3"]
    assert main(argv) == 0
    assert [f for f in files(folder) if f.startswith("out")] == ["out.png", "out_2.png", "out_4.png"]
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("iteration 3/4: total ") and " content " in out[0] and " style " in out[0] and " tv " in out[0]
    assert out[1].startswith("wrote out.png")


def test_a_style_file_name_with_a_comma_is_one_image(folder: Path) -> None:
    Image.open(example_path("strokes")).save(folder / "van gogh, 1889.png")
    assert main(["transfer", "grace_hopper", "van gogh, 1889.png", "-o", "out.png", *FAST]) == 0
    assert main(["transfer", "grace_hopper", "van gogh, 1889.png,waves", "-o", "two.png", "--history", "h.json", *FAST]) == 0
    assert json.loads((folder / "h.json").read_text())["settings"]["styles"] == 2  # not a file: split at the commas


def test_normalize_gradients_reports_the_loss_of_the_image_it_writes(folder: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["transfer", "grace_hopper", "strokes", "-o", "out.png", "--normalize-gradients", "--history", "h.json", *FAST]
    assert main(argv) == 0
    last = json.loads((folder / "h.json").read_text())["history"][-1]["total"]
    assert capsys.readouterr().out.strip().endswith(f"last loss {last:.4g}")


BAD = [
    (["--preserve-color", "lab"], "argument --preserve-color: invalid choice: 'lab'"),
    (["--style-blend-weights", "0.5"], "style_blend_weights (--style-blend-weights) has 1 weights for 2 style image(s)"),
    (["--style-blend-weights", "0.5,-1"], "--style-blend-weights: must be a finite number >= 0, got -1"),
    (["--content-mask", "top.png", "--style-mask", "style_top.png"], "1 mask pair(s) (--content-mask/--style-mask) for 2 style image(s)"),
    (["--content-mask", "top.png", "--style-mask", "style_top.png", "--content-mask", "bottom.png"],
     "2 --content-mask and 1 --style-mask"),  # fmt: skip
    (["--content-mask", "top.png", "--style-mask", "style_top.png", "--content-mask", "bottom.png",
      "--style-mask", "style_bottom.png", "--style-blend-weights", "1,1"], "(--style-blend-weights) do not apply with masks"),  # fmt: skip
    (["--content-mask", "last_column.png", "--style-mask", "style_top.png", "--content-mask", "bottom.png",
      "--style-mask", "style_bottom.png"], "content mask 1 (at relu3_1) covers nothing of a 10x8 feature map"),  # fmt: skip
    (["--content-mask", "style_top.png", "--style-mask", "style_top.png", "--content-mask", "bottom.png",
      "--style-mask", "style_bottom.png"], "content mask 1 is 32x32 pixels but its image is 34x40"),  # fmt: skip
    (["--content-mask", "missing.png", "--style-mask", "style_top.png", "--content-mask", "bottom.png",
      "--style-mask", "style_bottom.png"], "no image file at missing.png"),  # fmt: skip
    (["--style-scale", "0"], "--style-scale: must be a finite number > 0, got 0"),
    (["--style-scale", "0.5"], "style_scale 0.5 makes the style 20 px"),
    (["--style-scale", "1", "--style-size", "64"], "give style_size or style_scale, not both"),
    (["--save-every", "0"], "--save-every: must be at least 1"),
    (["--save-every", "2", "--pyramid", "32:2"], "--save-every does not combine with --pyramid"),
]


@pytest.mark.parametrize("extra, message", BAD, ids=[m for _, m in BAD])
def test_bad_values_exit_2_with_one_line_and_write_nothing(
    extra: list[str], message: str, folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = files(folder)
    assert main(["transfer", "grace_hopper", "strokes", "waves", "-o", "out.png", *FAST, *extra]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err
    assert files(folder) == before


@pytest.mark.parametrize(
    "argv, message",
    [
        (["transfer", "dot.png", "strokes", "-o", "out.png", "--size", "64"], "dot.png is 1x1 pixels; at least 32 px a side"),
        (["transfer", "grace_hopper", "-o", "out.png"], "expected CONTENT and at least one STYLE"),
    ],
)
def test_a_degenerate_source_or_no_style_is_refused(argv: list[str], message: str, folder: Path, capsys: pytest.CaptureFixture[str]) -> None:
    before = files(folder)
    assert main([*argv, "--weights", "random"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err
    assert files(folder) == before
