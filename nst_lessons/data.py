"""Example images: offline ones (a photo matplotlib ships, style images generated here) and
downloadable public-domain classics, pinned by SHA-256; and example sounds, generated here.

Names, for :func:`example_path` and the command line:

- ``grace_hopper``: the public-domain photo of Grace Hopper that matplotlib ships (offline);
- ``waves``, ``mosaic``, ``strokes``: style images made by :func:`generate_style` and committed
  under ``data/`` (offline);
- ``starry_night``, ``the_scream``, ``shipwreck``, ``woman_with_hat``, ``tubingen``: downloaded once
  from jcjohnson/neural-style at a fixed commit and cached under ``$NST_LESSONS_HOME/images``.

Sounds, for :func:`nst_lessons.audio.resolve_sound` and the ``audio`` and ``texture`` commands:
``melody`` (a content), ``rain``, ``clicks`` and ``bells`` (styles), made by :func:`generate_sound`
(deterministic, no download) and cached as WAV under ``$NST_LESSONS_HOME/sounds`` on first use.

Regenerate the committed style images with ``python -m nst_lessons.data``.
"""

from __future__ import annotations

import http.client
import os
import urllib.error
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFilter

from nst_lessons.download import ChecksumError, download, sha256_of
from nst_lessons.files import atomic_path
from nst_lessons.images import ImageError

_REPO_DATA = Path(__file__).resolve().parent.parent / "data"
_CLASSICS_BASE = (
    "https://raw.githubusercontent.com/jcjohnson/neural-style/"
    "07c4b8299f8fbdafec0c514fc820ff1d7ff62e46/examples/inputs/"
)

CLASSICS: dict[str, tuple[str, str]] = {
    "starry_night": ("starry_night.jpg", "0592ab0f7b51b3ce72608a95e53880bd93971e5b48f93a0ce8dfd3cbccf3d098"),
    "the_scream": ("the_scream.jpg", "f3075cddeb974a9ee1d6418f7f33fd05185a7ac7dcb4288bd2805d499a9dcaee"),
    "shipwreck": ("shipwreck.jpg", "4f7cf34e3cd4a5daaf3f421f059ca9a01aaa2a3afd7243d6670c9c8bc001a213"),
    "woman_with_hat": (
        "woman-with-hat-matisse.jpg",
        "6a8b2383d9c110354a97a42c74bdcc5341be879cbb842ddb7ab5843dbdf56d53",
    ),
    "tubingen": ("tubingen.jpg", "e67d1869f01fd805385c681a80d9ebcf0f70ea4a5fe6127f0606bb1c7f4bf506"),
}
"""name -> (file name in jcjohnson/neural-style's examples/inputs, SHA-256)."""

GENERATED = ("waves", "mosaic", "strokes")
SOUNDS: dict[str, float] = {"melody": 6.0, "rain": 5.0, "clicks": 5.0, "bells": 5.0}
"""Example sound -> its length in seconds."""
SOUND_RATE = 22_050
"""The example sounds' sample rate (the audio module's working rate)."""
OFFLINE = ("grace_hopper", *GENERATED)
EXAMPLES = (*OFFLINE, *CLASSICS)


def images_home() -> Path:
    """Cache folder of downloaded images: ``$NST_LESSONS_HOME/images`` or under torch's hub dir."""
    home = os.environ.get("NST_LESSONS_HOME")
    base = Path(home).expanduser() if home else Path(torch.hub.get_dir()) / "nst_lessons"
    return base / "images"


def classic_url(name: str) -> str:
    """The pinned URL of a downloadable classic."""
    return _CLASSICS_BASE + CLASSICS[name][0]


def fetch_classic(name: str, *, progress: bool = True) -> Path:
    """Path of a classic painting or photo, downloaded once and verified against its SHA-256."""
    file_name, sha256 = CLASSICS[name]
    dest = images_home() / file_name
    if dest.exists() and sha256_of(dest) == sha256:
        return dest
    dest.unlink(missing_ok=True)
    url = classic_url(name)
    try:
        return download(url, dest, sha256=sha256, progress=progress)
    except ChecksumError:
        raise
    except (urllib.error.URLError, http.client.HTTPException, OSError) as error:
        reason = getattr(error, "reason", error)
        raise ImageError(
            f"could not download {name!r} from {url} ({reason}); put the file at {dest} by hand "
            f"or use an offline example: {', '.join(OFFLINE)}"
        ) from None


