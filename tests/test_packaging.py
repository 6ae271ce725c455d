"""The conda environment, pyproject.toml and the README's commands agree."""

from __future__ import annotations

import re
import subprocess
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CONDA_NAMES = {"pytorch": "torch", "opencv": "opencv-python-headless", "pysoundfile": "soundfile"}  # conda's name -> pip's


def _requirement(text: str) -> tuple[str, str]:
    name, spec = re.match(r"\s*([A-Za-z0-9_.\-]+)\s*(.*)", text).groups()
    return CONDA_NAMES.get(name.lower(), name.lower()), spec.replace(" ", "")


def test_environment_yml_lists_the_same_packages_as_pyproject() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pip = dict(_requirement(r) for r in project["dependencies"] + project["optional-dependencies"]["dev"])
    dependencies = (ROOT / "environment.yml").read_text().split("dependencies:")[1]
    conda_lines = re.findall(r"^  - ([^\s:][^\n]*)$", dependencies, flags=re.M)
    conda = dict(_requirement(line) for line in conda_lines if not line.startswith(("python", "pip")))
    assert conda == pip


def test_torch_pin_stays_below_the_cuda_download() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    torch = dict(_requirement(r) for r in project["dependencies"])["torch"]
    assert "<2.14" in torch.split(",")


def test_ci_runs_the_readme_commands() -> None:
    readme = (ROOT / "README.md").read_text()
    out = subprocess.run(["bash", "-c", f"source <(sed -n '/^block()/,/^}}/p' {ROOT / '.ci/run'}); cd {ROOT}; block setup; echo ---; block test"],
                         capture_output=True, text=True, check=True).stdout  # fmt: skip
    setup, test = (part.strip() for part in out.split("---"))
    assert setup == 'python3.11 -m venv .venv && .venv/bin/pip install -e ".[dev]"'
    assert test == ".venv/bin/python -m pytest"
    # The README shows them first, before anything else a newcomer must read.
    assert readme.index(setup) < readme.index(test) < readme.index("nst-lessons transfer")
