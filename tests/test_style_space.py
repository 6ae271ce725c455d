"""Style space: descriptors that are distances, a cache that computes only new images, the command's files."""

from __future__ import annotations

import csv
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.flop_counter import FlopCounterMode

from nst_lessons import style_space
from nst_lessons.cli import main
from nst_lessons.losses import gram_matrix
from nst_lessons.style_space import (
    classical_mds,
    content_descriptor,
    describe_folder,
    describe_images,
    distance_matrix,
    neighbours,
    style_descriptor,
    vgg_flops,
)
from nst_lessons.vgg import VGG19, RandomWeightsWarning, load_vgg19

LAYERS = ("a", "b")


def _image(path: Path, seed: int, size: tuple[int, int] = (48, 44)) -> Path:
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(path)
    return path


def test_style_descriptor_distance_is_the_papers_style_loss_between_grams() -> None:
    g = torch.Generator().manual_seed(0)
    shapes = {"a": (3, 5, 6), "b": (4, 2, 3)}
    fa = {name: torch.rand(1, *shape, generator=g) for name, shape in shapes.items()}
    fb = {name: torch.rand(1, *shape, generator=g) for name, shape in shapes.items()}
    expected = 0.0
    for name, (N, H, W) in shapes.items():
        G_a, G_b = gram_matrix(fa[name]) / (H * W), gram_matrix(fb[name]) / (H * W)
        expected += 0.5 * ((G_a - G_b) ** 2).sum().item() / (4 * N**2)  # w_l = 1/2, E_l with G/M_l
    da, db = style_descriptor(fa, LAYERS), style_descriptor(fb, LAYERS)
    assert da.shape == (1, 3 * 4 // 2 + 4 * 5 // 2)  # the upper triangles
    assert torch.linalg.vector_norm(da - db).item() == pytest.approx(expected**0.5, rel=1e-5)


def test_content_distance_is_the_rms_difference_of_the_pooled_maps() -> None:
    F, P = torch.rand(2, 3, 8, 8), torch.rand(2, 3, 8, 8)
    pooled = lambda x: x.reshape(2, 3, 4, 2, 4, 2).mean(dim=(3, 5)).flatten(1)  # noqa: E731  4x4 regions of 2x2
    rms = ((pooled(F) - pooled(P)) ** 2).mean(dim=1).sqrt()
    assert torch.allclose(torch.linalg.vector_norm(content_descriptor(F) - content_descriptor(P), dim=1), rms)


def test_classical_mds_recovers_a_planar_configuration_and_neighbours_are_nearest_first() -> None:
    X = np.random.default_rng(0).normal(size=(7, 2))
    D = distance_matrix(X)
    assert np.allclose(distance_matrix(classical_mds(D)), D)
    order = np.argsort(D[3])
    assert neighbours(D, 3, 6) == [int(j) for j in order if j != 3]


def test_batches_give_the_descriptors_of_single_images(random_model: VGG19, one_thread: None) -> None:
    rng = np.random.default_rng(1)
    images = [Image.fromarray(rng.integers(0, 256, (h, 40, 3), dtype=np.uint8)) for h in (40, 36, 40, 36, 40)]
    style, content = describe_images(random_model, images, batch_size=4)
    for k, im in enumerate(images):
        s, c = describe_images(random_model, [im])
        assert np.allclose(style[k], s[0], rtol=1e-4, atol=1e-7) and np.allclose(content[k], c[0], rtol=1e-4, atol=1e-7)


def test_flops_match_torchs_counter_and_the_docstring(random_model: VGG19) -> None:
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        random_model.extract(torch.rand(1, 3, 32, 40), ["relu5_1"])
    assert vgg_flops(random_model, 32, 40) == counter.get_total_flops()
    assert f"costs {vgg_flops(random_model, 512, 512) / 1e9:.1f} GFLOPs per 512 x 512 image" in style_space.__doc__


def test_throughput_is_images_per_second_of_the_timed_batches(
    random_model: VGG19, one_thread: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[tuple[int, ...]] = []
    describe = style_space.describe_batch

    def counted(model: VGG19, x: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        calls.append(tuple(x.shape))
        return describe(model, x)

    monkeypatch.setattr(style_space, "describe_batch", counted)
    rate = style_space.throughput(random_model, size=32, batch_size=2, batches=1)
    assert calls == [(2, 3, 32, 32)] * 2  # one warm-up batch, then the timed one
    assert np.isfinite(rate) and rate > 0


@pytest.fixture
def paintings(tmp_path: Path) -> Path:
    """Three good images (one in a subfolder), a corrupt JPEG and a hidden file."""
    folder = tmp_path / "paintings"
    (folder / "later").mkdir(parents=True)
    _image(folder / "a.png", 1)
    _image(folder / "b.jpg", 2, (44, 48))
    _image(folder / "later" / "c.png", 3)
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not a JPEG")
    _image(folder / ".hidden.png", 4)
    return folder


def _counting(model: VGG19, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Records the batch size of every forward pass of ``model``."""
    seen: list[int] = []
    extract = model.extract

    def counted(image: torch.Tensor, layers: object) -> dict[str, torch.Tensor]:
        seen.append(image.shape[0])
        return extract(image, layers)

    monkeypatch.setattr(model, "extract", counted)
    return seen


def test_a_rerun_computes_only_new_or_changed_images(
    paintings: Path, tmp_path: Path, random_model: VGG19, monkeypatch: pytest.MonkeyPatch, one_thread: None
) -> None:
    cache = tmp_path / "cache"
    seen = _counting(random_model, monkeypatch)
    first = describe_folder(paintings, cache, random_model, size=40)
    assert first.names == ["a.png", "b.jpg", "later/c.png"] and first.computed == 3 and sum(seen) == 3
    assert [name for name, _ in first.skipped] == ["broken.jpg"]
    assert seen == [2, 1]  # the two 40x37 images share a forward pass, the 37x40 one goes alone

    _image(paintings / "d.png", 5)
    (paintings / "e.png").write_bytes((paintings / "a.png").read_bytes())  # a copy: same hash, nothing to compute
    seen.clear()
    second = describe_folder(paintings, cache, random_model, size=40)
    assert second.computed == 1 and sum(seen) == 1
    assert second.names == ["a.png", "b.jpg", "d.png", "e.png", "later/c.png"]
    assert np.array_equal(second.style[:2], first.style[:2]) and np.array_equal(second.style[3], first.style[0])

    _image(paintings / "b.jpg", 6, (44, 48))  # changed in place
    seen.clear()
    third = describe_folder(paintings, cache, random_model, size=40)
    assert third.computed == 1 and sum(seen) == 1 and not np.array_equal(third.style[1], second.style[1])
    fresh = describe_folder(paintings, tmp_path / "fresh", random_model, size=40)
    close = dict(rtol=1e-4, atol=1e-7)  # batches of other shapes round differently
    assert np.allclose(fresh.style, third.style, **close) and np.allclose(fresh.content, third.content, **close)

    seen.clear()
    assert describe_folder(paintings, cache, random_model, size=48).computed == 4 == sum(seen)  # other settings, other cache


def _rows(path: Path) -> list[list[str]]:
    with open(path, newline="") as f:
        return list(csv.reader(f))


def test_the_command_writes_distances_neighbours_and_maps_and_names_the_bad_file(
    paintings: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], one_thread: None
) -> None:
    out = tmp_path / "out"
    argv = ["style-space", str(paintings), "-o", str(out), "--weights", "random", "--size", "40", "--workers", "0"]
    assert main([*argv, "--neighbours", "1"]) == 1
    captured = capsys.readouterr()
    assert re.search(r"skipped: broken\.jpg: .*not a readable image", captured.err)
    assert "3 images (3 computed, 0 from the cache), 1 skipped" in captured.out
    assert _rows(out / "skipped.csv")[1][0] == "broken.jpg"

    names = ["a.png", "b.jpg", "later/c.png"]
    for space in ("style", "content"):
        rows = _rows(out / f"distances_{space}.csv")
        assert rows[0] == ["file", *names] and [r[0] for r in rows[1:]] == names
        D = np.array([[float(v) for v in r[1:]] for r in rows[1:]])
        assert np.allclose(D, D.T) and np.all(np.diag(D) == 0) and np.all(D[~np.eye(3, dtype=bool)] > 0)
        nearest = {r[0]: r[3] for r in _rows(out / "neighbours.csv")[1:] if r[1] == space}
        assert nearest == {n: names[int(np.argsort(D[i])[1])] for i, n in enumerate(names)}
        mds = np.array([[float(v) for v in r] for r in (row[1:] for row in _rows(out / "map.csv")[1:])])
        columns = _rows(out / "map.csv")[0].index(f"{space}_mds_x") - 1
        assert np.allclose(distance_matrix(mds[:, columns : columns + 2]), distance_matrix(classical_mds(D)))
    assert _rows(out / "map.csv")[0][1:] == [f"{s}_{m}_{a}" for s in ("style", "content") for m in ("mds", "tsne") for a in "xy"]
    with Image.open(out / "map.png") as png:
        assert png.format == "PNG" and png.width > 1000

    assert main(argv) == 1
    assert "3 images (0 computed, 3 from the cache), 1 skipped" in capsys.readouterr().out


def test_too_few_readable_images_is_exit_2_and_leaves_no_cache_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _image(tmp_path / "a.png", 1)
    out = tmp_path / "out"  # inside the collection: its map.png must not join it
    out.mkdir()
    for k in range(3):
        _image(out / f"map{k}.png", k)
    (tmp_path / "broken.jpg").write_bytes(b"")
    options = ["--weights", "random", "--size", "40", "--workers", "0"]
    assert main(["style-space", str(tmp_path), "-o", str(out), *options]) == 2
    assert f"needs at least 3 readable images; {tmp_path} has 2 image files" in capsys.readouterr().err  # counted up front
    maps = ["map0.png", "map1.png", "map2.png"]
    assert sorted(p.name for p in out.iterdir()) == maps  # nothing created
    (tmp_path / "b.jpg").write_bytes(b"\xff\xd8 not a JPEG")  # three image files, two found unreadable by decoding them
    assert main(["style-space", str(tmp_path), "-o", str(out), *options]) == 2
    err = capsys.readouterr().err
    assert "skipped: broken.jpg" in err and f"needs at least 3 readable images; {tmp_path} has 1\n" in err
    assert sorted(p.name for p in out.iterdir()) == maps  # the descriptors/ it made is gone, no result written
    shutil.rmtree(out)  # its images would join the collection now
    fresh = tmp_path.with_name(tmp_path.name + "_space")
    assert main(["style-space", str(tmp_path), "-o", str(fresh), *options]) == 2
    assert not fresh.exists()  # so is an OUT it made
    assert main(["style-space", str(tmp_path / "missing"), "-o", str(out), "--weights", "random"]) == 2
    assert "no folder at" in capsys.readouterr().err
    assert main(["style-space", str(tmp_path), "-o", str(tmp_path / "nodir" / "ss"), "--weights", "random"]) == 2
    assert capsys.readouterr().err == f"nst-lessons: error: cannot write results to {tmp_path / 'nodir' / 'ss'}: folder {tmp_path / 'nodir'} does not exist\n"
    assert not (tmp_path / "nodir").exists()


def test_map_png_draws_the_uint8_thumbnails_in_their_colours(tmp_path: Path) -> None:
    dark_red = np.array([120, 20, 30], np.uint8)
    rng = np.random.default_rng(0)
    collection = style_space.Collection(
        names=["p", "q", "r", "s"],
        style=rng.normal(size=(4, 6)).astype(np.float32),
        content=rng.normal(size=(4, 5)).astype(np.float32),
        thumbnails=[np.broadcast_to(dark_red, (64, 48, 3)).copy() for _ in range(4)],
    )
    style_space.write_outputs(collection, tmp_path, k=2)
    with Image.open(tmp_path / "map.png") as png:
        pixels = np.asarray(png.convert("RGB")).astype(int)
    near = np.abs(pixels - dark_red).max(axis=-1) <= 8
    assert near.sum() > 4 * 4 * 10 * 10  # four panels of four thumbnails, each at least 10 x 10 px on the map


def test_unreadable_files_with_the_same_content_are_all_skipped_on_every_run(
    paintings: Path, tmp_path: Path, random_model: VGG19, one_thread: None
) -> None:
    (paintings / "e1.jpg").write_bytes(b"")
    (paintings / "e2.jpg").write_bytes(b"")  # the same (empty) content: one decode for both
    cache = tmp_path / "cache"
    for _ in range(2):  # the rerun reads the manifest the first run wrote
        collection = describe_folder(paintings, cache, random_model, size=40)
        assert collection.names == ["a.png", "b.jpg", "later/c.png"]
        assert [name for name, _ in collection.skipped] == ["broken.jpg", "e1.jpg", "e2.jpg"]
        assert "same content as e1.jpg" in dict(collection.skipped)["e2.jpg"]
    (manifest,) = cache.glob("*/manifest.json")
    assert "error" not in manifest.read_text()  # a decoding failure is not remembered: it is tried again


@pytest.mark.parametrize("text", ["", "{not json", "[]", '{"files": 3}'])
def test_an_unreadable_manifest_is_ignored_with_a_warning(
    text: str, paintings: Path, tmp_path: Path, random_model: VGG19, one_thread: None
) -> None:
    cache = tmp_path / "cache"
    first = describe_folder(paintings, cache, random_model, size=40)
    (manifest,) = cache.glob("*/manifest.json")
    manifest.write_text(text)
    with pytest.warns(UserWarning, match=r"ignoring the unreadable .*manifest\.json .*every file is hashed again"):
        again = describe_folder(paintings, cache, random_model, size=40)
    assert again.names == first.names and again.computed == 0  # the descriptors are found by content hash
    assert np.array_equal(again.style, first.style)
    assert set(json.loads(manifest.read_text())["files"]) == {*first.names, "broken.jpg"}  # rewritten whole


def test_the_cache_is_keyed_by_the_weights_values_not_only_their_name(
    paintings: Path, tmp_path: Path, random_model: VGG19, one_thread: None
) -> None:
    cache = tmp_path / "cache"
    first = describe_folder(paintings, cache, random_model, size=40)
    with pytest.warns(RandomWeightsWarning):
        other_seed = load_vgg19("random", seed=1, device="cpu")
    assert other_seed.weights == random_model.weights == "random"
    again = describe_folder(paintings, cache, other_seed, size=40)
    assert again.computed == 3 and not np.allclose(again.style, first.style)  # not the seed-0 descriptors
    checkpoint = tmp_path / "vgg.pth"
    torch.save(other_seed.state_dict(), checkpoint)
    from_file = describe_folder(paintings, cache, load_vgg19(checkpoint, device="cpu"), size=40)
    assert from_file.computed == 3 and np.array_equal(from_file.style, again.style)  # same values, new name: new key
    torch.save(random_model.state_dict(), checkpoint)  # another checkpoint under the same path
    replaced = describe_folder(paintings, cache, load_vgg19(checkpoint, device="cpu"), size=40)
    assert replaced.computed == 3 and np.array_equal(replaced.style, first.style)
    assert len(list(cache.iterdir())) == 4
