"""vgg.normalize_activations: Gatys' normalised VGG-19, built from any weights.

Defining properties, on random weights: after normalising, every live filter's mean rectified
activation over the calibration images is 1, and every layer computes the original's maps
divided by its per-channel factors, on any image; dead filters are left alone.
"""

from __future__ import annotations

import copy
import warnings

import pytest
import torch

from nst_lessons.vgg import LAYERS, VGG19, load_vgg19, normalize_activations

RELUS = [name for name in LAYERS if name.startswith("relu")]


def random_vgg(pooling: str) -> VGG19:
    """Random weights in float64, with random biases (load_vgg19 sets them to 0), so that filters
    of very different mean activations occur."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = load_vgg19("random", pooling=pooling, device="cpu", seed=1).double()
    generator = torch.Generator().manual_seed(2)
    with torch.no_grad():
        for module in model.features:
            if isinstance(module, torch.nn.Conv2d):
                module.bias.copy_(0.1 * torch.randn(module.bias.shape, generator=generator, dtype=torch.float64))
    return model


def images(*sizes: tuple[int, int], seed: int = 0) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return [torch.rand((1, 3, h, w), generator=generator, dtype=torch.float64) for h, w in sizes]


def mean_activations(model: VGG19, batches: list[torch.Tensor]) -> dict[str, torch.Tensor]:
    """Per filter, the mean of each rectified map over all the batches' positions."""
    sums, counts = {}, {}
    with torch.no_grad():
        for x in batches:
            for name, F in model.extract(x, RELUS).items():
                sums[name] = sums.get(name, 0) + F.sum(dim=(0, 2, 3))
                counts[name] = counts.get(name, 0) + F.shape[0] * F.shape[2] * F.shape[3]
    return {name: sums[name] / counts[name] for name in RELUS}


def layer_factors(factors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The factor of every layer's channels: a conv shares its relu's, a pool the relu before it."""
    out, last = {}, None
    for name in LAYERS:
        if name.startswith("pool"):
            out[name] = last
        else:
            out[name] = last = factors["relu" + name[4:]]
    return out


@pytest.fixture(scope="module")
def normalised() -> tuple[VGG19, VGG19, dict[str, torch.Tensor], list[torch.Tensor]]:
    original = random_vgg("max")
    calibration = images((40, 40), (32, 48))
    model = copy.deepcopy(original)
    factors = normalize_activations(model, calibration)
    return original, model, factors, calibration


def test_every_filter_has_mean_activation_one(normalised) -> None:
    original, model, factors, calibration = normalised
    before = mean_activations(original, calibration)
    assert not any(torch.allclose(m, torch.ones_like(m)) for m in before.values())  # there was work to do
    for name, mean in mean_activations(model, calibration).items():
        live = before[name] > 0  # a random network has some dead filters: their mean stays 0
        assert torch.allclose(mean[live], torch.ones_like(mean[live]), rtol=1e-9, atol=0), name
        assert (mean[~live] == 0).all() and (factors[name][~live] == 1).all(), name
        assert torch.allclose(factors[name][live], before[name][live], rtol=1e-12, atol=0), name


@pytest.mark.parametrize("pooling", ["max", "avg"])
def test_every_layer_is_the_original_divided_by_its_factors(pooling: str) -> None:
    original = random_vgg(pooling)
    model = copy.deepcopy(original)
    factors = layer_factors(normalize_activations(model, images((32, 32))))
    unseen = images((32, 48), seed=5)[0]  # the function is preserved on any image, not only the calibration ones
    with torch.no_grad():
        old, new = original.extract(unseen, LAYERS), model.extract(unseen, LAYERS)
    for name in LAYERS:
        expected = old[name] / factors[name].view(1, -1, 1, 1)
        assert torch.allclose(new[name], expected, rtol=1e-9, atol=1e-12 * old[name].abs().max().item()), name


def test_dead_filters_are_left_alone() -> None:
    original = random_vgg("max")
    conv1_2 = original.features[LAYERS.index("conv1_2")]
    with torch.no_grad():
        conv1_2.weight[3] = 0.0
        conv1_2.bias[3] = -1.0  # relu1_2's channel 3 is 0 everywhere
    model = copy.deepcopy(original)
    calibration = images((32, 32))
    before = mean_activations(original, calibration)
    factors = normalize_activations(model, calibration)
    assert before["relu1_2"][3] == 0.0 and factors["relu1_2"][3] == 1.0
    assert torch.equal(model.features[LAYERS.index("conv1_2")].weight[3], conv1_2.weight[3])
    assert torch.equal(model.features[LAYERS.index("conv1_2")].bias[3], conv1_2.bias[3])
    means = mean_activations(model, calibration)
    assert means["relu1_2"][3] == 0.0
    # the layers after it are normalised as usual: relu2_1 reads the dead channel as the zeros it was
    for name in ("relu1_2", "relu2_1"):
        live = before[name] > 0
        assert torch.allclose(means[name][live], torch.ones_like(means[name][live]), rtol=1e-9, atol=0), name


def test_no_images_is_an_error() -> None:
    model = random_vgg("max")
    with pytest.raises(ValueError, match="at least one image"):
        normalize_activations(model, [])
