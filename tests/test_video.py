"""Video style transfer (Ruder et al. 2016): optical flow and the weights c, the files, and the
temporal loss measurably reducing flicker on a synthetic clip with known motion."""

from __future__ import annotations

import subprocess
import time
import warnings
from pathlib import Path

import imageio_ffmpeg
import numpy as np
import pytest
from PIL import Image
from scipy.ndimage import gaussian_filter

from nst_lessons import memory, video
from nst_lessons.cli import main
from nst_lessons.data import resolve_image
from nst_lessons.transfer import style_transfer
from nst_lessons.vgg import VGG19


def texture(h: int, w: int, seed: int = 0) -> np.ndarray:
    """A smooth random colour texture (h,w,3) in [0,1]: DIS finds its motion everywhere."""
    tex = gaussian_filter(np.random.default_rng(seed).random((h, w, 3)), (2, 2, 0))
    return (tex - tex.min()) / (tex.max() - tex.min())


def clip(n: int = 5, h: int = 48, w: int = 64, dx: int = 2, dy: int = 1) -> list[np.ndarray]:
    """n frames (h,w,3) uint8 of a texture moving (dx, dy) px per frame: frame t (p) = frame 0 (p - t d)."""
    pad = 4 + max(abs(dx), abs(dy)) * n
    tex = texture(h + 2 * pad, w + 2 * pad)
    return [(255 * tex[pad - dy * t : pad - dy * t + h, pad - dx * t : pad - dx * t + w] + 0.5).astype(np.uint8) for t in range(n)]


def write(frames: list[np.ndarray], path: Path, fps: float) -> Path:
    with video.VideoWriter(path, fps, (frames[0].shape[1], frames[0].shape[0])) as writer:
        for frame in frames:
            writer.append(frame)
    return path


# --------------------------------------------------------------------------- flow, warp, c


def test_flow_and_warp_recover_a_known_translation() -> None:
    dx, dy = 3, -2
    before, now = (f / 255.0 for f in clip(2, 64, 64, dx, dy))
    backward, c = video.frame_flow(before, now)
    inner = (slice(8, -8), slice(8, -8))
    assert np.allclose(np.median(backward[inner].reshape(-1, 2), axis=0), [-dx, -dy], atol=0.1)  # ŵ = -d
    warped = video.warp(before.astype(np.float32), backward)
    assert np.abs(warped - now)[c > 0].mean() < 0.01 < np.abs(before - now).mean()
    assert c.mean() > 0.85
    assert not c[:, :dx].any() and not c[-abs(dy):, :].any()  # the strips that entered the frame


def test_warp_is_a_backward_warp() -> None:
    image = np.arange(20, dtype=np.float32).reshape(4, 5)
    flow = np.zeros((4, 5, 2), np.float32)
    flow[..., 0] = 1.0  # ω(x)(p) = x(p + (1, 0))
    assert np.array_equal(video.warp(image, flow)[:, :4], image[:, 1:])


def test_c_is_zero_at_occlusions_and_motion_boundaries() -> None:
    """A square moving 6 px right over a still background: where it was, the background reappears."""
    forward = np.zeros((64, 64, 2), np.float32)  # frame i-1 -> i: the square at x in [20, 36)
    backward = np.zeros((64, 64, 2), np.float32)  # frame i -> i-1: the square at x in [26, 42)
    forward[20:36, 20:36, 0] = 6
    backward[20:36, 26:42, 0] = -6
    c = video.consistency_weights(forward, backward)
    assert not c[22:34, 20:25].any()  # disoccluded: revealed behind the square
    assert not c[22:34, [25, 26, 41, 42]].any()  # motion boundaries of ŵ
    assert c[22:34, 28:40].all()  # the square itself, followed
    assert c[:, 50:].all() and c[:16].all()  # the background
    assert np.array_equal(video.consistency_weights(forward * 0, backward * 0), np.ones((64, 64), np.float32))


def test_dis_flow_marks_the_revealed_background() -> None:
    back, square = texture(64, 64, seed=1), texture(16, 16, seed=2)
    frames = []
    for x0 in (20, 26):
        f = back.copy()
        f[24:40, x0 : x0 + 16] = square
        frames.append(f)
    _, c = video.frame_flow(*frames)
    assert c[26:38, 20:26].mean() < 0.3 and c[:, 50:].mean() > 0.9


# --------------------------------------------------------------------------- files


