"""Sound: texture synthesis and style transfer with random filters, checked the way a listener would
judge them (length and rate, the texture's statistics, the tones it keeps, how much content stays),
and the command line's refusals. Short clips, few filters and iterations, so every test takes seconds."""

from __future__ import annotations

import math
import os
import re
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch
from torch.utils.flop_counter import FlopCounterMode

from nst_lessons import audio, cli, data, losses

RATE = audio.SAMPLE_RATE
FAST = dict(filters=128, iterations=40, griffin_lim_iterations=30, progress=False)


def tones(frequencies: tuple[float, ...], seconds: float = 2.0, rate: int = RATE) -> np.ndarray:
    t = np.arange(round(seconds * rate)) / rate
    return (sum(np.sin(2 * np.pi * f * t) for f in frequencies) / len(frequencies)).astype(np.float32)


def write(path: Path, samples: np.ndarray, rate: int = RATE) -> Path:
    soundfile.write(str(path), samples, rate)
    return path


@pytest.fixture(autouse=True)
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("NST_LESSONS_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


# --------------------------------------------------------------------------- the defining properties


def test_texture_has_the_asked_length_and_rate_and_its_gram_loss_falls_100x() -> None:
    options = dict(FAST, filters=256, iterations=80)
    result = audio.sound_texture(data.generate_sound("bells", seconds=2.0), seconds=1.25, **options)
    assert result.samples.shape == (round(1.25 * RATE),) and result.sample_rate == RATE
    styles = [h["style"] for h in result.history]
    assert styles[0] / min(styles) >= 100, f"the Gram loss fell only {styles[0] / min(styles):.1f}x"


def test_output_keeps_the_contents_length_at_the_asked_rate(tmp_path: Path) -> None:
    content = write(tmp_path / "content.flac", data.generate_sound("melody", seconds=1.3, sample_rate=44_100), 44_100)
    style = write(tmp_path / "style.wav", data.generate_sound("bells", seconds=1.0))
    out = tmp_path / "out.wav"
    argv = ["audio", str(content), str(style), "-o", str(out), "--sample-rate", "16000", "--filters", "64",
            "--iterations", "3", "--griffin-lim-iterations", "2", "--quiet"]  # fmt: skip
    assert cli.main(argv) == 0
    info = soundfile.info(str(out))
    assert info.samplerate == 16_000 and info.frames == round(1.3 * 16_000) and info.channels == 1
    peak = np.abs(soundfile.read(str(out))[0]).max()
    assert audio.PEAK - 1e-4 < peak < 1.0, "peak-normalised below full scale"
    assert cli.main(["texture", str(style), "-o", str(out.with_suffix(".flac")), *argv[5:]]) == 0
    info = soundfile.info(str(out.with_suffix(".flac")))
    assert (info.samplerate, info.frames, info.format) == (16_000, 16_000, "FLAC"), "a texture lasts as long as its style"


def test_steady_tones_come_out_at_their_frequencies() -> None:
    frequencies = (440.0, 1000.0, 2500.0)
    result = audio.sound_texture(tones(frequencies), seconds=1.0, seed=1, **FAST)
    spectrum = np.abs(np.fft.rfft(result.samples * np.hanning(len(result.samples))))
    f = np.fft.rfftfreq(len(result.samples), 1 / RATE)
    peaks = [i for i in range(1, len(spectrum) - 1) if spectrum[i - 1] <= spectrum[i] >= spectrum[i + 1]]
    strongest = sorted(f[i] for i in sorted(peaks, key=lambda i: -spectrum[i])[:3])
    bin_width = RATE / audio.N_FFT  # the spectrogram's resolution, 10.8 Hz
    assert np.allclose(strongest, frequencies, atol=2 * bin_width), strongest


def test_a_larger_content_weight_keeps_the_output_closer_to_the_content() -> None:
    content, style = data.generate_sound("melody", seconds=1.5), data.generate_sound("rain", seconds=1.5)
    network = audio.RandomConv1d(audio.N_FFT // 2 + 1, FAST["filters"], seed=0)
    P = network(torch.from_numpy(audio.spectrogram(content))[None])

    def content_loss(alpha: float) -> float:
        result = audio.sound_transfer(content, style, content_weight=alpha, **FAST)
        return float(losses.content_loss(network(torch.from_numpy(result.X)[None]), P))

    little, much = content_loss(1e-3), content_loss(10.0)
    assert much < 0.5 * little, (much, little)


# --------------------------------------------------------------------------- the pieces


def test_network_follows_ulyanov_and_lebedev() -> None:
    network = audio.RandomConv1d(1025, 512, seed=3)
    assert network.weight.shape == (512, 1025, 11) and not list(network.parameters())  # fixed, nothing to train
    assert abs(network.weight.std().item() - math.sqrt(2) * math.sqrt(2 / ((1025 + 512) * 11))) < 1e-3
    assert torch.equal(network.weight, audio.RandomConv1d(1025, 512, seed=3).weight)
    assert not torch.equal(network.weight, audio.RandomConv1d(1025, 512, seed=4).weight)
    F = network.extract(torch.rand(2, 1025, 40), ["conv", "relu"])
    assert F["relu"].shape == (2, 512, 1, 30) and torch.equal(F["relu"], F["conv"].clamp(min=0))
    assert network.layer_shapes(40) == {"conv": (512, 1, 30), "relu": (512, 1, 30)}


def test_flop_count_matches_what_torch_counts() -> None:
    network = audio.RandomConv1d(1025, 64, seed=0)
    x = torch.rand(1, 1025, 50, requires_grad=True)
    with torch.no_grad():
        F = network(x)
    objective = audio.SoundObjective(network, losses.gram_matrix(F), F, 1.0, 1.0)
    with FlopCounterMode(display=False) as counter:
        sum(objective.terms(x)).backward()
    elementwise = 4 * 64 * 40  # ReLU and the content term, which torch does not count
    assert counter.get_total_flops() == audio.evaluation_flops(50, 64) - elementwise


def test_the_losses_are_ulyanov_and_lebedevs() -> None:
    network = audio.RandomConv1d(1025, 32, seed=0)
    x, y, z = (torch.rand(1, 1025, 30) for _ in range(3))
    F, P, S = network(x), network(y), network(z)
    alpha, beta = 0.3, 2.0
    M = F.shape[-1]
    G, A = (f[0, :, 0] @ f[0, :, 0].T / M for f in (F, S))
    theirs = alpha * (F - P).pow(2).sum() + beta * (G - A).pow(2).sum()
    content, style = audio.SoundObjective(network, losses.gram_matrix(S), P, *audio.ulyanov_weights(alpha, beta, 32)).terms(x)
    assert torch.allclose(content + style, theirs, rtol=1e-4)


def test_griffin_lim_recovers_a_real_sound() -> None:
    y = data.generate_sound("melody", seconds=1.0)
    rebuilt, convergence = audio.griffin_lim(audio.spectrogram(y), len(y), iterations=60)
    assert rebuilt.shape == y.shape and convergence < 0.2
    assert convergence < audio.griffin_lim(audio.spectrogram(y), len(y), iterations=2)[1]


def test_example_sounds_are_deterministic_distinct_and_listed(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for name, seconds in data.SOUNDS.items():
        y = data.generate_sound(name)
        assert y.shape == (round(seconds * data.SOUND_RATE),) and np.array_equal(y, data.generate_sound(name))
    assert not np.array_equal(data.generate_sound("rain", seed=0), data.generate_sound("rain", seed=1))
    path = audio.resolve_sound("clicks")
    assert path == home / "sounds" / "clicks.wav" and soundfile.info(str(path)).samplerate == data.SOUND_RATE
    assert cli.main(["examples"]) == 0
    listed = capsys.readouterr().out
    assert all(f"{name} " in listed for name in data.SOUNDS)


def test_stereo_is_mixed_to_mono_once_and_other_rates_resampled(tmp_path: Path) -> None:
    y = tones((440.0,), seconds=1.0, rate=44_100)
    path = write(tmp_path / "stereo.wav", np.stack([y, 0.5 * y], axis=1), 44_100)
    with pytest.warns(audio.MonoMixWarning, match="2 channels") as caught:
        mono = audio.read_sound(path)
    assert len(caught) == 1 and len(mono) == RATE
    assert np.argmax(np.abs(np.fft.rfft(mono))) == 440  # 1 s: one bin per hertz


def test_peak_normalised_never_clipped(tmp_path: Path) -> None:
    loud = 40.0 * tones((300.0,), seconds=0.5)
    audio.save_sound(loud, RATE, tmp_path / "loud.wav")
    written = soundfile.read(str(tmp_path / "loud.wav"))[0]
    assert abs(np.abs(written).max() - audio.PEAK) < 1e-4
    assert np.corrcoef(written, loud)[0, 1] > 0.9999


def test_the_cost_is_known_before_any_work_and_too_much_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    cost = audio.plan(None, data.generate_sound("rain", seconds=1.0), seconds=10.0)
    assert cost.frames == 431 and cost.flops == audio.evaluation_flops(431, 4096, content=False)
    assert 0.5 * 2**30 < cost.memory < 2 * 2**30  # filters, Grams and the L-BFGS history at 10 s
    style = write(tmp_path / "style.wav", data.generate_sound("rain", seconds=1.0))
    monkeypatch.setattr(audio, "available_bytes", lambda device: 2**30)
    monkeypatch.setattr(audio, "read_sound", lambda *a, **k: pytest.fail("decoded before the check"))
    out = tmp_path / "out.wav"
    assert cli.main(["texture", str(style), "-o", str(out), "--seconds", "600", "--quiet"]) == 2
    message = capsys.readouterr().err.strip()
    assert message.startswith("nst-lessons: error: this run needs about") and "s fits" in message
    assert "\n" not in message and not out.exists()
    longest = float(message.split("at most ")[1].split(" s")[0])
    assert audio.estimate_memory(audio.frames(round(longest * RATE)), cost.style_frames) <= audio.MEMORY_HEADROOM * 2**30


# --------------------------------------------------------------------------- refusals


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "text.wav").write_text("not a sound at all")
    (folder / "broken.mp3").write_bytes(b"ID3" + bytes(64) + b"garbage" * 100)
    soundfile.write(str(folder / "empty.wav"), np.zeros(0, np.float32), RATE)
    soundfile.write(str(folder / "nan.wav"), np.full(RATE, np.nan, np.float32), RATE, subtype="FLOAT")
    return {
        "good": write(folder / "good.wav", data.generate_sound("bells", seconds=1.0)),
        "text": folder / "text.wav",
        "broken": folder / "broken.mp3",
        "empty": folder / "empty.wav",
        "short": write(folder / "short.wav", tones((440.0,), seconds=0.05)),
        "silent": write(folder / "silent.wav", np.zeros(RATE, np.float32)),
        "nan": folder / "nan.wav",
    }


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["{text}", "{good}"], "is not a readable sound"),
        (["{good}", "{broken}"], "is not a readable sound"),  # the MP3 decoder's own notes silenced
        (["{good}", "{empty}"], "is empty"),
        (["{short}", "{good}"], "is 0.050 s long; at least 0.232 s"),
        (["{good}", "{silent}"], "is silent"),
        (["{nan}", "{good}"], "NaN or infinite"),
        (["{good}", "nothing.wav"], "no sound file at nothing.wav"),
        (["{good}", "{good}", "--sample-rate", "100"], "must be at least 8000"),
        (["{good}", "{good}", "--filters", "0"], "must be at least 1"),
        (["{good}", "{good}", "--content-weight", "nan"], "finite number"),
        (["{good}", "{good}", "--init", "zeros"], "invalid choice"),
    ],
)
def test_bad_input_is_one_line_exit_2_nothing_written(files: dict[str, Path], tmp_path: Path, capfd: pytest.CaptureFixture[str], args: list[str], expected: str) -> None:
    out = tmp_path / "out" / "result.wav"
    out.parent.mkdir()
    argv = ["audio", *(a.format(**files) for a in args), "-o", str(out), "--filters", "16", "--iterations", "2", "--quiet"]
    assert cli.main(argv) == 2
    err = capfd.readouterr().err.strip()
    assert re.match(r"nst-lessons( audio)?: error: ", err) and "\n" not in err and expected in err, err
    assert list(out.parent.iterdir()) == []


