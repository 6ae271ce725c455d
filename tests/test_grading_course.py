"""The nst_controls and nst_video assignments: the instructor's solutions pass the public and hidden
cases, each typical mistake gets its own message (the forward warp, YUV for YIQ, the mask applied
twice, ...), and ``nst-lessons grade`` gives the instructor notebooks full marks and the student
notebooks zero."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from nst_lessons.cli import main
from nst_lessons.grading import CheckFailed, check
from nst_lessons.grading.cases import ASSIGNMENTS, make_cases
from nst_lessons.grading.checks import NOT_ANSWERED, PARTS, POINTS, judge
from nst_lessons.grading.notebooks import answer_cells, assignment_of, read_notebook, source_problems
from test_grading_checks import edit, verdicts  # the same editing and judging as for nst_gradients

COURSE = Path(__file__).parents[1] / "notebooks/exercises"
NEW = ("nst_controls", "nst_video")


def _solutions(assignment: str) -> dict[str, str]:
    path = COURSE / "source" / assignment / f"{assignment}.ipynb"
    return dict(answer_cells(read_notebook(path.read_bytes(), path.name)))


SOLUTIONS = {**_solutions("nst_controls"), **_solutions("nst_video")}

# (exercise, text in the solution, what replaces it, words the verdict of each listed part must contain)
MISTAKES = [
    # nst_controls
    ("rgb_to_yiq", "[0.5959, -0.2746, -0.3213], [0.2115, -0.5227, 0.3112]",
     "[-0.147 * 0 + 0.492 * (-0.299), 0.492 * (-0.587), 0.492 * (1 - 0.114)], [0.877 * (1 - 0.299), 0.877 * (-0.587), 0.877 * (-0.114)]",
     {"RGB -> YIQ": "is YUV"}),
    ("rgb_to_yiq", '"ij,jhw->ihw", M, x', '"ji,jhw->ihw", M, x', {"RGB -> YIQ": "transposed matrix"}),
    ("rgb_to_yiq", "[0.5959, -0.2746, -0.3213], [0.2115, -0.5227, 0.3112]", "[0.596, -0.274, -0.322], [0.211, -0.523, 0.312]",
     {"RGB -> YIQ": "three-digit rounding"}),
    ("rgb_to_yiq", 'return np.einsum("ij,jhw->ihw", M, x)', "return np.einsum('ij,hwj->hwi', M, x.transpose(1, 2, 0))",
     {"RGB -> YIQ": "the channels come first"}),
    ("yiq_to_rgb", "np.linalg.inv(M), x", "M.T, x", {"YIQ -> RGB": "the inverse of the YIQ matrix is not its transpose"}),
    ("yiq_to_rgb", "np.linalg.inv(M), x", "M, x", {"YIQ -> RGB": "applies the RGB -> YIQ matrix again"}),
    ("match_luminance", "L_C.std() / L_S.std()", "L_S.std() / L_C.std()", {"L_S'": "scales by sigma_S / sigma_C"}),
    ("match_luminance", "L_C.std() / L_S.std() * ", "", {"L_S'": "keeps the style's contrast"}),
    ("match_luminance", "L_C.std() / L_S.std()", "L_C.std(ddof=1) / L_S.std(ddof=1)", {"L_S'": "sample standard deviation"}),
    ("match_luminance", "+ L_C.mean()", "+ L_S.mean()", {"L_S'": "keeps the style's mean"}),
    ("match_luminance", "return L_C.std() / L_S.std() * (L_S - L_S.mean()) + L_C.mean()",
     "return L_S.std() / L_C.std() * (L_C - L_C.mean()) + L_S.mean()", {"L_S'": "the style's luminance L_S is the one that is moved"}),
    ("match_color_cholesky", "np.linalg.cholesky(Sigma_C) @ np.linalg.inv(np.linalg.cholesky(Sigma_S))",
     "np.linalg.cholesky(Sigma_C).T @ np.linalg.inv(np.linalg.cholesky(Sigma_S).T)", {"x' with A = L_C L_S^-1": "upper-triangular factors"}),
    ("match_color_cholesky", "np.linalg.cholesky(Sigma_C) @ np.linalg.inv(np.linalg.cholesky(Sigma_S))",
     "np.linalg.cholesky(Sigma_S) @ np.linalg.inv(np.linalg.cholesky(Sigma_C))", {"x' with A = L_C L_S^-1": "swaps the covariances"}),
    ("match_color_cholesky", ("/ S.shape[1]", "/ C.shape[1]"), ("/ (S.shape[1] - 1)", "/ (C.shape[1] - 1)"),
     {"x' with A = L_C L_S^-1": "sample covariance"}),
    ("match_color_cholesky", "(A @ (S - mu_S) + mu_C)", "(A @ (S - mu_S) + mu_S)", {"x' with A = L_C L_S^-1": "keeps the source's mean colour"}),
    ("match_color_cholesky", "(A @ (S - mu_S) + mu_C)", "(A @ S + mu_C)", {"x' with A = L_C L_S^-1": "without subtracting mu_S"}),
    ("match_color_pca", "A = (V_C * np.sqrt(lam_C)) @ V_C.T @ (V_S / np.sqrt(lam_S)) @ V_S.T",
     "A = (V_S / np.sqrt(lam_S)) @ V_S.T @ (V_C * np.sqrt(lam_C)) @ V_C.T", {"x' with A = Sigma_C^1/2 Sigma_S^-1/2": "wrong order"}),
    ("match_color_pca", "A = (V_C * np.sqrt(lam_C)) @ V_C.T @ (V_S / np.sqrt(lam_S)) @ V_S.T",
     "A = np.sqrt(np.abs(V_C @ np.diag(lam_C) @ V_C.T)) @ np.linalg.inv(np.sqrt(np.abs(V_S @ np.diag(lam_S) @ V_S.T)))",
     {"x' with A = Sigma_C^1/2 Sigma_S^-1/2": "square root of each entry"}),
    ("match_color_pca", "A = (V_C * np.sqrt(lam_C)) @ V_C.T @ (V_S / np.sqrt(lam_S)) @ V_S.T",
     "A = np.linalg.cholesky(V_C @ np.diag(lam_C) @ V_C.T) @ np.linalg.inv(np.linalg.cholesky(V_S @ np.diag(lam_S) @ V_S.T))",
     {"x' with A = Sigma_C^1/2 Sigma_S^-1/2": "is the Cholesky match"}),
    ("guided_gram", "(F_nm * t) @ F_nm.T", "(F_nm * t) @ (F_nm * t).T", {"G weighted by T": "applies the mask twice"}),
    ("guided_gram", "(F_nm * t) @ F_nm.T * (t.size / t.sum())", "(F_nm * t) @ (F_nm * t).T * (t.size / (t * t).sum())",
     {"G weighted by T": "Gatys et al.'s form"}),
    ("guided_gram", " * (t.size / t.sum())", "", {"G weighted by T": "missing the normalisation"}),
    ("guided_gram", " * (t.size / t.sum())", " / t.sum()", {"G weighted by T": "leaves out M_l"}),
    ("guided_gram", "(F_nm * t) @ F_nm.T", "(F_nm * np.sqrt(t)) @ F_nm.T", {"G weighted by T": "sqrt(T)"}),
    ("guided_gram", "F_nm, t = F.reshape(N, -1), T.reshape(-1)", "F_nm, t = F.reshape(N, -1), (T.reshape(-1) > 0.5).astype(float)",
     {"G weighted by T": "treats the soft mask as binary"}),
    ("guided_gram", "return (F_nm * t) @ F_nm.T", "return F_nm.T @ (F_nm * t)", {"G weighted by T": "compares positions"}),
    # nst_video
    ("warp", "np.arange(W)[None, :] + flow[..., 0]", "np.arange(W)[None, :] - flow[..., 0]", {"the warped image": "the warped image"}),
    ("warp", ("np.arange(W)[None, :] + flow[..., 0]", "np.arange(H)[:, None] + flow[..., 1]"),
     ("np.arange(W)[None, :] - flow[..., 0]", "np.arange(H)[:, None] - flow[..., 1]"), {"the warped image": "samples at q - flow(q)"}),
    ("warp", ("flow[..., 0], 0, W - 1)", "flow[..., 1], 0, H - 1)"), ("flow[..., 1], 0, W - 1)", "flow[..., 0], 0, H - 1)"),
     {"the warped image": "swaps x and y"}),
    ("warp", "fx, fy = (x - x0)[..., None], (y - y0)[..., None]", "fx, fy = np.round(x - x0)[..., None], np.round(y - y0)[..., None]",
     {"the warped image": "rounds the sample position to the nearest pixel"}),
    ("warp", "fx, fy = (x - x0)[..., None], (y - y0)[..., None]", "fx, fy = 0 * x[..., None], 0 * y[..., None]",
     {"the warped image": "the warped image"}),
    ("warp", "top = image[y0, x0] * (1 - fx) + image[y0, x0 + 1] * fx\n    bottom = image[y0 + 1, x0] * (1 - fx) + image[y0 + 1, x0 + 1] * fx\n    return top * (1 - fy) + bottom * fy",
     "top = image[y0, x0] * fx + image[y0, x0 + 1] * (1 - fx)\n    bottom = image[y0 + 1, x0] * fx + image[y0 + 1, x0 + 1] * (1 - fx)\n    return top * fy + bottom * (1 - fy)",
     {"the warped image": "swaps the bilinear weights"}),
    ("warp", "    H, W = flow.shape[:2]\n",
     "    H, W = flow.shape[:2]\n    out = np.zeros(image.shape)\n    ys, xs = np.mgrid[0:H, 0:W]\n    tx = np.rint(xs + flow[..., 0]).astype(int)\n    ty = np.rint(ys + flow[..., 1]).astype(int)\n"
     "    ok = (tx >= 0) & (tx < W) & (ty >= 0) & (ty < H)\n    out[ty[ok], tx[ok]] = image[ys[ok], xs[ok]]\n    return out\n",
     {"the warped image": "is it a forward warp"}),
    ("consistency_weights", "return (~(disoccluded | boundary | outside)).astype(float)", "return (disoccluded | boundary | outside).astype(float)",
     {"c": "the wrong way round"}),
    ("consistency_weights", "w_tilde = warp(forward, backward)", "w_tilde = forward", {"c": "at the same position"}),
    ("consistency_weights", "w_tilde = warp(forward, backward)", "w_tilde = warp(backward, forward)", {"c": "warps the wrong flow"}),
    ("consistency_weights", "~(disoccluded | boundary | outside)", "~(boundary | outside)", {"c": "never marks disocclusions"}),
    ("consistency_weights", "~(disoccluded | boundary | outside)", "~(disoccluded | outside)", {"c": "never marks motion boundaries"}),
    ("consistency_weights", "~(disoccluded | boundary | outside)", "~(disoccluded | boundary)", {"c": "lies outside the frame"}),
    ("consistency_weights", ".astype(float)", "", {"c": "boolean array"}),
    ("temporal_loss", "loss = float(np.sum(c[..., None] * d**2)) / D", "loss = float(np.sum(c[..., None] * d**2)) / (D // 3)",
     {"the loss": "divides by H W"}),
    ("temporal_loss", "loss = float(np.sum(c[..., None] * d**2)) / D", "loss = float(np.sum((c[..., None] * d) ** 2)) / D",
     {"the loss": "squares c along with the difference"}),
    ("temporal_loss", "loss = float(np.sum(c[..., None] * d**2)) / D", "loss = float(np.sum(d**2)) / D", {"the loss": "ignores c"}),
    ("temporal_loss", "loss = float(np.sum(c[..., None] * d**2)) / D", "loss = float(np.sum(c[..., None] * d**2)) / (3 * c.sum())",
     {"the loss": "divides by the weights' sum"}),
    ("temporal_loss", "return loss, 2 * c[..., None] * d / D", "return loss, c[..., None] * d / D", {"the gradient dL/dx": "is half"}),
    ("temporal_loss", "return loss, 2 * c[..., None] * d / D", "return loss, -2 * c[..., None] * d / D", {"the gradient dL/dx": "wrong sign"}),
    ("temporal_loss", "return loss, 2 * c[..., None] * d / D", "return loss, 2 * c[..., None] ** 2 * d / D", {"the gradient dL/dx": "has c^2"}),
    ("temporal_loss", "d = x - warped", "x -= warped\n    d = x",
     {"the loss": "changed its input x in place", "the gradient dL/dx": "changed its input x in place"}),
]


def define(name: str, source: str) -> object:
    """The function an answer cell defines, with the earlier answers of its assignment it may call."""
    exercises = next(e for e in ASSIGNMENTS.values() if name in e)
    namespace: dict[str, object] = {}
    exec("import numpy as np", namespace)
    for grade_id in exercises[: exercises.index(name)]:
        exec(SOLUTIONS[grade_id], namespace)
    exec(source, namespace)
    return namespace[name]


@pytest.mark.parametrize("name", [*ASSIGNMENTS["nst_controls"], *ASSIGNMENTS["nst_video"]])
def test_solutions_pass_public_and_hidden_cases(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    fn = define(name, SOLUTIONS[name])
    check(name, fn)
    assert f"✓ {name}: all checks passed" in capsys.readouterr().out
    assert verdicts(name, fn, hidden=True) == {part.title: None for part in PARTS[name]}


@pytest.mark.parametrize(("name", "old", "new", "expected"), MISTAKES, ids=[f"{m[0]}-{i}" for i, m in enumerate(MISTAKES)])
def test_each_typical_mistake_gets_its_message(name: str, old: str, new: str, expected: dict) -> None:
    fn = define(name, edit(SOLUTIONS[name], old, new))
    for hidden in (False, True):
        got = verdicts(name, fn, hidden)
        for title, problem in got.items():
            if title not in expected:
                assert problem is None, (title, problem)
            else:
                assert problem is not None and expected[title] in problem, (hidden, title, problem)
    with pytest.raises(CheckFailed) as failure:
        check(name, fn)
    assert f"✗ {name}:" in str(failure.value)


def test_consistency_weights_is_judged_with_the_reference_warp() -> None:
    # A broken warp (exercise 1) costs nothing in exercise 2, which calls it.
    namespace: dict[str, object] = {}
    exec("import numpy as np", namespace)
    exec(edit(SOLUTIONS["warp"], "+ flow[..., 0]", "- flow[..., 0]"), namespace)
    exec(SOLUTIONS["consistency_weights"], namespace)
    assert verdicts("consistency_weights", namespace["consistency_weights"], hidden=True) == {"c": None}


def test_the_cases_exercise_every_test_of_c() -> None:
    from nst_lessons.grading.checks import _consistency_parts
    from nst_lessons.scratch.warping import warp

    for case in make_cases("consistency_weights", hidden=False) + make_cases("consistency_weights", hidden=True):
        forward, backward = case.args["forward"], case.args["backward"]
        parts = _consistency_parts(forward, backward, warp(forward, backward))
        alone = {name: m & ~np.any([o for other, o in parts.items() if other != name], axis=0) for name, m in parts.items()}
        assert all(m.any() for m in alone.values()), {name: int(m.sum()) for name, m in alone.items()}


def test_the_assignments_are_complete_and_found_from_their_cells() -> None:
    assert sum(POINTS[name] for name in ASSIGNMENTS["nst_controls"]) == 10
    assert sum(POINTS[name] for name in ASSIGNMENTS["nst_video"]) == 10
    for assignment in ASSIGNMENTS:
        path = COURSE / "source" / assignment / f"{assignment}.ipynb"
        nb = read_notebook(path.read_bytes(), path.name)
        assert source_problems(nb, assignment) == [] and assignment_of(nb) == assignment
        assert any("belongs to another assignment" in p for p in source_problems(nb, next(a for a in ASSIGNMENTS if a != assignment)))


@pytest.mark.parametrize("assignment", NEW)
def test_nst_lessons_grade_gives_full_marks_and_zero(
    assignment: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for version, score in (("source", 10), ("release", 0)):
        results = tmp_path / f"{version}.json"
        notebook = COURSE / version / assignment / f"{assignment}.ipynb"
        assert main(["grade", str(notebook), "--results", str(results)]) == 0
        data = json.loads(results.read_text())
        assert data["score"] == score and f"({assignment}): {score} / 10 points" in data["output"]
        assert [t["name"].split(":")[0] for t in data["tests"]] == [n for n in ASSIGNMENTS[assignment] for _ in PARTS[n]]
        if version == "release":
            assert all(t["output"] == NOT_ANSWERED for t in data["tests"])
    assert f"{assignment}.ipynb ({assignment}): 10 / 10 points" in capsys.readouterr().out


def test_grading_as_another_assignment_scores_nothing(tmp_path: Path) -> None:
    results = tmp_path / "r.json"
    notebook = COURSE / "source/nst_video/nst_video.ipynb"
    assert main(["grade", str(notebook), "--assignment", "nst_controls", "--results", str(results)]) == 0
    data = json.loads(results.read_text())
    assert data["score"] == 0 and "no answer cell for rgb_to_yiq" in data["tests"][0]["output"]


def test_the_reference_warp_is_the_packages_warp_in_float64() -> None:
    from nst_lessons import video
    from nst_lessons.grading.cases import smooth_flow
    from nst_lessons.scratch.warping import warp

    rng = np.random.default_rng(5)
    image = rng.uniform(size=(20, 30, 3)).astype(np.float32)
    flow = smooth_flow(rng, 20, 30, shift=4.0, wave=3.0).astype(np.float32)  # reaches outside the frame
    assert np.abs(warp(image, flow) - video.warp(image, flow)).max() < 1e-5  # OpenCV is exact to float32 here
    shift = np.zeros((20, 30, 2))
    shift[..., 0] = 1.0
    assert np.array_equal(warp(image, shift)[:, :-1], image[:, 1:]) and np.array_equal(warp(image, shift)[:, -1], image[:, -1])
    forward, backward = -flow, flow
    assert np.array_equal(video.consistency_weights(forward, backward), video.consistency_weights(forward, backward, warp_with=warp))