@pytest.mark.parametrize("name", ["clip.mp4", "clip.webm", "clip.gif", "frames"])
def test_files_keep_frame_count_and_rate(tmp_path: Path, name: str) -> None:
    frames = clip(6)
    path = write(frames, tmp_path / name, 30.0)
    info = video.probe(path, fps=30.0 if name == "frames" else None)
    assert (info.frames, info.fps, info.width, info.height) == (6, 30.0, 64, 48)
    back = list(video.iter_frames(path))
    tolerance = 0 if name == "frames" else 10  # mean error in 0-255 levels: PNG is lossless, GIF palettes and yuv420p are not
    assert len(back) == 6 and np.abs(np.stack(back).astype(int) - np.stack(frames)).mean() <= tolerance
    assert [p.name for p in tmp_path.iterdir()] == [name]  # no temporary file left


def test_gif_durations_keep_the_clip_length() -> None:
    assert video.gif_durations(6, 30.0) == [30, 40, 30, 30, 40, 30]
    for n, fps in [(7, 24.0), (100, 29.97), (5, 12.5)]:
        d = video.gif_durations(n, fps)
        assert all(x % 10 == 0 and abs(x - 1000 / fps) < 10 for x in d)
        assert abs(sum(d) - 1000 * n / fps) <= 5


# --------------------------------------------------------------------------- stylising


@pytest.fixture(scope="module")
def model(random_model: VGG19) -> VGG19:
    return random_model


def test_temporal_weight_zero_is_frame_by_frame(model: VGG19, one_thread: None) -> None:
    frames = clip(3)
    style = resolve_image("strokes")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        plain = list(video.stylise_frames(frames, style, temporal_weight=0, network=model, iterations=4))
        alone = style_transfer(Image.fromarray(frames[2]), style, size=None, network=model, iterations=4, progress=False)
        tied = list(video.stylise_frames(frames, style, network=model, iterations=4))
    assert np.array_equal(plain[2].output, alone.tensor[0].permute(1, 2, 0).numpy())  # a plain transfer of frame 2 alone
    assert all(f.weights is None and f.result.history[0]["temporal"] == 0 for f in plain)
    assert tied[1].result.history[0]["temporal"] == 0  # it starts at ω(y_0) wherever c = 1 ...
    assert tied[0].result.history[-1]["temporal"] == 0 < tied[1].result.history[-1]["temporal"]  # ... and is pulled back
    assert tied[1].weights is not None and tied[1].result.settings["temporal_weight"] == video.DEFAULT_TEMPORAL_WEIGHTS["random"]


def test_temporal_loss_reduces_flicker(tmp_path: Path, one_thread: None, capsys: pytest.CaptureFixture[str]) -> None:
    """The issue's check through the command line: 64 px, random weights, a few iterations per frame;
    GIF output (mp4's chroma subsampling would add its own noise at this size)."""
    source = write(clip(4), tmp_path / "clip.mp4", 12.5)
    inputs = list(video.iter_frames(source))
    flicker = {}
    for lam in ("0", None):
        out = tmp_path / f"out-{lam}.gif"
        extra = ["--temporal-weight", lam] if lam else []
        args = ["video", str(source), "strokes", "-o", str(out), "--weights", "random", "--size", "64", "--iterations", "8", "-q"]
        assert main([*args, *extra]) == 0, capsys.readouterr().err
        info = video.probe(out)
        assert (info.frames, info.fps, info.width, info.height) == (4, 12.5, 64, 48)
        flicker[lam] = video.warped_differences(list(video.iter_frames(out)), inputs)
    ratio = flicker[None].mean() / flicker["0"].mean()
    print(f"mean warped-frame difference: frame by frame {flicker['0'].mean():.4f}, temporal {flicker[None].mean():.4f}, ratio {ratio:.3f}")
    assert ratio < 0.4
    assert (flicker[None] < flicker["0"]).all()  # on every frame, not only on average


@pytest.mark.parametrize("temporal_weight", [None, 0.0])
def test_the_reported_flicker_reuses_the_frames_flow(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, model: VGG19, one_thread: None, temporal_weight: float | None
) -> None:
    """ŵ and c are computed once per pair of frames (by stylise_frames, or for the flicker when λ = 0),
    and the flicker is exactly warped_differences of the frames written."""
    frames = clip(3)
    source = write(frames, tmp_path / "clip", 10.0)  # PNG frames: lossless
    real, calls = video.frame_flow, []
    monkeypatch.setattr(video, "frame_flow", lambda *a: calls.append(1) or real(*a))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = video.stylise_video(source, resolve_image("strokes"), tmp_path / "out", size=64, network=model,
                                     iterations=2, temporal_weight=temporal_weight, progress=False)  # fmt: skip
    assert len(calls) == len(frames) - 1
    assert np.array_equal(result.flicker, video.warped_differences(list(video.iter_frames(tmp_path / "out")), frames))


