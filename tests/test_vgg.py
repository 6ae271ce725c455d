"""VGG-19: layer names, an independent functional re-implementation, preprocessing, weights and downloads."""

from __future__ import annotations

import socket
from concurrent.futures import ThreadPoolExecutor
import warnings
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.nn import functional as F_nn

from conftest import save_checkpoint, synthetic_state_dict
from nst_lessons import vgg
from nst_lessons.vgg import LAYERS, RandomWeightsWarning, WeightsError, load_vgg19


def functional_vgg19(state: dict[str, torch.Tensor], x: torch.Tensor, pooling: str) -> dict[str, torch.Tensor]:
    """VGG-19 written directly with F.conv2d from a torchvision-layout state dict: every layer's output."""
    plan = [(64, 2), (128, 2), (256, 4), (512, 4), (512, 4)]
    out, h, index = {}, x, 0
    for block, (_, n_convs) in enumerate(plan, start=1):
        for k in range(1, n_convs + 1):
            h = F_nn.conv2d(h, state[f"features.{index}.weight"], state[f"features.{index}.bias"], padding=1)
            out[f"conv{block}_{k}"] = h
            h = F_nn.relu(h)
            out[f"relu{block}_{k}"] = h
            index += 2
        h = F_nn.max_pool2d(h, 2) if pooling == "max" else F_nn.avg_pool2d(h, 2)
        out[f"pool{block}"] = h
        index += 1
    return out


def test_layer_names_follow_torchvision_indices() -> None:
    assert len(LAYERS) == 37
    assert LAYERS[:5] == ("conv1_1", "relu1_1", "conv1_2", "relu1_2", "pool1")
    assert LAYERS[-3:] == ("conv5_4", "relu5_4", "pool5")
    model = vgg.VGG19()
    for i, name in enumerate(LAYERS):
        kind = {"conv": nn.Conv2d, "relu": nn.ReLU, "pool": nn.MaxPool2d}[name[:4]]
        assert isinstance(model.features[i], kind), name
    assert all(not m.inplace for m in model.features if isinstance(m, nn.ReLU))


def test_unknown_layer_is_a_clear_error(random_model: vgg.VGG19) -> None:
    with pytest.raises(ValueError, match="unknown VGG-19 layer 'conv4_5'"):
        random_model.extract(torch.rand(1, 3, 32, 32), ["conv4_5"])


@pytest.mark.parametrize("pooling", ["max", "avg"])
def test_checkpoint_reproduces_functional_network_at_every_layer(tmp_path: Path, pooling: str) -> None:
    state = synthetic_state_dict(seed=1)
    path = save_checkpoint(state, tmp_path)
    model = load_vgg19(path, pooling=pooling, device="cpu").double()
    image = torch.rand(2, 3, 40, 36, dtype=torch.float64)
    got = model.extract(image, LAYERS)
    state64 = {k: v.double() for k, v in state.items()}
    want = functional_vgg19(state64, model.preprocess(image), pooling)
    assert list(got) == list(LAYERS)
    for name in LAYERS:
        assert got[name].shape == want[name].shape, name
        torch.testing.assert_close(got[name], want[name], rtol=1e-12, atol=1e-12, msg=name)


def test_conv_features_survive_the_relu(random_model: vgg.VGG19) -> None:
    f = random_model.extract(torch.rand(1, 3, 32, 32), ["conv1_1", "relu1_1"])
    assert (f["conv1_1"] < 0).any()  # an in-place ReLU would have rectified it
    torch.testing.assert_close(f["relu1_1"], f["conv1_1"].clamp(min=0))


def test_extract_runs_only_as_deep_as_needed(random_model: vgg.VGG19) -> None:
    calls: list[int] = []
    hooks = [m.register_forward_hook(lambda m, i, o, k=k: calls.append(k)) for k, m in enumerate(random_model.features)]
    try:
        random_model.extract(torch.rand(1, 3, 32, 32), ["relu2_1", "conv1_1"])
    finally:
        for h in hooks:
            h.remove()
    assert calls == list(range(LAYERS.index("relu2_1") + 1))


def test_preprocessing_of_each_weight_set() -> None:
    image = torch.rand(1, 3, 8, 8)
    imagenet = vgg.VGG19(preprocessing="imagenet").preprocess(image)
    mean, std = torch.tensor(vgg.IMAGENET_MEAN), torch.tensor(vgg.IMAGENET_STD)
    torch.testing.assert_close(imagenet[0, :, 3, 4], (image[0, :, 3, 4] - mean) / std)
    caffe = vgg.VGG19(preprocessing="caffe").preprocess(image)
    bgr = image[0, [2, 1, 0], 3, 4] * 255
    torch.testing.assert_close(caffe[0, :, 3, 4], bgr - torch.tensor(vgg.CAFFE_MEAN_BGR))


