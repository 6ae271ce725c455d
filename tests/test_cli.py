"""The nst-lessons command: a real run, and one-line errors that write nothing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from nst_lessons.cli import main


def nst(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONWARNINGS": "default"}
    return subprocess.run([sys.executable, "-m", "nst_lessons", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def test_transfer_on_the_offline_examples(tmp_path: Path) -> None:
    """The issue's check: 50 L-BFGS iterations at 128 px with random weights, the image written, the loss falling."""
    done = nst(
        "transfer", "grace_hopper", "strokes", "-o", "out.png", "--weights", "random", "--size", "128",
        "--iterations", "50", "--history", "history.json", "--quiet", cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "weights='random'" in done.stderr  # announced
    assert done.stdout.startswith("wrote out.png")
    assert max(Image.open(tmp_path / "out.png").size) == 128
    record = json.loads((tmp_path / "history.json").read_text())
    totals = [h["total"] for h in record["history"]]
    assert len(totals) >= 50 and min(totals) < 0.1 * totals[0]
    assert record["settings"]["iterations"] == 50


def test_help_lists_the_options(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["transfer", "--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    for option in ("--size", "--iterations", "--optimizer", "--init", "--weights", "--pooling", "--device", "--seed",
                   "--content-layers", "--style-layers", "--content-weight", "--style-weight", "--tv-weight"):  # fmt: skip
        assert option in out


BAD = [
    (["transfer", "missing.jpg", "strokes", "-o", "out.png"], "no image file at missing.jpg"),
    (["transfer", "notes.txt", "strokes", "-o", "out.png", "--weights", "random"], "not a readable image"),
    (["transfer", "grace_hopper", "strokes", "-o", "out.png", "--size", "8"], "--size: must be at least 32"),
    (["transfer", "grace_hopper", "strokes", "-o", "out.png", "--iterations", "-3"], "--iterations: must be at least 1"),
    (["transfer", "grace_hopper", "strokes", "-o", "out.png", "--style-weight", "nan"], "--style-weight: must be a finite"),
    (["transfer", "grace_hopper", "strokes", "-o", "out.png", "--style-layers", "relu1_1,relu6_1"], "unknown VGG-19 layer 'relu6_1'"),
    (["transfer", "grace_hopper", "strokes", "-o", "out.png", "--weights", "alexnet"], "unknown weights 'alexnet'"),
    (["transfer", "grace_hopper", "strokes", "-o", "out.png", "--optimizer", "sgd"], "invalid choice: 'sgd'"),
    (["transfer", "grace_hopper", "strokes", "-o", "out.png", "--init", "zeros"], "no image file at zeros"),
    (["transfer", "grace_hopper", "strokes", "-o", "out.webp2"], "cannot write an image format"),
    (["transfer", "grace_hopper", "strokes", "-o", "out.psd"], "cannot write an image format"),
    (["transfer", "grace_hopper", "strokes", "-o", "no/such/dir/results"], "folder no/such/dir does not exist"),
    (["transfer", "grace_hopper", "strokes", "-o", "out.png", "--history", "."], "it is a directory"),
    (["transfer", "grace_hopper", "strokes", "-o", "out.png", "--device", "meta"], "unknown device 'meta'"),
    (["transfer", "grace_hopper", "strokes", "-o", "out.png", "--device", "gpu"], "unknown device 'gpu'"),
    (["transfer", "grace_hopper", "strokes", "-o", "out.png", "--seed", "99999999999999999999"], "--seed: must be below"),
    (["transfer", "grace_hopper", "strokes", "-o", "out.png", "--learning-rate", "0"], "--learning-rate: must be a finite number > 0, got 0"),
    (["transfer", "grace_hopper", "strokes", "-o", "out.png", "--style-layers", "relu1_1,relu1_1"], "named twice"),
    (["transfer", "wide.png", "strokes", "-o", "out.png", "--weights", "random", "--size", "64"], "wide.png is 1000x40 pixels, 64x3 at size 64; at least 32 px a side"),
    (["transfer", "grace_hopper", "strokes", "-o", "no/such/dir/out.png"], "does not exist"),
    (["transfer", "grace_hopper", "strokes"], "the following arguments are required: -o/--output"),
    (["paint"], "invalid choice: 'paint'"),
]


@pytest.mark.parametrize("argv, message", BAD, ids=[m for _, m in BAD])
def test_bad_input_is_one_line_and_writes_nothing(
    argv: list[str], message: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "notes.txt").write_text("not an image")
    Image.new("RGB", (1000, 40)).save(tmp_path / "wide.png")
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0] and "Traceback" not in err[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt", "wide.png"]


def test_unavailable_weights_message(tmp_path: Path) -> None:
    """Offline (here: a mirror on a closed port), the real weights fail with one clear line and no output."""
    env_home = tmp_path / "home"
    done = subprocess.run(
        [sys.executable, "-m", "nst_lessons", "transfer", "grace_hopper", "strokes", "-o", "out.png", "--size", "48"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
        env={**os.environ, "NST_LESSONS_HOME": str(env_home), "NST_LESSONS_WEIGHTS_MIRROR": "http://127.0.0.1:9"},
    )  # fmt: skip
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "http://127.0.0.1:9/vgg19-dcbb9e9d.pth" in lines[0]
    assert "--weights random" in lines[0] and "weights='random'" not in lines[0]  # the command line's words
    assert not (tmp_path / "out.png").exists()


def test_examples_lists_offline_and_downloadable(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["examples"]) == 0
    out = capsys.readouterr().out
    assert "grace_hopper" in out and "starry_night" in out