def test_texture_refuses_bad_lengths_and_output_names(files: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for extra, expected in ((["-o", str(tmp_path / "a.wav"), "--seconds", "-1"], "finite number"),
                            (["-o", str(tmp_path / "a.wav"), "--seconds", "0.1"], "seconds must be at least"),
                            (["-o", str(tmp_path / "a.wav"), "--seconds", "1e305"], "seconds must be at most"),
                            (["-o", str(tmp_path / "a.mp3")], "use .wav or .flac"),
                            (["-o", str(tmp_path / "missing" / "a.wav")], "does not exist")):  # fmt: skip
        assert cli.main(["texture", str(files["good"]), *extra, "--filters", "16", "--iterations", "2", "--quiet"]) == 2
        err = capsys.readouterr().err.strip()
        assert expected in err and "\n" not in err, err
    assert not any(tmp_path.glob("a.*"))


def test_output_never_overwrites_an_input_however_spelled(files: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    good = files["good"]
    before = good.read_bytes()
    link = good.parent / "link.wav"
    link.symlink_to(good)
    os.link(good, good.parent / "hard.wav")
    for spelling in (good, good.parent / ".." / good.parent.name / good.name, link, good.parent / "hard.wav"):
        assert cli.main(["audio", str(files["good"]), "melody", "-o", str(spelling), "--filters", "16", "--iterations", "2", "--quiet"]) == 2
        assert "is the input" in capsys.readouterr().err
        assert cli.main(["texture", str(link), "-o", str(spelling), "--filters", "16", "--iterations", "2", "--quiet"]) == 2
        assert "is the input" in capsys.readouterr().err
    assert good.read_bytes() == before


def test_ctrl_c_exits_130_and_writes_nothing(files: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    calls = []
    original = audio.SoundObjective.__call__

    def interrupted(self: audio.SoundObjective, x: torch.Tensor) -> torch.Tensor:
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return original(self, x)

    monkeypatch.setattr(audio.SoundObjective, "__call__", interrupted)
    out = tmp_path / "out"
    out.mkdir()
    assert cli.main(["texture", str(files["good"]), "-o", str(out / "t.wav"), "--filters", "16", "--iterations", "10", "--quiet"]) == 130
    assert len(calls) == 3 and list(out.iterdir()) == []
    assert "interrupted" in capsys.readouterr().err


def test_texture_takes_a_sound_or_an_image_and_refuses_the_other_kinds_options(files: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sound_only, image_only = ["--seconds", "1"], ["--size", "64"]
    assert cli.main(["texture", str(files["good"]), "-o", str(tmp_path / "a.wav"), *image_only, "-q"]) == 2
    assert capsys.readouterr().err.strip() == f"nst-lessons: error: --size is for an image texture, and STYLE {files['good']} is a sound"
    assert cli.main(["texture", "mosaic", "-o", str(tmp_path / "a.png"), *sound_only, "-q"]) == 2
    assert capsys.readouterr().err.strip() == "nst-lessons: error: --seconds is for a sound texture, and STYLE mosaic is not a sound"
    assert not any(tmp_path.glob("a.*"))
    assert cli.main(["texture", "rain", "-o", str(tmp_path / "rain.flac"), *sound_only, "--filters", "16", "--iterations", "2", "-q"]) == 0
    assert soundfile.info(str(tmp_path / "rain.flac")).frames == RATE


def test_texture_names_a_misspelled_example_sound_not_the_output_format(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # 'rian' is neither a sound file nor an example sound: the line says so, not "cannot write an image format"
    assert cli.main(["texture", "rian", "-o", str(tmp_path / "r.wav"), "-q"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("nst-lessons: error: STYLE rian is not a sound file or an example sound (melody, rain, clicks, bells)"), err
    assert list(tmp_path.iterdir()) == []