def _interrupt_at(monkeypatch: pytest.MonkeyPatch, frame: int) -> None:
    """Ctrl-C during the given frame's optimisation (counting from 1), as style_transfer sees it."""
    real, calls = video.style_transfer, []

    def ctrl_c(state: object) -> None:
        raise KeyboardInterrupt

    def style_transfer(*args: object, **kwargs: object):  # noqa: ANN202
        calls.append(1)
        if len(calls) == frame:
            kwargs["callback"] = ctrl_c
        return real(*args, **kwargs)

    monkeypatch.setattr(video, "style_transfer", style_transfer)


def test_ctrl_c_writes_a_playable_partial_video(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, one_thread: None,
                                                capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    source = write(clip(5), tmp_path / "clip.gif", 10.0)
    _interrupt_at(monkeypatch, 3)
    args = ["video", str(source), "strokes", "-o", str(tmp_path / "out.mp4"), "--weights", "random", "--size", "64",
            "--iterations", "3", "-q"]  # fmt: skip
    assert main(args) == 130
    info = video.probe(tmp_path / "out.mp4")
    assert (info.frames, info.fps) == (2, 10.0)
    assert "the first 2 of 5 frames" in capsys.readouterr().out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.gif", "out.mp4"]


def test_ctrl_c_in_the_first_frame_writes_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, one_thread: None) -> None:
    source = write(clip(3), tmp_path / "clip.gif", 10.0)
    _interrupt_at(monkeypatch, 1)
    args = ["video", str(source), "strokes", "-o", str(tmp_path / "out.gif"), "--weights", "random", "--size", "64", "-q"]
    assert main(args) == 130
    assert [p.name for p in tmp_path.iterdir()] == ["clip.gif"]


# --------------------------------------------------------------------------- refusals


