"""The numpy VGG-19 against the torch one (float64): features at all 37 layers and the input
gradient, for max and avg pooling and both preprocessings; and the numpy style transfer."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest
import torch

import nst_lessons.scratch
import nst_lessons.scratch.vgg as scratch_vgg
from nst_lessons.gradcheck import check_against_autograd, rel_error
from nst_lessons.scratch import INPUT, NumpyVGG19, style_transfer_numpy
from nst_lessons.vgg import LAYERS, RandomWeightsWarning, load_vgg19


def build(pooling: str = "max", preprocessing: str = "imagenet"):
    with pytest.warns(RandomWeightsWarning):
        model = load_vgg19("random", pooling=pooling, device="cpu", preprocessing=preprocessing)
    return model.double(), NumpyVGG19.from_torch(model)


@pytest.fixture(scope="module", params=[("max", "imagenet"), ("avg", "imagenet"), ("max", "caffe")], ids=str)
def models(request):
    return build(*request.param)


def image(H: int, W: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0, 1, (3, H, W))


def linear_probe(net: NumpyVGG19, model, x: np.ndarray, names, seed: int = 1):
    """numpy and torch versions of L = sum_l <R_l, F_l(x)> for random R_l, whose dL/dF_l = R_l:
    back-propagating R_l injected at the named layers gives dL/dx."""
    features = net.forward(x, names)
    rng = np.random.default_rng(seed)
    R = {name: rng.standard_normal(F.shape) for name, F in features.items()}

    def numpy_fn(x):
        F = net.forward(x, names)
        return sum(float(np.sum(R[n] * F[n])) for n in R), net.backward(R)

    def torch_fn(x):
        F = model.extract(x[None], names)
        return sum((torch.from_numpy(R[n]) * F[n][0]).sum() for n in R)

    return numpy_fn, torch_fn


@pytest.mark.parametrize("H, W", [(32, 32), (48, 40)])  # 40 -> 20 -> 10 -> 5 -> 2: an odd size floors
def test_features_match_torch_at_every_layer(models, H, W):
    model, net = models
    x = image(H, W)
    ours = net.forward(x, LAYERS)
    theirs = model.extract(torch.from_numpy(x)[None], LAYERS)
    assert list(ours) == list(LAYERS)
    for name in LAYERS:
        assert ours[name].shape == tuple(theirs[name].shape[1:]), name
        assert rel_error(ours[name], theirs[name][0].numpy()) <= 1e-9, name


def test_input_gradient_matches_autograd_with_all_layers_injected(models):
    model, net = models
    x = image(48, 40, seed=2)
    report = check_against_autograd(*linear_probe(net, model, x, LAYERS), x)
    assert report.passed, report


@pytest.mark.parametrize("name", ["conv1_1", "relu1_2", "pool1", "relu3_1", "conv4_2", "pool4", "pool5"])
def test_input_gradient_matches_autograd_from_single_layers(models, name):
    model, net = models
    x = image(32, 32, seed=3)
    report = check_against_autograd(*linear_probe(net, model, x, [name]), x)
    assert report.passed, report


def test_forward_runs_only_as_deep_as_asked_and_backward_checks_names_and_shapes():
    _, net = build()
    x = image(32, 32)
    features = net.forward(x, ["relu2_1", "conv1_1"])
    assert set(features) == {"relu2_1", "conv1_1"}
    with pytest.raises(ValueError, match="no forward pass reached relu2_2"):
        net.backward({"relu2_2": np.zeros((128, 16, 16))})
    with pytest.raises(ValueError, match="expected \\(128, 16, 16\\)"):
        net.backward({"relu2_1": np.zeros((128, 8, 8))})
    with pytest.raises(ValueError, match="unknown VGG-19 layer"):
        net.backward({"relu9_9": np.zeros(1)})
    with pytest.raises(ValueError, match=r"\(3,H,W\)"):
        net.forward(np.zeros((1, 32, 32)), ["relu1_1"])


def test_input_key_adds_a_direct_image_gradient():
    _, net = build()
    x = image(32, 32)
    F = net.forward(x, ["relu1_1"])["relu1_1"]
    dF = np.random.default_rng(4).standard_normal(F.shape)
    direct = np.random.default_rng(5).standard_normal(x.shape)
    with_direct = net.backward({"relu1_1": dF, INPUT: direct})
    np.testing.assert_allclose(with_direct, net.backward({"relu1_1": dF}) + direct)


def test_dropping_the_relu_mask_is_caught_by_the_check(models, monkeypatch):
    """A backward pass that forgets the ReLU's mask (passes dy through unchanged) must fail."""
    model, net = models
    x = image(32, 32, seed=6)
    probe = linear_probe(net, model, x, ["relu3_1"])
    monkeypatch.setattr(scratch_vgg, "relu_backward", lambda dy, x: dy)
    report = check_against_autograd(*probe, x)
    assert not report.passed
    assert report.grad_error > 1e-3
    assert str(report).startswith("gradient DISAGREES with torch autograd: worst relative error")
    assert f"at index {report.worst_index}" in str(report)