def test_random_weights_warn_and_are_deterministic_per_seed() -> None:
    with pytest.warns(RandomWeightsWarning, match="will not look like the paper"):
        a = load_vgg19("random", device="cpu", seed=3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RandomWeightsWarning)
        b = load_vgg19("random", device="cpu", seed=3)
        c = load_vgg19("random", device="cpu", seed=4)
    w = "features.0.weight"
    assert torch.equal(a.state_dict()[w], b.state_dict()[w])
    assert not torch.equal(a.state_dict()[w], c.state_dict()[w])
    # He initialisation keeps the activations' scale from vanishing or exploding with depth.
    f = a.extract(torch.rand(1, 3, 64, 64), ["relu1_1", "relu5_1"])
    assert 0.1 < f["relu5_1"].std() / f["relu1_1"].std() < 10


def test_bad_weights_arguments() -> None:
    with pytest.raises(ValueError, match="unknown weights 'vgg16'"):
        load_vgg19("vgg16")
    with pytest.raises(WeightsError, match="no checkpoint file"):
        load_vgg19("/nonexistent/vgg19.pth")
    with pytest.raises(ValueError, match="unknown pooling"):
        load_vgg19("random", pooling="median")


def test_wrong_checkpoints_are_refused(tmp_path: Path) -> None:
    state = synthetic_state_dict()
    state["features.0.weight"] = torch.zeros(64, 3, 5, 5)
    with pytest.raises(WeightsError, match=r"features.0.weight has shape \(64, 3, 5, 5\)"):
        load_vgg19(save_checkpoint(state, tmp_path), device="cpu")
    del state["features.34.bias"]
    with pytest.raises(WeightsError, match="no features.34.bias"):
        load_vgg19(save_checkpoint(state, tmp_path, "other"), device="cpu")
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(WeightsError, match="not a readable torch checkpoint"):
        load_vgg19(junk, device="cpu")


def test_caffe_preprocessing_is_inferred_from_the_file_name(tmp_path: Path) -> None:
    path = save_checkpoint(synthetic_state_dict(), tmp_path, stem="vgg19-d01eb7cb-converted")
    assert load_vgg19(path, device="cpu").preprocessing == "caffe"
    assert load_vgg19(save_checkpoint(synthetic_state_dict(), tmp_path), device="cpu").preprocessing == "imagenet"