def test_a_video_too_large_or_too_long_is_refused_up_front(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(memory, "available_bytes", lambda device: 4 * 2**30)
    video.check_fits(100_000, (256, 144), (256, 256), "mp4", video.default_device("cpu"))  # streamed: any length
    with pytest.raises(memory.InsufficientMemoryError, match=r"100000-frame 256x144 GIF .* about \d+ frames fit"):
        video.check_fits(100_000, (256, 144), (256, 256), "gif", video.default_device("cpu"))
    with pytest.raises(memory.InsufficientMemoryError, match="the largest size that fits"):
        video.check_fits(100_000, (4096, 2304), (4096, 4096), "mp4", video.default_device("cpu"))


def test_refusal_through_the_command_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    source = write(clip(3), tmp_path / "clip.gif", 10.0)
    monkeypatch.setattr(memory, "available_bytes", lambda device: 2**30)
    args = ["video", str(source), "strokes", "-o", str(tmp_path / "out.mp4"), "--weights", "random", "--size", "3000"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "the largest size that fits" in err  # before the weights are even loaded
    assert err.endswith("px (or give a smaller --size or use --precision bf16)\n")  # options the video command has
    assert main([*args, "--precision", "bf16"]) == 2
    assert capsys.readouterr().err.endswith("px (or give a smaller --size)\n")
    assert [p.name for p in tmp_path.iterdir()] == ["clip.gif"]


BAD = [
    ("broken.mp4", "out.gif", [], "is not a readable video"),
    ("truncated.gif", "out.gif", [], "truncated.gif is not a readable video"),  # its header alone is fine
    ("notes.txt", "out.gif", [], "cannot read 'notes.txt'"),
    ("missing.mp4", "out.gif", [], "no video file or folder of frames at"),
    ("empty", "out.gif", [], "no frames"),
    ("clip.gif", "out.avi", [], "cannot write a video as 'out.avi'"),
    ("clip.gif", "full", [], "the folder is not empty"),
    ("clip.gif", "nowhere/out.gif", [], "does not exist"),
    ("clip.gif", "out.gif", ["--temporal-weight", "-1"], "--temporal-weight: must be a finite number >= 0"),
    ("clip.gif", "out.gif", ["--fps", "0"], "--fps: must be a finite number > 0, got 0"),
]


@pytest.mark.parametrize(("source", "output", "extra", "message"), BAD, ids=[b[3] for b in BAD])
def test_bad_input_is_one_line_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], source: str, output: str, extra: list[str], message: str
) -> None:
    gif = write(clip(2), tmp_path / "clip.gif", 10.0).read_bytes()
    (tmp_path / "truncated.gif").write_bytes(gif[: len(gif) // 4])  # cut inside frame 1
    (tmp_path / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"garbage" * 100)
    (tmp_path / "notes.txt").write_text("not a video")
    (tmp_path / "empty").mkdir()
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("mine")
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    args = ["video", str(tmp_path / source), "strokes", "-o", str(tmp_path / output), "--weights", "random", *extra]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err, err
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before


def test_frames_of_another_size_are_refused_not_stretched(
    tmp_path: Path, model: VGG19, capsys: pytest.CaptureFixture[str], one_thread: None
) -> None:
    frames = clip(3)
    frames[2] = frames[2][:, :40]  # 40x48 after two 64x48 frames
    with pytest.raises(video.VideoError, match="frame 3 is 40x48, frame 1 is 64x48"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            list(video.stylise_frames(frames, resolve_image("strokes"), size=(64, 48), network=model, iterations=1))
    folder = tmp_path / "frames"
    folder.mkdir()
    for k, frame in enumerate(frames):
        Image.fromarray(frame).save(folder / f"frame{k}.png")
    args = ["video", str(folder), "strokes", "-o", str(tmp_path / "out.gif"), "--weights", "random", "--size", "64",
            "--iterations", "1", "-q"]  # fmt: skip
    assert main(args) == 2
    assert capsys.readouterr().err.splitlines()[-1] == "nst-lessons: error: frames differ in size: frame 3 is 40x48, frame 1 is 64x48"
    assert [p.name for p in tmp_path.iterdir()] == ["frames"]  # nothing written


def test_a_rotated_video_reads_upright_without_ffmpeg_size_warnings(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    source = write(clip(3), tmp_path / "clip.mp4", 10.0)  # 64x48
    rotated = tmp_path / "rotated.mp4"  # the same stream, flagged to be shown turned by 90 degrees (a phone video)
    made = subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-loglevel", "error", "-display_rotation", "90", "-i", str(source),
                           "-c", "copy", str(rotated)], capture_output=True, text=True)  # fmt: skip
    if made.returncode and "display_rotation" in made.stderr:  # ffmpeg before 7 has no such option
        pytest.skip(f"this imageio-ffmpeg's ffmpeg ({imageio_ffmpeg.get_ffmpeg_version()}) cannot flag a rotation")
    assert made.returncode == 0, made.stderr
    with caplog.at_level("WARNING"):
        info = video.probe(rotated)
        frames = list(video.iter_frames(rotated))
    assert (info.width, info.height, info.frames) == (48, 64, 3) and [f.shape for f in frames] == [(64, 48, 3)] * 3
    assert not [r for r in caplog.records if r.name.startswith("imageio_ffmpeg")], caplog.text


def test_a_signal_while_ffmpeg_starts_leaves_no_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """SIGTERM or Ctrl-C inside Popen, after ffmpeg started and before imageio-ffmpeg's generator holds
    it: the writer stops that ffmpeg, which would otherwise open the removed temporary file again on
    its own and leave an empty video beside the output."""
    real = subprocess.Popen

    def interrupted(*args: object, **kwargs: object) -> subprocess.Popen[bytes]:
        process = real(*args, **kwargs)
        if kwargs.get("stdin") != subprocess.PIPE:  # not the writer (imageio-ffmpeg may ask ffmpeg's version first)
            return process
        process.stdin.close()  # as when this process exits: ffmpeg sees no frames and writes its output
        raise KeyboardInterrupt

    monkeypatch.setattr(subprocess, "Popen", interrupted)
    with pytest.raises(KeyboardInterrupt), warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)  # the dropped Popen
        with video.VideoWriter(tmp_path / "out.mp4", 10, (48, 32)):
            pass
    monkeypatch.undo()
    deadline = time.monotonic() + 3  # an ffmpeg left running writes its file within this on this machine
    while time.monotonic() < deadline:
        assert list(tmp_path.iterdir()) == []
        time.sleep(0.1)