def test_from_torch_copies_pooling_preprocessing_and_weights():
    model, net = build("avg", "caffe")
    assert (net.pooling, net.preprocessing) == ("avg", "caffe")
    i = LAYERS.index("conv3_2")
    np.testing.assert_array_equal(net.params[i][0], model.features[i].weight.numpy())
    assert all(w.dtype == np.float64 and b.dtype == np.float64 for w, b in net.params.values())


def test_scratch_package_never_imports_torch():
    """The numeric code is numpy only; torch models are read by duck typing in from_torch."""
    for path in Path(nst_lessons.scratch.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                modules = [node.module or ""]
            else:
                continue
            assert not any(m == "torch" or m.startswith("torch.") for m in modules), path.name


def test_numpy_style_transfer_lowers_the_loss_tenfold():
    _, net = build()
    yy, xx = np.mgrid[0:64, 0:64] / 63.0
    content = np.stack([yy, xx, (yy + xx) / 2])
    style = np.random.default_rng(7).uniform(0, 1, (3, 40, 40))  # resized to 64 px
    seen = []
    result = style_transfer_numpy(
        content, style, model=net, size=64, iterations=100, callback=lambda i, x, record: seen.append((i, record))
    )
    first, last = result.history[0], result.history[-1]
    assert result.image.shape == (3, 64, 64)
    assert result.image.min() >= 0.0 and result.image.max() <= 1.0
    assert len(result.history) == result.result.nfev
    assert [i for i, _ in seen] == list(range(1, result.result.nit + 1))
    assert seen[-1][1].total == result.result.fun  # the callback's record is the iterate's
    assert first.content == 0.0 and first.style > 0.0  # started from the content image
    assert last.total == pytest.approx(last.content + last.style + last.tv)
    assert result.result.fun <= first.total / 10, (first, result.result.fun)


def test_numpy_style_transfer_accepts_a_torch_model_and_seeded_noise():
    model, _ = build()
    photo = image(24, 32, seed=8)
    painting = image(16, 16, seed=9)
    settings = dict(size=32, iterations=2, content_layers=("relu2_1",), style_layers=("relu1_1",))
    runs = [style_transfer_numpy(photo, painting, model=model, init="noise", seed=3, **settings) for _ in range(2)]
    assert runs[0].image.shape == (3, 24, 32)  # longer side 32, aspect kept
    np.testing.assert_array_equal(runs[0].image, runs[1].image)
    assert runs[0].history[0].content > 0.0  # noise is far from the photo
    with pytest.raises(ValueError, match="unknown init"):
        style_transfer_numpy(photo, painting, model=model, init="photo", **settings)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        style_transfer_numpy(photo * 255, painting, model=model, **settings)
