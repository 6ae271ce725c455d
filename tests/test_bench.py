"""The benchmark's FLOP count and smoke run, and the fast-path options it measures (on the CPU)."""

from __future__ import annotations

import json
import math

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from nst_lessons.bench import MODES, flops_per_evaluation, main, summary_at_512
from nst_lessons.data import example_path
from nst_lessons.transfer import CONTENT_LAYERS, STYLE_LAYERS, Objective, Speed, style_transfer
from nst_lessons.vgg import CAFFE_MEAN_BGR, IMAGENET_MEAN, VGG19

pytestmark = [pytest.mark.filterwarnings("ignore::nst_lessons.vgg.RandomWeightsWarning"), pytest.mark.usefixtures("one_thread")]


def objective(model, content_layers=CONTENT_LAYERS, style_layers=STYLE_LAYERS, size=(37, 52), **options):  # noqa: ANN001, ANN003, ANN201
    content, style = torch.rand(1, 3, *size, generator=torch.Generator().manual_seed(0)), torch.rand(1, 3, 40, 40)
    weights = {n: 1 / len(style_layers) for n in style_layers}
    return Objective(model, content, style, content_layers, weights, 1.0, 1e8, 1.0, **options), content


@pytest.mark.parametrize(
    "content_layers, style_layers", [(CONTENT_LAYERS, STYLE_LAYERS), (("relu3_1",), ("relu1_1", "conv2_2"))]
)
def test_flop_count_matches_the_operations_run(random_model, content_layers, style_layers) -> None:  # noqa: ANN001
    obj, content = objective(random_model, content_layers, style_layers)
    with FlopCounterMode(display=False) as counter:
        obj(content.clone().requires_grad_(True))
    assert counter.get_total_flops() == flops_per_evaluation(37, 52, content_layers, style_layers)
    assert 0.40e12 < flops_per_evaluation(512, 512, CONTENT_LAYERS, STYLE_LAYERS) < 0.41e12


def test_tiny_benchmark_writes_its_results(tmp_path, capsys) -> None:  # noqa: ANN001
    out = tmp_path / "bench.json"
    assert main(["--tiny", "--sizes", "32", "--warmup", "1", "--block", "1", "--check-iterations", "2", "--out", str(out)]) == 0
    assert "weights: random" in capsys.readouterr().out
    report = json.loads(out.read_text())
    assert report["random_weights"] is True and report["device"]["type"] == "cpu"
    (row,) = report["results"]
    assert row["size"] == 32 and row["gflop_per_eval"] > 0 and set(row["modes"]) == {"baseline", "fp32", "bf16"}
    assert row["skipped"] == row["failed"] == {}
    for name, mode in row["modes"].items():
        for key in ("ms_per_eval", "ms_per_eval_min", "ms_per_iteration", "ms_per_iteration_min", "iterations_per_s", "tflops", "estimated_memory_gib"):
            assert math.isfinite(mode[key]) and mode[key] > 0, (name, key)
        assert mode["ms_per_iteration_min"] <= mode["ms_per_iteration"] and mode["history_size"] == 5
        assert mode["peak_memory_gib"] is None and mode["host_syncs_per_iteration"] is None  # measured on CUDA only
        assert name == "baseline" or mode["speedup_vs_baseline"] > 0
    assert all(v > 0 for v in row["lbfgs_bookkeeping_ms"].values())
    check = report["loss_check"]
    assert check["size"] == 32 and check["fp32_loss"] > 0 and set(check["modes"]) == {"fp32-rounding", "bf16"}
    for mode in check["modes"].values():
        assert mode["loss"] > 0 and mode["within_1_percent"] == (mode["relative_difference"] <= 0.01)
    assert report["summary_at_512"] == {}  # 512 px was not run


def test_preprocessing_constants_are_made_once_per_dtype_from_the_float64_ones() -> None:
    for scheme, mean in (("imagenet", IMAGENET_MEAN), ("caffe", CAFFE_MEAN_BGR)):
        model = VGG19(preprocessing=scheme)
        for dtype in (torch.float32, torch.float64):
            image = torch.rand(2, 3, 5, 7, dtype=dtype)
            first = model.preprocess(image)
            shift = model._constants[(image.device, dtype)][0]
            assert torch.equal(model.preprocess(image), first) and model._constants[(image.device, dtype)][0] is shift
            assert shift.flatten().tolist() == torch.tensor(mean, dtype=dtype).tolist()  # no float32 detour
        assert len(model._constants) == 2


def test_features_match_the_model_in_every_mode(random_model) -> None:  # noqa: ANN001
    exact, content = objective(random_model)
    layers = [*CONTENT_LAYERS, *STYLE_LAYERS]
    reference = random_model.extract(content, layers)
    for name, F in exact.features(content, layers).items():
        assert torch.equal(F, reference[name])
    for options, tolerance in (({"channels_last": True}, 1e-4), ({"precision": "bf16"}, 0.05)):
        other, _ = objective(random_model, **options)
        for name, F in other.features(content, layers).items():
            assert F.dtype == torch.float32
            assert (F - reference[name]).norm() <= tolerance * reference[name].norm(), (options, name)
    assert next(random_model.parameters()).is_contiguous()  # channels-last worked on a copy


def test_fast_options_run_on_the_cpu() -> None:
    content, style = example_path("strokes"), example_path("waves")
    options = dict(size=32, iterations=4, network="vgg19:random", device="cpu", progress=False)
    exact = style_transfer(content, style, **options)
    fast = style_transfer(content, style, **options, speed=Speed(**MODES["bf16"]))
    assert fast.settings["precision"] == "bf16" and fast.settings["cuda_graphs"] is False  # no CUDA here
    # The same starting image scores about the same; after that the runs part ways by rounding.
    assert fast.history[0]["total"] == pytest.approx(exact.history[0]["total"], rel=0.02)
    assert fast.best_loss < 0.8 * fast.history[0]["total"]
    with pytest.raises(ValueError, match="unknown precision"):
        style_transfer(content, style, **options, speed=Speed(precision="fp16"))
    with pytest.raises(ValueError, match="cuda_graphs needs optimizer='lbfgs'"):
        style_transfer(content, style, **options, optimizer="adam", speed=Speed(cuda_graphs=True))


def test_the_summary_sets_each_fast_mode_against_the_targets() -> None:
    def mode(ms: float, speedup: float | None = None) -> dict[str, float]:
        return {"ms_per_iteration": ms, **({} if speedup is None else {"speedup_vs_baseline": speedup})}

    results = [
        {"size": 256, "modes": {"bf16": mode(1.0, 9.0)}},
        {"size": 512, "modes": {"baseline": mode(20.0), "tf32": mode(7.5, 2.67), "bf16": mode(4.0, 5.0)}},
    ]
    check = {"size": 512, "modes": {"tf32": {"within_1_percent": True}, "bf16": {"within_1_percent": False}}}
    summary = summary_at_512(results, check)
    assert summary["tf32"] == {
        "ms_per_iteration": 7.5, "meets_6_ms": False, "speedup_vs_baseline": 2.67, "at_least_2x": True,
        "loss_within_1_percent": True,
    }  # fmt: skip
    assert summary["bf16"]["meets_6_ms"] and summary["bf16"]["loss_within_1_percent"] is False
    assert summary_at_512(results, {"size": 256, "modes": {}})["bf16"]["loss_within_1_percent"] is None
