"""The controls of style_transfer, each by its defining property: several styles and their blend
weights, masked regions, style scale, precomputed targets, normalised gradients, snapshots and
printing, colour preservation wired through, and the package's face."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from PIL import Image

import nst_lessons
from nst_lessons import color, images, losses, transfer, vgg
from nst_lessons.data import example_path
from nst_lessons.images import ImageError, load_image, to_tensor
from nst_lessons.masks import area_weights, layer_masks, load_mask
from nst_lessons.targets import STYLE_LAYERS, StyleTargets, style_long_side
from nst_lessons.transfer import CONTENT_LAYERS, Objective, TransferState, snapshot_path, style_transfer

pytestmark = [pytest.mark.filterwarnings("ignore::nst_lessons.vgg.RandomWeightsWarning"), pytest.mark.usefixtures("one_thread")]

SIZE = (40, 34)  # the output's (H, W) at size=40 for grace_hopper
LAYERS = {n: 0.2 for n in STYLE_LAYERS}


@pytest.fixture(scope="module")
def photo() -> torch.Tensor:
    return to_tensor(load_image(example_path("grace_hopper"), 40))


@pytest.fixture(scope="module")
def paintings() -> list[torch.Tensor]:
    return [to_tensor(load_image(example_path(name), 48)) for name in ("strokes", "waves")]


def run(model, style, **kwargs):  # noqa: ANN001, ANN003, ANN201
    options = dict(size=40, iterations=2, network=model, progress=False)
    return style_transfer(example_path("grace_hopper"), style, **{**options, **kwargs})


def totals(result) -> list[float]:  # noqa: ANN001
    return [h["total"] for h in result.history]


# ----------------------------------------------------------------------------- several styles


def test_blend_weights_one_and_zero_are_the_single_style_targets(random_model, paintings) -> None:  # noqa: ANN001
    single = StyleTargets.from_tensors(random_model, paintings[:1], size=SIZE)
    blended = StyleTargets.from_tensors(random_model, paintings, size=SIZE, blend_weights=[1, 0])
    for n in STYLE_LAYERS:
        assert torch.equal(blended.A[n], single.A[n])


def test_blend_is_the_normalised_weighted_mean_of_grams_each_at_its_own_size(random_model, paintings) -> None:  # noqa: ANN001
    small = to_tensor(load_image(example_path("waves"), 32))  # a different size: per-position rescaling
    each = [StyleTargets.from_tensors(random_model, [s], size=SIZE) for s in (paintings[0], small)]
    blended = StyleTargets.from_tensors(random_model, [paintings[0], small], size=SIZE, blend_weights=[3, 1])
    for n in STYLE_LAYERS:
        torch.testing.assert_close(blended.A[n], 0.75 * each[0].A[n] + 0.25 * each[1].A[n])
    equal = StyleTargets.from_tensors(random_model, [paintings[0], paintings[0]], size=SIZE)  # default: equal weights
    torch.testing.assert_close(equal.A["relu3_1"], each[0].A["relu3_1"])


def test_a_run_with_weights_one_and_zero_is_the_single_style_run(random_model) -> None:  # noqa: ANN001
    strokes, waves = example_path("strokes"), example_path("waves")
    assert totals(run(random_model, [strokes, waves], style_blend_weights=[1.0, 0.0])) == totals(run(random_model, strokes))


@pytest.mark.parametrize(
    "weights, message", [([1.0], "1 weights for 2 style"), ([1.0, -1.0], "finite numbers >= 0"), ([0, 0], "not all 0")]
)
def test_bad_blend_weights(random_model, weights, message) -> None:  # noqa: ANN001
    with pytest.raises(ValueError, match=message):
        run(random_model, [example_path("strokes"), example_path("waves")], style_blend_weights=weights)


# ----------------------------------------------------------------------------- masks


def test_masks_carried_down_by_average_pooling_still_partition_every_layer() -> None:
    left = torch.zeros(1, 1, 40, 34)
    left[..., :13] = 1.0  # 13 is not a multiple of 2: soft weights appear at the boundary
    down = layer_masks(left, [*STYLE_LAYERS, "pool5"])
    rest = layer_masks(1 - left, [*STYLE_LAYERS, "pool5"])
    assert down["relu1_1"].shape[-2:] == (40, 34) and down["relu5_1"].shape[-2:] == (2, 2) and down["pool5"].shape[-2:] == (1, 1)
    assert 0 < down["relu2_1"][0, 0, 0, 6].item() < 1  # the window that straddles column 13
    for n in down:
        torch.testing.assert_close(down[n] + rest[n], torch.ones_like(down[n]))


def test_region_grams_are_per_area_and_add_up_to_the_whole_images(random_model, paintings) -> None:  # noqa: ANN001
    style = paintings[0]
    h, w = style.shape[-2:]
    left = torch.zeros(1, 1, h, w)
    left[..., : w // 3] = 1.0
    ones = torch.ones(1, 1, *SIZE)
    whole = StyleTargets.from_tensors(random_model, [style], size=SIZE)
    parts = StyleTargets.from_tensors(random_model, [style, style], size=SIZE, masks=[(ones, left), (ones, 1 - left)])
    for n in STYLE_LAYERS:
        T = layer_masks(left, [n])[n]
        fraction = T.sum() / T[0, 0].numel()
        torch.testing.assert_close(fraction * parts.regions[0].A[n] + (1 - fraction) * parts.regions[1].A[n], whole.A[n])


def test_an_all_ones_mask_is_the_unmasked_objective(random_model, photo, paintings) -> None:  # noqa: ANN001
    style = paintings[0]
    masked = StyleTargets.from_tensors(
        random_model, [style], size=SIZE, masks=[(torch.ones(1, 1, *SIZE), torch.ones(1, 1, *style.shape[-2:]))]
    )
    for gradients in ("autograd", "manual"):
        values, grads = [], []
        for targets in (masked, style):
            objective = Objective(random_model, photo, targets, CONTENT_LAYERS, LAYERS, 1.0, 1e8, 1.0, gradients=gradients)
            x = (photo + 0.05 * torch.rand(photo.shape, generator=torch.Generator().manual_seed(0))).requires_grad_(True)
            values.append(objective(x))
            grads.append(x.grad)
        torch.testing.assert_close(values[0], values[1], rtol=1e-6, atol=0)
        torch.testing.assert_close(grads[0], grads[1], rtol=1e-5, atol=1e-6 * grads[1].abs().max().item())


def test_hand_derived_gradients_with_a_soft_two_region_mask(random_model, photo, paintings) -> None:  # noqa: ANN001
    ramp = torch.linspace(0, 1, SIZE[1]).expand(1, 1, *SIZE)  # soft everywhere: weights T, not T^2, matter
    style_ramp = torch.linspace(0.2, 1, 48).view(48, 1).expand(1, 1, 48, 48)
    content_masks = [ramp, 1 - ramp]
    targets = StyleTargets.from_tensors(random_model, paintings, size=SIZE, masks=list(zip(content_masks, [style_ramp, 1 - style_ramp])))
    layers, beta = {"relu1_1": 0.25, "relu3_1": 0.75}, 1e6
    x = photo + 0.05 * torch.rand(photo.shape, generator=torch.Generator().manual_seed(3))
    grads = {}
    for gradients in ("autograd", "manual"):
        objective = Objective(random_model, photo, targets, [], layers, 1.0, beta, 0.0, gradients=gradients)
        x_ = x.clone().requires_grad_(True)
        objective(x_)
        grads[gradients] = x_.grad
    torch.testing.assert_close(grads["manual"], grads["autograd"], rtol=1e-4, atol=1e-5 * grads["autograd"].abs().max().item())
    # dE/dF of E = |G_r - A_r|^2 / (4 N^2 M^2), G_r = c F diag(T) F^T, c = M / sum T: c (G_r - A_r) F diag(T) / (N^2 M^2)
    features = objective.features(x, list(layers))
    with torch.no_grad():
        feature_grads = objective.feature_grads(features)
    for n, w in layers.items():
        F = features[n].flatten(2).double()
        N, M = F.shape[1], F.shape[2]
        expected = torch.zeros_like(F)
        for mask, region in zip(content_masks, targets.regions):
            T = layer_masks(mask, [n])[n].flatten(2).double()
            c = M / T.sum()
            G = c * (F * T) @ F.transpose(1, 2)
            expected += c * (G - region.A[n].double()) @ (F * T) / (N**2 * M**2)
        torch.testing.assert_close(feature_grads[n].flatten(2).double(), beta * w * expected, rtol=1e-4, atol=1e-6 * beta * w * expected.abs().max().item())


def test_two_regions_two_styles_from_python(random_model, tmp_path) -> None:  # noqa: ANN001
    top = torch.zeros(40, 34)
    top[:20] = 1.0
    Image.fromarray((top.numpy() * 255).astype("uint8")).save(tmp_path / "top.png")
    masks = [(tmp_path / "top.png", torch.ones(48, 48)), (1 - top, torch.ones(1, 1, 48, 48))]
    result = run(random_model, [example_path("strokes"), example_path("waves")], masks=masks, style_size=48)
    assert result.settings["regions"] == 2 and result.history[-1]["style"] < result.history[0]["style"]


@pytest.mark.parametrize(
    "mask, message",
    [
        (torch.ones(20, 34), "aspect ratios differ"),
        (torch.zeros(40, 34), "is empty"),
        (torch.full((40, 34), 2.0), "values must lie in \\[0,1\\]"),
        (torch.ones(2, 40, 34), "single-channel"),
    ],
)
def test_bad_masks_are_clear_errors(mask, message) -> None:  # noqa: ANN001
    with pytest.raises(ImageError, match=message):
        load_mask(mask, SIZE, "content mask 1")


def test_grey_masks_are_soft_weights_and_a_mask_is_resized_to_its_image() -> None:
    half = torch.full((80, 68), 0.5)
    m = load_mask(half, SIZE)
    assert m.shape == (1, 1, *SIZE) and torch.allclose(m, torch.full_like(m, 0.5))
    assert torch.equal(area_weights(torch.ones(1, 1, 5, 7)), torch.ones(1, 1, 5, 7))


def test_guided_grams_weight_by_T_or_by_T_squared_as_gatys_code_does() -> None:
    gen = torch.Generator().manual_seed(3)
    F, T = torch.randn(1, 4, 5, 7, generator=gen, dtype=torch.float64), torch.rand(1, 1, 5, 7, generator=gen, dtype=torch.float64)
    F_nm, t = F.flatten(2)[0], T.flatten()
    ours = F_nm @ torch.diag(t) @ F_nm.T * 35 / t.sum()
    gatys = (F_nm * t) @ (F_nm * t).T * 35 / (t * t).sum()  # the feature maps times the guide, sum T^2 = M
    torch.testing.assert_close(losses.gram_matrix(F * area_weights(T))[0], ours)
    torch.testing.assert_close(losses.gram_matrix(F * area_weights(T, power=2))[0], gatys)
    assert not torch.allclose(ours, gatys)  # a soft mask tells them apart
    binary = (T > 0.5).double()
    torch.testing.assert_close(area_weights(binary, power=2), area_weights(binary))  # a binary one does not
    with pytest.raises(ValueError, match="power must be 1 or 2"):
        area_weights(T, power=3)


def test_a_masks_overall_scale_cancels_and_a_faint_mask_is_warned_about(random_model, photo, paintings) -> None:  # noqa: ANN001
    x = (photo + 0.05 * torch.rand(photo.shape, generator=torch.Generator().manual_seed(2))).requires_grad_(True)
    with pytest.warns(UserWarning, match="content mask 1 is at most 0.00392: .* full style weight"):
        faint = load_mask(torch.full(SIZE, 1 / 255), SIZE, "content mask 1")
    ones = torch.ones(1, 1, *SIZE)

    def loss(T: torch.Tensor) -> torch.Tensor:
        targets = StyleTargets.from_tensors(random_model, paintings[:1], size=SIZE, masks=[(T, torch.ones(1, 1, 48, 48))])
        return Objective(random_model, photo, targets, [], LAYERS, 1.0, 1.0, 0.0)(x)

    torch.testing.assert_close(loss(faint), loss(ones))  # as strong as a white mask
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_mask(torch.full(SIZE, 0.5), SIZE)  # not faint: no warning


def test_masks_must_match_the_styles_and_exclude_blend_weights(random_model) -> None:  # noqa: ANN001
    ones = (torch.ones(40, 34), torch.ones(48, 48))
    with pytest.raises(ValueError, match="2 mask pair\\(s\\) \\(--content-mask/--style-mask\\) for 1 style"):
        run(random_model, example_path("strokes"), masks=[ones, ones], style_size=48)
    with pytest.raises(ValueError, match="do not apply with masks"):
        run(random_model, [example_path("strokes")] * 2, masks=[ones, ones], style_size=48, style_blend_weights=[1, 1])


# ----------------------------------------------------------------------------- scale, targets


def test_style_scale_s_is_style_size_s_times_the_output(random_model) -> None:  # noqa: ANN001
    assert style_long_side(SIZE, None, 1.5) == 60 and style_long_side(SIZE, 48, None) == 48 and style_long_side(SIZE, None, None) == 40
    scaled = run(random_model, example_path("strokes"), style_scale=1.5)
    assert totals(scaled) == totals(run(random_model, example_path("strokes"), style_size=60))
    assert totals(scaled) != totals(run(random_model, example_path("strokes")))
    with pytest.raises(ValueError, match="not both"):
        style_long_side(SIZE, 48, 1.5)
    with pytest.raises(ValueError, match="at least 32 px"):
        style_long_side(SIZE, None, 0.5)


def test_one_style_without_options_is_the_run_on_plain_gram_targets(random_model, photo) -> None:  # noqa: ANN001
    strokes = example_path("strokes")
    names = list(STYLE_LAYERS)
    with torch.no_grad():  # A^l = G(F_s^l) * M_l / M'_l, written out from losses.gram_targets
        F_s = random_model.extract(to_tensor(load_image(strokes, 40)), names)
        M = {n: F.shape[-2] * F.shape[-1] for n, F in random_model.extract(photo, names).items()}
    plain = StyleTargets(dict(LAYERS), SIZE, losses.gram_targets(F_s, names, M))
    given, default = run(random_model, strokes, iterations=3, style_targets=plain), run(random_model, strokes, iterations=3)
    assert totals(default) == totals(given) and torch.equal(default.tensor, given.tensor)


def test_targets_computed_once_give_the_same_run(random_model) -> None:  # noqa: ANN001
    strokes = example_path("strokes")
    targets = StyleTargets.compute(random_model, strokes, size=SIZE)
    assert totals(run(random_model, strokes, style_targets=targets)) == totals(run(random_model, strokes))
    moved = targets.at((64, 55))
    fresh = StyleTargets.compute(random_model, strokes, size=(64, 55), style_size=40)
    for n in STYLE_LAYERS:
        torch.testing.assert_close(moved.A[n], fresh.A[n])
    with pytest.raises(ValueError, match="give no style_size"):
        run(random_model, strokes, style_targets=targets, style_scale=2.0)


# ----------------------------------------------------------------------------- gradients, snapshots, printing


def test_normalised_gradients_have_unit_l1_norm_per_term_times_its_weight(random_model, photo, paintings) -> None:  # noqa: ANN001
    x = (photo + 0.05 * torch.rand(photo.shape, generator=torch.Generator().manual_seed(1))).requires_grad_(True)
    plain = Objective(random_model, photo, paintings[0], ["relu4_2"], {"relu1_1": 0.5}, 5.0, 100.0, 0.0)
    normalised = Objective(random_model, photo, paintings[0], ["relu4_2"], {"relu1_1": 0.5}, 5.0, 100.0, 0.0, normalize_gradients=True)
    grads = normalised.feature_grads(normalised.features(x, normalised.layers))
    assert grads["relu4_2"].abs().sum().item() == pytest.approx(5.0, rel=1e-4)
    assert grads["relu1_1"].abs().sum().item() == pytest.approx(100.0 * 0.5, rel=1e-4)
    assert torch.equal(normalised(x), plain(x))  # the losses are unchanged; only the step direction differs
    assert transfer.NORMALIZED_LOSS_WEIGHTS == (5.0, 100.0, 1e-3)


def test_normalised_gradients_return_the_last_image_evaluated(random_model, photo) -> None:  # noqa: ANN001
    seen: list[torch.Tensor] = []  # x after each iteration's update: seen[i - 1] is evaluated at iteration i + 1
    result = run(random_model, example_path("strokes"), iterations=6, normalize_gradients=True,
                 callback=lambda state: seen.append(state.image.clone()))  # fmt: skip
    assert result.settings["style_weight"] == 100.0
    assert not torch.equal(result.tensor, photo)  # not the starting image, whatever the recorded totals
    assert torch.equal(result.tensor, seen[-2].clamp(0, 1))
    assert result.best_loss == result.history[-1]["total"]  # the loss of the image returned, not the minimum


def test_snapshots_are_the_image_at_every_nth_iteration(random_model, tmp_path) -> None:  # noqa: ANN001
    seen: dict[int, Image.Image] = {}

    def keep(state: TransferState) -> None:
        seen[state.iteration] = images.to_pil(state.image.clone())

    run(random_model, example_path("strokes"), iterations=5, save_every=2, save_path=tmp_path / "out.png", callback=keep)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out_2.png", "out_4.png"]
    for i in (2, 4):
        assert np.array_equal(np.asarray(Image.open(snapshot_path(tmp_path / "out.png", i))), np.asarray(seen[i]))
    with pytest.raises(ValueError, match="save_every needs save_path"):
        run(random_model, example_path("strokes"), save_every=2)
    with pytest.raises(ValueError, match="save_every must be a whole number >= 1"):
        run(random_model, example_path("strokes"), save_every=0, save_path=tmp_path / "x.png")


def test_print_every_prints_each_term_at_every_nth_iteration(random_model, capsys) -> None:  # noqa: ANN001
    result = run(random_model, example_path("strokes"), iterations=4, print_every=2)
    lines = capsys.readouterr().out.strip().splitlines()
    assert [line.split(":")[0] for line in lines] == ["iteration 2/4", "iteration 4/4"]
    h = result.history[3]
    assert lines[1] == (
        f"iteration 4/4: total {h['total']:.4g} = content {h['content']:.4g} + style {h['style']:.4g} + tv {h['tv']:.4g}"
    )


# ----------------------------------------------------------------------------- colour, the package's face, sources


def test_preserve_color_is_wired_around_the_run(random_model, monkeypatch) -> None:  # noqa: ANN001
    strokes = example_path("strokes")
    plain = run(random_model, strokes)
    yuv = run(random_model, strokes, preserve_color="yuv")
    photo = to_tensor(load_image(example_path("grace_hopper"), 40))
    assert totals(yuv) == totals(plain)  # "yuv" only post-processes
    torch.testing.assert_close(yuv.tensor, color.finish("yuv", plain.tensor, photo), rtol=0, atol=0)
    prepared, used, prepare = [], [], color.prepare
    monkeypatch.setattr(color, "prepare", lambda *a: prepared.append(prepare(*a)) or prepared[-1])
    original = StyleTargets.from_tensors.__func__
    monkeypatch.setattr(StyleTargets, "from_tensors", classmethod(lambda cls, m, s, **k: used.append(s) or original(cls, m, s, **k)))
    luminance = run(random_model, strokes, preserve_color="luminance")
    assert used[0][0] is prepared[0][1][0] and torch.equal(prepared[0][0][0, 0], prepared[0][0][0, 1])  # grey content, prepared styles
    chroma = color.rgb_to_yiq(luminance.tensor)[:, 1:] - color.rgb_to_yiq(photo)[:, 1:]
    assert (chroma.abs() < 1e-4).float().mean() > 0.9  # the photo's chroma, except where clamping to [0,1] bit
    with pytest.raises(ValueError, match="unknown preserve_color 'lab'"):
        run(random_model, strokes, preserve_color="lab")


def test_the_package_exports_its_three_main_functions() -> None:
    from nst_lessons import load_image as li, load_vgg19 as lv, style_transfer as st

    assert (st, lv, li) == (transfer.style_transfer, vgg.load_vgg19, images.load_image)
    assert {"style_transfer", "load_vgg19", "load_image"} <= set(dir(nst_lessons))
    with pytest.raises(AttributeError):
        nst_lessons.no_such_name  # noqa: B018


@pytest.mark.parametrize("side", [(1, 1), (8, 8), (200, 20)])
def test_a_degenerate_source_is_refused_even_when_size_would_upscale_it(side) -> None:  # noqa: ANN001
    with pytest.raises(ImageError, match=f"image is {side[0]}x{side[1]} pixels; at least 32 px a side .*before resizing"):
        load_image(Image.new("RGB", side), size=512)