def generate_style(name: str, size: int = 256, seed: int = 0) -> Image.Image:
    """One of the procedurally generated style images, deterministic for ``(name, size, seed)``.

    - ``waves``: interfering sinusoids through a warm-to-cold palette, like marbled paper;
    - ``mosaic``: Voronoi tiles with dark leading, like stained glass;
    - ``strokes``: thousands of short oriented brush strokes, like an impressionist sky.
    """
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    if name == "waves":
        phase = np.zeros_like(xx)
        for _ in range(5):
            kx, ky = rng.normal(0, 9, size=2)
            phase += np.sin(2 * np.pi * (kx * xx + ky * yy) + rng.uniform(0, 2 * np.pi))
        t = (phase - phase.min()) / np.ptp(phase)
        palette = np.array([[20, 40, 110], [40, 130, 180], [240, 220, 140], [200, 80, 40], [90, 20, 40]], float)
        stops = np.linspace(0, 1, len(palette))
        rgb = np.stack([np.interp(t, stops, palette[:, c]) for c in range(3)], axis=-1)
        im = Image.fromarray(rgb.astype(np.uint8), "RGB")
    elif name == "mosaic":
        seeds = rng.uniform(0, 1, size=(60, 2))
        d = (xx[..., None] - seeds[:, 0]) ** 2 + (yy[..., None] - seeds[:, 1]) ** 2
        nearest = np.sort(d, axis=-1)
        owner = d.argmin(axis=-1)
        colours = rng.choice(
            np.array([[180, 30, 40], [30, 70, 160], [230, 180, 40], [40, 140, 70], [120, 50, 140], [220, 220, 200]]),
            size=len(seeds),
        )
        rgb = colours[owner].astype(float)
        edge = np.sqrt(nearest[..., 1]) - np.sqrt(nearest[..., 0]) < 0.012
        rgb[edge] = [25, 20, 20]
        rgb *= 0.85 + 0.15 * rng.uniform(size=(size, size, 1))
        im = Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8), "RGB")
    elif name == "strokes":
        im = Image.new("RGB", (size, size), (30, 50, 90))
        draw = ImageDraw.Draw(im)
        palette = [(250, 210, 60), (70, 110, 190), (20, 40, 100), (150, 190, 230), (240, 240, 220)]
        for _ in range(size * 12):
            x, y = rng.uniform(0, size, size=2)
            angle = np.sin(3 * x / size * np.pi) + np.cos(4 * y / size * np.pi) + rng.normal(0, 0.2)
            length = rng.uniform(4, 12) * size / 256
            dx, dy = length * np.cos(angle), length * np.sin(angle)
            colour = palette[rng.integers(len(palette))]
            draw.line([(x - dx, y - dy), (x + dx, y + dy)], fill=colour, width=max(1, round(2 * size / 256)))
        im = im.filter(ImageFilter.SMOOTH)
    else:
        raise ValueError(f"unknown generated style {name!r}; expected one of {', '.join(GENERATED)}")
    return im


