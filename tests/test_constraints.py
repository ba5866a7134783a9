"""envs/constraints.txt: every dependency pyproject.toml names is pinned there, within its range."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[1]


def _pins() -> dict[str, str]:
    pins: dict[str, str] = {}
    for number, line in enumerate((REPO / "envs" / "constraints.txt").read_text().splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        m = re.fullmatch(r"([A-Za-z0-9._-]+)==([^\s;]+)", line.strip())
        assert m, f"envs/constraints.txt:{number}: not a name==version pin: {line!r}"
        name = canonicalize_name(m[1])
        assert name not in pins, f"envs/constraints.txt:{number}: {m[1]} pinned twice"
        pins[name] = m[2]
    return pins


def _requirements() -> list[Requirement]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    names = project["dependencies"] + [r for extra in project["optional-dependencies"].values() for r in extra]
    return [Requirement(r) for r in names]


def test_every_dependency_is_pinned_within_its_range() -> None:
    pins = _pins()
    assert "dfer" not in pins  # the project itself is installed editable, never pinned
    for req in _requirements():
        name = canonicalize_name(req.name)
        assert name in pins, f"{req.name} (pyproject.toml) has no pin in envs/constraints.txt: run `make lock`"
        assert req.specifier.contains(pins[name], prereleases=True), (
            f"envs/constraints.txt pins {req.name}=={pins[name]}, outside pyproject.toml's {req}: run `make lock`")


def test_the_pins_hold_the_torch_builds_this_machine_serves() -> None:
    pins = _pins()
    assert (pins["torch"], pins["torchvision"]) == ("2.14.1", "0.29.1")
    assert "opencv-python-headless" in pins  # the package whose versions moved the demo data


def test_make_venv_installs_with_the_pins() -> None:
    makefile = (REPO / "Makefile").read_text()
    rule = re.search(r"^\$\(VENV\)/\.installed: (.*)\n((?:\t.*\n)+)", makefile, flags=re.M)
    assert rule and "envs/constraints.txt" in rule[1].split()  # a new pin rebuilds .venv
    assert "pip install -c envs/constraints.txt -e '.[dev]'" in rule[2]
