"""Packaging: one version source, the wheel's metadata (extras, py.typed), the pins the installs use."""

import importlib.metadata as md
import pathlib
import re
import tomllib

import pyluz
from pyluz import _version

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_the_version_is_written_once_and_the_r_package_agrees():
    description = (ROOT / "rpkg" / "DESCRIPTION").read_text()
    r_version = re.search(r"^Version:\s*(\S+)$", description, re.M).group(1)
    assert pyluz.__version__ == _version.__version__ == r_version
    # the installed metadata (what pip and install_pyluz() see) comes from the same place
    assert md.version("pyluz") == pyluz.__version__
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "version" not in project["project"] and project["project"]["dynamic"] == ["version"]
    assert project["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "pyluz._version.__version__"}
    # no other file of the package writes a version literal of its own
    literals = [
        p.relative_to(ROOT)
        for p in (ROOT / "pyluz").rglob("*.py")
        if p.name != "_version.py" and re.search(r"^__version__\s*=", p.read_text(), re.M)
    ]
    assert literals == []


def test_the_wheel_declares_its_extras_and_ships_py_typed():
    meta = md.metadata("pyluz")
    assert set(meta.get_all("Provides-Extra")) == {"r", "tensorboard", "torchmetrics", "test", "lint"}
    requires = meta.get_all("Requires-Dist")
    assert 'torchmetrics; extra == "torchmetrics"' in requires and 'rpy2>=3.5.17; extra == "r"' in requires
    assert (pathlib.Path(pyluz.__file__).parent / "py.typed").is_file()
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "py.typed" in project["tool"]["setuptools"]["package-data"]["pyluz"]


def test_constraints_pin_the_machine_and_only_pin():
    lines = [re.sub(r"\s*#.*$", "", line).strip() for line in (ROOT / "constraints.txt").read_text().splitlines()]
    pins = {re.match(r"[A-Za-z0-9_.-]+", line).group(0): line for line in lines if line}
    assert pins["torch"] == "torch==2.13.0" and pins["numpy"] == "numpy<2" and pins["rpy2"] == "rpy2==3.5.17"
    # every pinned package is one pyluz (or one of its extras) names, so the pins never add packages
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = project["dependencies"] + [r for extra in project["optional-dependencies"].values() for r in extra]
    names = {re.match(r"[A-Za-z0-9_.-]+", r).group(0) for r in declared}
    assert set(pins) <= names
    # the installed versions follow the pins
    assert md.version("torch").split("+")[0] == "2.13.0" and int(md.version("numpy").split(".")[0]) < 2