def generate_sound(name: str, seconds: float | None = None, sample_rate: int = SOUND_RATE, seed: int = 0) -> np.ndarray:
    """One of the example sounds, mono float32 samples (S,) with peak 0.5, deterministic for its arguments.

    - ``melody``: a tune of harmonic notes (eight harmonics, amplitude 1/k, plucked envelopes),
      two notes a second: a content with a clear pitch line;
    - ``rain``: soft pink-ish noise under thousands of droplets (short decaying band-pass bursts
      at random times): a texture with no rhythm;
    - ``clicks``: short clicks on a 3 + 3 + 2 pattern of sixteenth notes at 120 beats a minute
      (twice a bar), the first of each group of eight louder: a texture whose rhythm a Gram
      matrix cannot keep;
    - ``bells``: a chord of three bells (Risset's inharmonic partials) struck every 1.25 s.

    ``seconds`` defaults to :data:`SOUNDS`' length for the name.
    """
    if name not in SOUNDS:
        raise ValueError(f"unknown example sound {name!r}; expected one of {', '.join(SOUNDS)}")
    rng = np.random.default_rng(seed)
    n = round((SOUNDS[name] if seconds is None else seconds) * sample_rate)
    t = np.arange(n) / sample_rate
    y = np.zeros(n)

    def add(start: float, burst: np.ndarray) -> None:
        i = round(start * sample_rate)
        if i < n:
            y[i : i + len(burst)] += burst[: n - i]

    if name == "melody":
        tune = [60, 62, 64, 60, 60, 62, 64, 60, 64, 65, 67, 67, 64, 65, 67, 67, 67, 69, 67, 65, 64, 60, 62, 55]
        length = int(0.5 * sample_rate)
        tn = np.arange(length) / sample_rate
        envelope = np.minimum(tn / 0.01, 1.0) * np.exp(-tn / 0.25)
        for k, start in enumerate(np.arange(0.0, t[-1], 0.5)):
            f0 = 440.0 * 2 ** ((tune[k % len(tune)] - 69) / 12)
            note = sum(np.sin(2 * np.pi * h * f0 * tn) / h for h in range(1, 9) if h * f0 < sample_rate / 2)
            add(start, envelope * note)
    elif name == "rain":
        white = rng.standard_normal(n)
        spectrum = np.fft.rfft(white) / np.sqrt(np.maximum(np.fft.rfftfreq(n, 1 / sample_rate), 50.0))
        y += 0.02 * np.fft.irfft(spectrum, n) / np.std(np.fft.irfft(spectrum, n))
        for start in np.sort(rng.uniform(0, t[-1], size=int(400 * t[-1]))):
            length = int(rng.uniform(0.002, 0.012) * sample_rate)
            tb = np.arange(length) / sample_rate
            f = rng.uniform(1500, 7000)
            add(start, rng.uniform(0.05, 0.4) * np.sin(2 * np.pi * f * tb) * np.exp(-tb / (length / sample_rate / 4)))
    elif name == "clicks":
        length = int(0.01 * sample_rate)
        tb = np.arange(length) / sample_rate
        click = rng.standard_normal(length) * np.exp(-tb / 0.0015)
        for bar in np.arange(0.0, t[-1], 2.0):  # a bar of four beats at 120 bpm: sixteen sixteenths
            for step, accent in ((0, 1.0), (3, 0.6), (6, 0.6), (8, 1.0), (11, 0.6), (14, 0.6)):
                add(bar + step * 0.125, accent * click)
    elif name == "bells":
        partials = [(0.56, 1.0, 1.0), (0.92, 0.67, 0.9), (1.19, 1.0, 0.65), (1.71, 1.8, 0.55), (2.0, 2.67, 0.33),
                    (2.74, 1.67, 0.35), (3.0, 1.46, 0.25), (3.76, 1.33, 0.2), (4.07, 1.33, 0.15)]  # (ratio, amp, decay s)
        length = int(1.25 * sample_rate)
        tb = np.arange(length) / sample_rate
        for start in np.arange(0.0, t[-1], 1.25):
            for f0 in (440.0, 554.37, 659.25):  # A major
                add(start, sum(a * np.exp(-tb / d) * np.sin(2 * np.pi * r * f0 * tb) for r, a, d in partials))
    y = y / np.abs(y).max()
    return (0.5 * y).astype(np.float32)


def sounds_home() -> Path:
    """Cache folder of the generated example sounds: beside :func:`images_home`."""
    return images_home().parent / "sounds"


def example_sound_path(name: str) -> Path:
    """Path of an example sound, a WAV generated once into :func:`sounds_home`."""
    from nst_lessons.audio import save_sound

    if name not in SOUNDS:
        raise ValueError(f"unknown example sound {name!r}; expected one of {', '.join(SOUNDS)}")
    path = sounds_home() / f"{name}.wav"
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        save_sound(generate_sound(name), SOUND_RATE, path)
    return path


def example_path(name: str, *, progress: bool = True) -> Path:
    """Path of an example image by name (see the module docstring); downloads a classic once."""
    if name == "grace_hopper":
        import matplotlib.cbook

        return Path(matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))
    if name in GENERATED:
        committed = _REPO_DATA / f"{name}.png"
        if committed.is_file():
            return committed
        cached = images_home() / f"{name}.png"  # an installed package has no data/ folder
        if not cached.is_file():
            cached.parent.mkdir(parents=True, exist_ok=True)
            with atomic_path(cached) as tmp:
                generate_style(name).save(tmp, format="PNG")
        return cached
    if name in CLASSICS:
        return fetch_classic(name, progress=progress)
    raise ImageError(f"unknown example {name!r}; expected one of {', '.join(EXAMPLES)}")


def resolve_image(name_or_path: str | os.PathLike[str]) -> Path:
    """A path that exists, else an example's name; a clear :class:`ImageError` otherwise."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    if str(name_or_path) in EXAMPLES:
        return example_path(str(name_or_path))
    raise ImageError(f"no image file at {path} (and no example of that name: {', '.join(EXAMPLES)})")


def main() -> None:
    """Regenerate the committed style images under ``data/``."""
    _REPO_DATA.mkdir(exist_ok=True)
    for name in GENERATED:
        generate_style(name).save(_REPO_DATA / f"{name}.png", optimize=True)
        print(_REPO_DATA / f"{name}.png")


if __name__ == "__main__":
    main()