def test_published_urls(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NST_LESSONS_WEIGHTS_MIRROR", raising=False)
    assert vgg.checkpoint_url("imagenet") == "https://download.pytorch.org/models/vgg19-dcbb9e9d.pth"
    assert vgg.checkpoint_url("caffe") == "https://web.eecs.umich.edu/~justincj/models/vgg19-d01eb7cb.pth"


# ----------------------------------------------------------------------------- downloads


@pytest.fixture
def served_imagenet(tmp_path: Path, http_server, monkeypatch: pytest.MonkeyPatch):  # noqa: ANN001, ANN201
    """A synthetic checkpoint published as "imagenet" on a local mirror; the cache is a temp folder."""
    state = synthetic_state_dict(seed=7)
    path = save_checkpoint(state, http_server.root)
    monkeypatch.setitem(vgg.CHECKPOINTS, ("vgg19", "imagenet"), (path.name, "https://example.invalid/" + path.name))
    monkeypatch.setenv("NST_LESSONS_WEIGHTS_MIRROR", http_server.url + "/")
    monkeypatch.setenv("NST_LESSONS_HOME", str(tmp_path / "cache"))
    return state, path, http_server


def test_download_from_mirror_keeps_only_the_conv_part(served_imagenet, tmp_path: Path) -> None:  # noqa: ANN001
    state, path, server = served_imagenet
    model = load_vgg19("imagenet", device="cpu", progress=False)
    assert server.requests == ["/" + path.name]
    for key, value in model.state_dict().items():
        assert torch.equal(value, state[key]), key
    cached = sorted(p.name for p in (tmp_path / "cache").iterdir())
    assert cached == [path.stem + ".features.pth"]  # the 550 MB original is not kept
    assert set(torch.load(tmp_path / "cache" / cached[0], weights_only=True)) == set(model.state_dict())
    load_vgg19("imagenet", device="cpu", progress=False)
    assert len(server.requests) == 1  # cached: no second download


def test_concurrent_first_downloads_into_one_cache(served_imagenet, tmp_path: Path) -> None:  # noqa: ANN001
    """A classroom's shared cache: several fetches at once all succeed and leave one file."""
    with ThreadPoolExecutor(4) as pool:
        paths = list(pool.map(lambda _: vgg.fetch_weights("imagenet", progress=False), range(4)))
    assert len(set(paths)) == 1
    assert [p.name for p in (tmp_path / "cache").iterdir()] == [paths[0].name]


def test_corrupt_cache_is_removed_and_fetched_again(served_imagenet, tmp_path: Path) -> None:  # noqa: ANN001
    _, path, server = served_imagenet
    load_vgg19("imagenet", device="cpu", progress=False)
    cached = tmp_path / "cache" / (path.stem + ".features.pth")
    cached.write_bytes(cached.read_bytes()[:1000])  # truncated
    load_vgg19("imagenet", device="cpu", progress=False)
    assert len(server.requests) == 2


def test_checksum_mismatch_is_refused_and_leaves_nothing(served_imagenet, tmp_path: Path) -> None:  # noqa: ANN001
    _, path, server = served_imagenet
    path.write_bytes(path.read_bytes()[:-10] + b"0123456789")
    with pytest.raises(WeightsError, match="checksum mismatch"):
        load_vgg19("imagenet", device="cpu", progress=False)
    assert list((tmp_path / "cache").iterdir()) == []


def test_hand_placed_file_is_used_without_network_and_kept(served_imagenet, tmp_path: Path) -> None:  # noqa: ANN001
    state, path, server = served_imagenet
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / path.name).write_bytes(path.read_bytes())
    model = load_vgg19("imagenet", device="cpu", progress=False)
    assert server.requests == []
    assert torch.equal(model.state_dict()["features.34.weight"], state["features.34.weight"])
    assert (tmp_path / "cache" / path.name).exists()  # it may be torchvision's own cached copy


def test_a_wrong_hand_placed_file_is_removed_and_replaced(served_imagenet, tmp_path: Path) -> None:  # noqa: ANN001
    _, path, server = served_imagenet
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / path.name).write_bytes(b"partial download")
    load_vgg19("imagenet", device="cpu", progress=False)
    assert len(server.requests) == 1 and not (tmp_path / "cache" / path.name).exists()


def test_unwritable_cache_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "file").write_text("a file where the cache folder should be")
    monkeypatch.setenv("NST_LESSONS_HOME", str(tmp_path / "file" / "cache"))
    with pytest.raises(WeightsError, match="cannot use .* as the weights cache.*NST_LESSONS_HOME"):
        load_vgg19("imagenet", device="cpu", progress=False)


def test_checkpoint_with_odd_entries(tmp_path: Path) -> None:
    state = {**synthetic_state_dict(), 5: torch.zeros(1), "epoch": 3}
    model = load_vgg19(save_checkpoint(state, tmp_path), device="cpu")
    assert torch.equal(model.state_dict()["features.0.bias"], state["features.0.bias"])


def test_offline_message_names_url_path_and_random(served_imagenet, tmp_path: Path, monkeypatch) -> None:  # noqa: ANN001
    _, path, _ = served_imagenet
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("NST_LESSONS_WEIGHTS_MIRROR", f"http://127.0.0.1:{port}")
    with pytest.raises(WeightsError) as error:
        load_vgg19("imagenet", device="cpu", progress=False)
    message = str(error.value)
    assert "\n" not in message
    assert f"http://127.0.0.1:{port}/{path.name}" in message
    assert str(tmp_path / "cache" / path.name) in message
    assert "weights='random'" in message
    assert not (tmp_path / "cache").exists() or list((tmp_path / "cache").iterdir()) == []


def test_file_url_mirror(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    served = tmp_path / "mirror"
    served.mkdir()
    path = save_checkpoint(synthetic_state_dict(seed=2), served)
    monkeypatch.setitem(vgg.CHECKPOINTS, ("vgg19", "caffe"), (path.name, "https://example.invalid/" + path.name))
    monkeypatch.setenv("NST_LESSONS_WEIGHTS_MIRROR", served.as_uri())
    monkeypatch.setenv("NST_LESSONS_HOME", str(tmp_path / "cache"))
    model = load_vgg19("caffe", device="cpu", progress=False)
    assert model.preprocessing == "caffe" and model.weights == "caffe"
