"""Batch mode of ``nst-lessons transfer``: many contents, one style, failures reported and skipped."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from nst_lessons import batch
from nst_lessons.batch import image_files, is_batch_output, output_name, run_batch
from nst_lessons.cli import main
from nst_lessons.transfer import TransferResult, style_transfer
from nst_lessons.vgg import VGG19

FAST = ["--weights", "random", "--size", "40", "--iterations", "2", "--quiet", "--seed", "0"]


def _image(path: Path, seed: int, size: tuple[int, int] = (48, 44)) -> Path:
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(path)
    return path


@pytest.fixture
def photos(tmp_path: Path) -> Path:
    """A folder of two good images, one corrupt JPEG and a text file."""
    folder = tmp_path / "photos"
    folder.mkdir()
    _image(folder / "a.png", 1)
    _image(folder / "b.jpg", 2)
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not a JPEG")
    (folder / "notes.txt").write_text("not an image, and not an image extension")
    _image(tmp_path / "style.png", 3)
    return folder


def test_the_output_decides_the_mode(tmp_path: Path) -> None:
    assert not is_batch_output(tmp_path / "out.png") and not is_batch_output("out.JPG") and not is_batch_output("x.psd")
    assert is_batch_output(tmp_path / "results") and is_batch_output(tmp_path) and is_batch_output(".")
    (tmp_path / "odd.png").mkdir()
    assert is_batch_output(tmp_path / "odd.png")  # an existing folder, whatever its name


def test_folders_expand_to_their_image_files(photos: Path, tmp_path: Path) -> None:
    extra = _image(tmp_path / "c.png", 4)
    assert image_files([photos, extra]) == [photos / "a.png", photos / "b.jpg", photos / "broken.jpg", extra]
    assert output_name(Path("x/holiday.jpg")) == "holiday.jpg"
    assert output_name(Path("x/layers.psd")) == "layers.png"  # Pillow reads PSD but cannot write it


def test_good_images_done_the_corrupt_one_named_and_exit_status_1(
    photos: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], one_thread: None
) -> None:
    extra = _image(tmp_path / "c.png", 4, size=(48, 60))
    out = tmp_path / "out"
    status = main(["transfer", str(photos), str(extra), str(tmp_path / "style.png"), "-o", str(out), *FAST])
    captured = capsys.readouterr()
    assert status == 1
    assert sorted(p.name for p in out.iterdir()) == ["a.png", "b.jpg", "c.png"]  # same names, nothing half-written
    assert Image.open(out / "b.jpg").format == "JPEG"
    assert Image.open(out / "c.png").size == (32, 40)
    failed = [line for line in captured.err.splitlines() if line.startswith("nst-lessons: failed:")]
    assert len(failed) == 1 and "broken.jpg" in failed[0] and "not a readable image" in failed[0]
    assert "3 written, 0 kept, 1 failed" in captured.err


def test_existing_results_are_kept_unless_overwrite(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], one_thread: None
) -> None:
    content, style = _image(tmp_path / "a.png", 1), _image(tmp_path / "style.png", 3)
    out = tmp_path / "out"
    out.mkdir()
    marker = Image.new("RGB", (7, 7), (255, 0, 0))
    marker.save(out / "a.png")
    assert main(["transfer", str(content), str(style), "-o", str(out), *FAST]) == 0
    assert Image.open(out / "a.png").size == (7, 7)
    assert "kept" in capsys.readouterr().out
    assert main(["transfer", str(content), str(style), "-o", str(out), *FAST, "--overwrite"]) == 0
    assert max(Image.open(out / "a.png").size) == 40
    assert "0 kept" in capsys.readouterr().out


def _fake_result(stopped: str | None = None) -> TransferResult:
    x = torch.rand(1, 3, 32, 32)
    return TransferResult(image=Image.new("RGB", (32, 32)), tensor=x, history=[], iterations=1, seconds=0.0, stopped=stopped)


def test_one_model_for_the_whole_batch(tmp_path: Path, random_model: VGG19, monkeypatch: pytest.MonkeyPatch) -> None:
    models: list[object] = []

    def fake(content: object, style: object, *, network: object, **options: object) -> TransferResult:
        models.append(network)
        return _fake_result()

    monkeypatch.setattr(batch, "style_transfer", fake)
    monkeypatch.setattr(batch, "load_networks", lambda *a, **k: (random_model, None))
    contents = [_image(tmp_path / f"{k}.png", k) for k in range(3)]
    report = run_batch(contents, _image(tmp_path / "style.jpg", 9), tmp_path / "out", network="vgg19:random", size=40)
    assert len(models) == 3 and all(m is random_model for m in models)
    assert [o.name for _, o in report.written] == ["0.png", "1.png", "2.png"]


def test_same_output_name_twice_is_a_failure_not_an_overwrite(tmp_path: Path, random_model: VGG19, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(batch, "style_transfer", lambda *a, **k: _fake_result())
    (tmp_path / "x").mkdir()
    first, second = _image(tmp_path / "a.png", 1), _image(tmp_path / "x" / "a.png", 2)
    report = run_batch([first, second], _image(tmp_path / "s.png", 3), tmp_path / "out", network=random_model, size=40)
    assert [c for c, _ in report.written] == [first]
    assert report.failed[0][0] == second and str(first) in report.failed[0][1]


def test_ctrl_c_writes_nothing_for_the_image_in_progress(tmp_path: Path, random_model: VGG19, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(batch, "style_transfer", lambda *a, **k: _fake_result("interrupted after 1 iterations"))
    with pytest.raises(KeyboardInterrupt):
        run_batch([_image(tmp_path / "a.png", 1)], _image(tmp_path / "s.png", 3), tmp_path / "out", network=random_model, size=40)
    assert list((tmp_path / "out").iterdir()) == []


def test_a_bad_style_or_folder_is_exit_2_with_nothing_written(tmp_path: Path, photos: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["transfer", str(photos), str(photos / "broken.jpg"), "-o", str(tmp_path / "out"), *FAST]) == 2
    assert "broken.jpg is not a readable image" in capsys.readouterr().err
    assert main(["transfer", str(photos), str(tmp_path / "style.png"), "-o", str(tmp_path / "no" / "out"), *FAST]) == 2
    assert "folder" in capsys.readouterr().err
    assert not (tmp_path / "out").exists() and not (tmp_path / "no").exists()
    assert main(["transfer", str(photos), str(tmp_path / "style.png"), "-o", str(tmp_path / "res.v2"), *FAST]) == 2
    assert capsys.readouterr().err == f"nst-lessons: error: {photos} is a folder: give -o a folder (no suffix) for a batch\n"
    assert not (tmp_path / "res.v2").exists()
    (tmp_path / "empty").mkdir()
    assert main(["transfer", str(tmp_path / "empty"), str(tmp_path / "style.png"), "-o", str(tmp_path / "out"), *FAST]) == 2
    assert capsys.readouterr().err == f"nst-lessons: error: no images in {tmp_path / 'empty'}\n"
    assert not (tmp_path / "out").exists()


def test_style_targets_are_computed_once_and_give_the_single_image_results(
    tmp_path: Path, random_model: VGG19, monkeypatch: pytest.MonkeyPatch, one_thread: None
) -> None:
    calls: list[int] = []
    compute = batch.StyleTargets.compute
    monkeypatch.setattr(batch.StyleTargets, "compute", lambda *a, **k: calls.append(1) or compute(*a, **k))
    contents = [_image(tmp_path / "a.png", 1), _image(tmp_path / "b.png", 2, (44, 48)), _image(tmp_path / "c.png", 3)]
    style = _image(tmp_path / "style.png", 9)
    settings = dict(size=40, iterations=3, seed=0, progress=False)
    run_batch(contents, style, tmp_path / "out", network=random_model, **settings)
    assert len(calls) == 1
    for content in contents:  # b's targets are a's rescaled to its shape (StyleTargets.at)
        single = np.asarray(style_transfer(content, style, network=random_model, **settings).image, dtype=int)
        batched = np.asarray(Image.open(tmp_path / "out" / content.name), dtype=int)
        assert np.abs(single - batched).max() <= 1


def test_every_images_targets_are_the_first_images_rescaled(tmp_path: Path, random_model: VGG19, monkeypatch: pytest.MonkeyPatch) -> None:
    """Not rescaled from the previous image's: an image of the first one's shape gets exactly its targets."""
    seen: list[batch.StyleTargets] = []

    def fake(content: object, style: object, *, style_targets: batch.StyleTargets, **options: object) -> TransferResult:
        seen.append(style_targets)
        return _fake_result()

    monkeypatch.setattr(batch, "style_transfer", fake)
    shapes = [(48, 44), (44, 48), (48, 44)]
    contents = [_image(tmp_path / f"{k}.png", k, wh) for k, wh in enumerate(shapes)]
    run_batch(contents, _image(tmp_path / "style.png", 9), tmp_path / "out", network=random_model, size=40)
    first, second, third = seen
    assert second.size != first.size and third is first
    assert all(torch.equal(second.A[n], first.at(second.size).A[n]) for n in first.layers)
