"""requirements.txt holds what production needs, requirements-dev.txt adds the test and dev tools,
and every pin is the version installed beside apache-airflow (issue 17: the image must not ship
pytest, moto, schemathesis or ruff)."""

from __future__ import annotations

import re
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import pytest

PROJECT_DIR = Path(__file__).resolve().parents[2]
PIN = re.compile(r"^([A-Za-z0-9_.-]+)(?:\[[^\]]*\])?==([^\s#;]+)")
# Test runners, emulators, SDKs used only to check our signatures, lint and audit tools.
DEV_ONLY = {
    "pytest", "pytest-timeout", "pytest-xdist", "playwright", "hypothesis", "moto", "aiosmtpd", "trustme",
    "pip-audit", "schemathesis", "stripe", "standardwebhooks", "svix", "ruff", "jsonschema",
}  # fmt: skip


def _pins(name: str) -> dict[str, str]:
    """``{package: version}`` of the ``==`` pins in a requirements file (not following ``-r``)."""
    pins = {}
    for number, line in enumerate((PROJECT_DIR / name).read_text().splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#") or line.startswith("-r "):
            continue
        match = PIN.match(line)
        assert match, f"{name}:{number}: {line!r} is not pinned with =="
        pins[match.group(1).lower()] = match.group(2)
    return pins


def test_production_requirements_hold_no_test_or_dev_tool():
    assert not DEV_ONLY & set(_pins("requirements.txt"))
    assert "apache-airflow" in _pins("requirements.txt")


def test_dev_requirements_include_production_and_the_test_tools():
    lines = (PROJECT_DIR / "requirements-dev.txt").read_text().splitlines()
    assert "-r requirements.txt" in lines
    dev = _pins("requirements-dev.txt")
    assert {"pytest", "moto", "schemathesis", "ruff", "playwright", "pip-audit", "stripe"} <= set(dev)
    assert not set(dev) & set(_pins("requirements.txt")), "a package is pinned in both files"


def test_the_dockerfile_installs_production_requirements_only():
    lines = [line for line in (PROJECT_DIR / "Dockerfile").read_text().splitlines() if not line.startswith("#")]
    installs = [line for line in lines if "pip install" in line]
    requirements = [line for line in installs if "--no-deps" not in line]  # (the hotcrm package itself)
    assert requirements and all(line.endswith("-r /requirements.txt") for line in requirements), installs
    assert all(line.endswith("--no-deps -e /opt/airflow") for line in installs if line not in requirements)
    assert not any("requirements-dev" in line for line in lines)


@pytest.mark.parametrize("name", ["requirements.txt", "requirements-dev.txt"])
def test_every_pin_is_the_installed_version(name):
    # The venv is resolved with apache-airflow's own requirements (`pip check` clean), so a pin that
    # drifts from it would install something this suite never ran against.
    wrong = {}
    for package, pinned in _pins(name).items():
        try:
            installed = version(package)
        except PackageNotFoundError:
            installed = None
        if installed != pinned:
            wrong[package] = (pinned, installed)
    assert not wrong, f"{name}: pinned vs installed: {wrong}"
