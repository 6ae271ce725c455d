"""Trust in the command line (issue 17): no output is ever an input, memory is checked before it is
allocated, what can fail is checked before the work, and every command ends the same way on
Ctrl-C (exit 130) and SIGTERM (exit 143, nothing half-written left)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFile

from nst_lessons import batch, cli, style_space, transfer, video
from nst_lessons.cli import main

FAST = ["--weights", "random", "--size", "40", "--iterations", "2", "--quiet", "--seed", "0"]


def _image(path: Path, seed: int, size: tuple[int, int] = (48, 40)) -> Path:
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(path)
    return path


def _contents(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` (hidden ones too) with its bytes."""
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def work(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The working folder: photo.png, style.png, a sub/ folder, a symlink and a hard link to the photo."""
    monkeypatch.chdir(tmp_path)
    _image(tmp_path / "photo.png", 1)
    _image(tmp_path / "style.png", 2)
    (tmp_path / "sub").mkdir()
    (tmp_path / "link.png").symlink_to(tmp_path / "photo.png")
    os.link(tmp_path / "photo.png", tmp_path / "hard.png")
    return tmp_path


def _no_loading(monkeypatch: pytest.MonkeyPatch) -> None:
    """Loading a network fails the test (transfer's load_networks serves batch, pyramid and video)."""
    for module in (transfer, style_space):
        monkeypatch.setattr(module, "load_network", lambda *a, **k: pytest.fail("a network was loaded"))


# --------------------------------------------------------------------------- no input is ever an output


def test_same_file_by_any_spelling(work: Path) -> None:
    from nst_lessons.files import same_file

    photo = work / "photo.png"
    for spelling in ("photo.png", str(photo), "./sub/../photo.png", "link.png", "hard.png", "sub/../link.png"):
        assert same_file(spelling, "photo.png") and same_file(photo, spelling), spelling
    assert not same_file("photo.png", "style.png")
    assert same_file("new.png", "./sub/../new.png") and not same_file("new.png", "sub/new.png")  # not there yet: by path


@pytest.mark.parametrize(
    "argv, clash",
    [
        (["photo.png", "style.png", "-o", "photo.png"], "the output photo.png is the content image photo.png"),
        (["photo.png", "style.png", "-o", "{work}/photo.png"], "the output {work}/photo.png is the content image"),
        (["photo.png", "style.png", "-o", "./sub/../photo.png"], "the output sub/../photo.png is the content image"),
        (["photo.png", "style.png", "-o", "link.png"], "the output link.png is the content image photo.png"),
        (["link.png", "style.png", "-o", "hard.png"], "the output hard.png is the content image link.png"),
        (["photo.png", "style.png", "-o", "style.png"], "the output style.png is the style image style.png"),
        (["photo.png", "style.png", "-o", "out.png", "--history", "photo.png"], "the --history file photo.png is the content image"),
        (["photo.png", "style.png", "-o", "out.png", "--history", "out.png"], "the --history file out.png is the output out.png"),
        (["photo.png", "style.png", "-o", "style.png", "--pyramid", "40:1,48:1"], "the output style.png is the style image"),
    ],
    ids=["relative", "absolute", "dot-dot", "symlink", "hard link", "style", "history", "history is -o", "pyramid"],
)
def test_transfer_never_writes_over_an_input(
    argv: list[str], clash: str, work: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _no_loading(monkeypatch)
    before = _contents(work)
    argv = [a.format(work=work) for a in argv]
    assert main(["transfer", *argv, *FAST]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and clash.format(work=work) in err[0] and "(the same file)" in err[0]
    assert _contents(work) == before


def test_save_every_snapshots_never_write_over_an_input(work: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _image(work / "out_2.png", 3)  # where --save-every 2 writes its snapshot of out.png
    before = _contents(work)
    assert main(["transfer", "photo.png", "out_2.png", "-o", "out.png", "--save-every", "2", *FAST]) == 2
    assert "the --save-every snapshot out_2.png is the style image out_2.png" in capsys.readouterr().err
    assert _contents(work) == before


def test_video_never_writes_over_its_clip_or_style(work: Path, capsys: pytest.CaptureFixture[str]) -> None:
    frames = [np.asarray(Image.open(work / "photo.png"))] * 2
    with video.VideoWriter(work / "clip.gif", 10.0, (48, 40)) as writer:
        for frame in frames:
            writer.append(frame)
    (work / "clip_link.gif").symlink_to("clip.gif")
    before = _contents(work)
    for output, clash in (("clip.gif", "the output clip.gif is the input clip.gif"),
                          ("./sub/../clip_link.gif", "is the input clip.gif"),
                          ("style.png", "cannot write a video as 'style.png'")):  # fmt: skip
        assert main(["video", "clip.gif", "style.png", "-o", output, *FAST]) == 2
        err = capsys.readouterr().err.splitlines()
        assert len(err) == 1 and clash in err[0], err
    assert _contents(work) == before


def test_a_batch_never_goes_into_its_own_input_folder(work: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _image(work / "sub" / "a.png", 4)
    _image(work / "sub" / "photo.png", 5)
    (work / "sub_link").symlink_to("sub")
    before = _contents(work)
    for argv, clash in ((["sub", "style.png", "-o", "sub", "--overwrite"], "the output folder sub is the input folder sub"),
                        (["sub", "style.png", "-o", "sub_link"], "the output folder sub_link is the input folder sub"),
                        (["photo.png", "style.png", "-o", ".", "--overwrite"], "the result photo.png is the content image photo.png"),
                        (["photo.png", "sub/photo.png", "-o", "sub", "--overwrite"], "the result sub/photo.png is the style image sub/photo.png")):  # fmt: skip
        assert main(["transfer", *argv, *FAST]) == 2
        err = capsys.readouterr().err.splitlines()
        assert len(err) == 1 and clash in err[0], err
    assert _contents(work) == before


def test_style_space_never_writes_over_its_collection(work: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for name, seed in (("a.png", 6), ("b.png", 7), ("map.png", 8)):  # a painting named as the map the command writes
        _image(work / "sub" / name, seed)
    (work / "space").mkdir()
    os.link(work / "sub" / "map.png", work / "space" / "map.png")
    before = _contents(work)
    assert main(["style-space", ".", "-o", ".", "--weights", "random"]) == 2
    _refused(capsys, "the output folder . is the collection .")
    assert main(["style-space", "sub", "-o", "./sub/../sub/", "--weights", "random"]) == 2
    _refused(capsys, "the output folder sub/../sub is the collection sub")
    assert main(["style-space", "sub", "-o", "space", "--weights", "random"]) == 2
    _refused(capsys, "the result space/map.png is an image of the collection sub/map.png")
    assert _contents(work) == before


# --------------------------------------------------------------------------- check, then allocate


@pytest.fixture
def nothing_decoded_at_size(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any resize, or any decoding of a file's pixels, fails the test: refusals must come from headers."""

    def resize(self: Image.Image, size: tuple[int, int], *args: object, **kwargs: object) -> Image.Image:
        pytest.fail(f"an image was resized to {size}")

    monkeypatch.setattr(Image.Image, "resize", resize)
    monkeypatch.setattr(ImageFile.ImageFile, "load", lambda self: pytest.fail(f"{self.filename} was decoded"))


def _refused(capsys: pytest.CaptureFixture[str], *needles: str) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and all(n in err[0] for n in needles), err
    return err[0]


@pytest.mark.parametrize(
    "argv",
    [
        ["transfer", "photo.png", "style.png", "-o", "out.png", "--size", "100000"],
        ["transfer", "photo.png", "style.png", "-o", "out.png", "--size", "512", "--style-size", "100000"],
        ["transfer", "photo.png", "style.png", "-o", "out.png", "--pyramid", "64:10,100000:1"],
        ["transfer", "photo.png", "style.png", "-o", "results", "--size", "100000"],
        ["video", "frames", "style.png", "-o", "out.mp4", "--size", "100000"],
        ["video", "frames", "style.png", "-o", "out.mp4", "--size", "64", "--style-size", "100000"],
        ["style-space", "frames", "-o", "space", "--size", "100000"],
    ],
    ids=["transfer", "style-size", "pyramid", "batch", "video", "video style-size", "style-space"],
)
def test_an_absurd_size_is_refused_before_anything_is_decoded_at_it(
    argv: list[str], work: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    (work / "frames").mkdir()
    for k in range(3):
        _image(work / "frames" / f"f{k}.png", k)
    _no_loading(monkeypatch)
    before = _contents(work)
    monkeypatch.setattr(Image.Image, "resize", lambda self, size, *a, **k: pytest.fail(f"an image was resized to {size}"))
    monkeypatch.setattr(video, "check_frames", lambda *a: pytest.fail("the frames were decoded"), raising=False)
    if argv[0] != "video" and "results" not in argv:  # not even at their own size (a video probes frame 1, a batch its style)
        monkeypatch.setattr(ImageFile.ImageFile, "load", lambda self: pytest.fail(f"{self.filename} was decoded"))
    status = main([*argv, "--weights", "random"])
    if argv[0] == "transfer" and "results" in argv:  # a batch reports each image that does not fit, and goes on
        assert status == 1 and "photo.png: a 100000x83333 run needs about" in capsys.readouterr().err
    else:
        assert status == 2
        err = _refused(capsys)  # by the memory estimate, or, for a video's frames, the pixel limit at --size
        assert ("run needs about" in err and "are free on cpu" in err) or "at size 100000, over the limit of 100,000,000" in err
    assert {k: v for k, v in _contents(work).items()} == before  # nothing written (a batch makes its folder only)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["transfer", "photo.png", "style.png", "-o", "out.png"], "photo.png would be 20000x16667 pixels at size 20000, over the limit of 100,000,000"),
        (["video", "clip.gif", "style.png", "-o", "out.mp4"], "frames of 48x40 would be 20000x16666 at size 20000, over the limit of 100,000,000 pixels"),
    ],
    ids=["transfer", "video"],
)
def test_the_pixel_limit_holds_without_the_memory_check(
    argv: list[str], message: str, work: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    with video.VideoWriter(work / "clip.gif", 10.0, (48, 40)) as writer:
        writer.append(np.asarray(Image.open(work / "photo.png")))
    before = _contents(work)
    monkeypatch.setattr(Image.Image, "resize", lambda self, size, *a, **k: pytest.fail(f"an image was resized to {size}"))
    assert main([*argv, "--size", "20000", "--no-memory-check", "--weights", "random"]) == 2
    _refused(capsys, message)
    assert _contents(work) == before


def test_a_decompression_bomb_is_refused_from_its_header(work: Path, capsys: pytest.CaptureFixture[str], nothing_decoded_at_size: None) -> None:
    header = bytearray((work / "photo.png").read_bytes())
    header[16:24] = (30000).to_bytes(4, "big") + (30000).to_bytes(4, "big")  # IHDR width and height: 900 Mpx
    header[29:33] = zlib.crc32(header[12:29]).to_bytes(4, "big")  # the chunk's CRC, so that the header reads
    (work / "bomb.png").write_bytes(bytes(header))
    assert main(["transfer", "bomb.png", "style.png", "-o", "out.png", *FAST]) == 2
    _refused(capsys, "bomb.png", "too large to decode safely")


# --------------------------------------------------------------------------- fail before the work


@pytest.fixture
def read_only_folder(tmp_path: Path) -> Path:
    """A folder no file can be created in: a 0555 one, or for root (whom permission bits do not
    stop) a sysfs folder, where nobody can create a file."""
    if os.geteuid() == 0:
        return Path("/sys/kernel")
    folder = tmp_path / "read-only"
    folder.mkdir(mode=0o555)
    return folder


@pytest.mark.parametrize("command", ["transfer", "history", "batch", "video", "style-space"])
def test_an_unwritable_output_folder_is_found_before_the_model_loads(
    command: str, work: Path, read_only_folder: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _no_loading(monkeypatch)
    _image(work / "sub" / "a.png", 3)
    _image(work / "sub" / "b.png", 4)
    _image(work / "sub" / "c.png", 5)
    argv = {
        "transfer": ["transfer", "photo.png", "style.png", "-o", f"{read_only_folder}/out.png", *FAST],
        "history": ["transfer", "photo.png", "style.png", "-o", "out.png", "--history", f"{read_only_folder}/h.json", *FAST],
        "batch": ["transfer", "photo.png", "style.png", "-o", str(read_only_folder), *FAST],
        "video": ["video", "sub", "style.png", "-o", f"{read_only_folder}/out.gif", *FAST],
        "style-space": ["style-space", "sub", "-o", str(read_only_folder), "--weights", "random"],
    }[command]
    assert main(argv) == 2
    _refused(capsys, f"cannot write to the folder {read_only_folder} (Permission denied)")


def _frames(folder: Path, count: int = 4) -> Path:
    folder.mkdir()
    for k in range(count):
        _image(folder / f"frame{k + 1}.png", k)
    return folder


def _count_stylised(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls: list[int] = []
    real = video.style_transfer
    monkeypatch.setattr(video, "style_transfer", lambda *a, **k: calls.append(1) or real(*a, **k))
    return calls


@pytest.mark.parametrize("bad", ["corrupt", "other size"])
def test_a_bad_frame_is_found_before_the_first_is_stylised(
    bad: str, work: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], one_thread: None
) -> None:
    frames = _frames(work / "frames")
    if bad == "corrupt":  # a valid header, pixels cut short
        data = (frames / "frame3.png").read_bytes()
        (frames / "frame3.png").write_bytes(data[: len(data) // 2])
    else:
        _image(frames / "frame3.png", 3, size=(40, 48))
    calls = _count_stylised(monkeypatch)
    before = _contents(work)
    assert main(["video", "frames", "style.png", "-o", "out.mp4", *FAST]) == 2
    message = "frame 3 of frames cannot be decoded (frames/frame3.png is not a readable image" if bad == "corrupt" else (
        "frames differ in size: frame 3 is 40x48, frame 1 is 48x40")
    assert message in capsys.readouterr().err.splitlines()[-1]
    assert calls == [] and _contents(work) == before


# --------------------------------------------------------------------------- the same ending everywhere


def _ctrl_c_at(module: object, iteration: int, run: int = 1) -> Callable[..., object]:
    """``module.style_transfer`` with Ctrl-C during its ``run``-th call, at ``iteration``."""
    real, calls = module.style_transfer, []  # type: ignore[attr-defined]

    def ctrl_c(state: transfer.TransferState) -> None:
        if state.iteration == iteration:
            raise KeyboardInterrupt

    def style_transfer(*args: object, **kwargs: object) -> object:
        calls.append(1)
        if len(calls) == run:
            kwargs["callback"] = ctrl_c
        return real(*args, **kwargs)

    return style_transfer


def test_ctrl_c_on_transfer_writes_the_best_image_and_exits_130(
    work: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], one_thread: None
) -> None:
    monkeypatch.setattr(cli, "style_transfer", _ctrl_c_at(cli, 2))
    argv = ["--weights", "random", "--size", "40", "--iterations", "5", "--quiet"]
    assert main(["transfer", "photo.png", "style.png", "-o", "out.png", "--history", "h.json", *argv]) == 130
    out, err = capsys.readouterr()
    assert out.startswith("wrote out.png (40x33) after 2 iterations")
    assert err.splitlines()[-1] == "nst-lessons: interrupted; out.png holds the best image so far"
    assert Image.open(work / "out.png").size == (40, 33) and (work / "h.json").is_file()


def test_ctrl_c_on_a_batch_says_what_it_keeps_and_exits_130(
    work: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], one_thread: None
) -> None:
    _image(work / "sub" / "a.png", 3)
    _image(work / "sub" / "b.png", 4)
    monkeypatch.setattr(batch, "style_transfer", _ctrl_c_at(batch, 1, run=2))
    assert main(["transfer", "sub", "style.png", "-o", "out", *FAST]) == 130
    out, err = capsys.readouterr()
    assert out.startswith("wrote out/a.png from sub/a.png")
    assert "returning the best image" not in err  # what a single run does, not a batch
    assert err.splitlines()[-1] == "nst-lessons: interrupted; 1 written in out, the image in progress not written"
    assert sorted(p.name for p in (work / "out").iterdir()) == ["a.png"]


def _wait_for(predicate: Callable[[], bool], process: subprocess.Popen[str], seconds: float = 120.0) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


@pytest.mark.parametrize("command", ["video", "transfer"])
def test_sigterm_leaves_nothing_behind(command: str, tmp_path: Path) -> None:
    """SIGTERM while the output is being written (a video's hidden temporary file exists from the
    first frame on; a transfer's snapshots are written every iteration): exit 143, and the folder
    holds what it held before, no hidden ``.partial`` file."""
    frames = _frames(tmp_path / "frames", 30)
    _image(tmp_path / "style.png", 9)
    argv = {
        "video": ["video", "frames", "style.png", "-o", "out.mp4", "--size", "48", "--iterations", "20"],
        "transfer": ["transfer", "frames/frame1.png", "style.png", "-o", "out.png", "--size", "48", "--iterations", "100000",
                     "--save-every", "1"],
    }[command]  # fmt: skip
    before = _contents(tmp_path)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(
        [sys.executable, "-m", "nst_lessons", *argv, "--weights", "random", "--quiet"],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        if command == "video":
            _wait_for(lambda: any(p.name.endswith(".partial") for p in tmp_path.iterdir()), process)
        else:
            _wait_for(lambda: (tmp_path / "out_3.png").exists(), process)
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=60)
    finally:
        process.kill()
    assert process.returncode == 143, err
    assert err.splitlines()[-1] == "nst-lessons: terminated; nothing half-written is left"
    left = {k: v for k, v in _contents(tmp_path).items() if not (command == "transfer" and k.startswith("out_"))}
    assert left == before  # the finished snapshots of a transfer are files it wrote whole; nothing else, nothing hidden
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
    assert frames.is_dir()


def test_the_fps_messages_agree(capsys: pytest.CaptureFixture[str]) -> None:
    messages = []
    for value in ("0", "-1", "nan"):
        assert main(["video", "in.gif", "strokes", "-o", "out.gif", "--fps", value]) == 2
        messages.append(capsys.readouterr().err.replace(f"got {value}", "got X"))
    assert messages == ["nst-lessons video: error: argument --fps: must be a finite number > 0, got X (see --help)\n"] * 3


def test_a_swallowed_sigterm_is_delivered_again() -> None:
    """Python ignores an exception raised in a __del__ or an at-fork hook (logging's, while ffmpeg
    starts: CI saw a video run finish with exit 0 after SIGTERM that way): the signal comes again."""

    class Swallows:
        def __del__(self) -> None:
            os.kill(os.getpid(), signal.SIGTERM)
            for _ in range(10_000):  # the handler runs here, and what it raises is ignored
                pass

    with pytest.raises(cli.Terminated), cli._sigterm_raises():
        Swallows()
        deadline = time.monotonic() + 20 * cli.SIGTERM_AGAIN_SECONDS
        while time.monotonic() < deadline:
            time.sleep(0.01)
