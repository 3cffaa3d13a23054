"""`make audit` says plainly when the advisory data cannot be reached (as here) and never reports
that as a pass; `make setup` upgrades pip and setuptools in the venv (issue 19, point 6).

pip-audit is replaced by a fake that prints the JSON report pip-audit gives in each situation
(the real one would need PyPI's JSON API, which tests must not reach)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

PROJECT_DIR = Path(__file__).resolve().parents[2]
SKIPPED = {"dependencies": [{"name": "apache-airflow", "skip_reason": "Dependency not found on PyPI and could not be "
                                                                      "audited: apache-airflow (3.3.2)"},
                            {"name": "httpx", "skip_reason": "Dependency not found on PyPI and could not be audited: "
                                                             "httpx (0.28.1)"}], "fixes": []}  # fmt: skip
VULNERABLE = {"dependencies": [{"name": "setuptools", "version": "65.5.0", "vulns": [
    {"id": "PYSEC-2022-43012", "fix_versions": ["65.5.1"], "aliases": ["CVE-2022-40897"], "description": "ReDoS"}]},
    {"name": "httpx", "version": "0.28.1", "vulns": []}], "fixes": []}  # fmt: skip
CLEAN = {"dependencies": [{"name": "httpx", "version": "0.28.1", "vulns": []}], "fixes": []}


def _audit(tmp_path: Path, report: dict | None, exit_code: int = 0, stderr: str = "",
           files: tuple[str, ...] = ("requirements.txt",)) -> subprocess.CompletedProcess:  # fmt: skip
    fake = tmp_path / "pip-audit"
    output = json.dumps(report) if report is not None else ""
    fake.write_text(f"#!/bin/sh\necho \"$@\" >> {tmp_path / 'calls'}\ncat <<'EOF'\n{output}\nEOF\n"
                    f"echo {stderr!r} >&2\nexit {exit_code}\n")  # fmt: skip
    fake.chmod(0o755)
    return subprocess.run(
        [sys.executable, str(PROJECT_DIR / "scripts" / "audit.py"), *files],
        capture_output=True, text=True, cwd=PROJECT_DIR, env={**os.environ, "PIP_AUDIT": str(fake)},
    )  # fmt: skip


def test_unreachable_advisory_data_is_said_plainly_and_is_not_a_pass(tmp_path):
    # What pip-audit reports here: every package skipped, and "No known vulnerabilities found", exit 0.
    result = _audit(tmp_path, SKIPPED, exit_code=0, stderr="No known vulnerabilities found")
    assert result.returncode == 3
    assert "NOT AUDITED: the advisory data could not be reached for 2 package(s) of the pins in requirements.txt" in (
        result.stdout
    )
    assert "apache-airflow: Dependency not found on PyPI" in result.stdout
    assert "the dependencies were NOT (fully) audited" in result.stdout
    assert "no known vulnerabilities" not in result.stdout.lower()
    calls = (tmp_path / "calls").read_text().splitlines()
    assert calls[0].startswith("-r requirements.txt --no-deps --disable-pip --format json")
    assert calls[1].startswith("--local --format json")


def test_pip_audit_failing_outright_is_not_a_pass(tmp_path):
    result = _audit(tmp_path, None, exit_code=1, stderr="ConnectionError: Max retries exceeded with url")
    assert result.returncode == 3
    assert "NOT AUDITED: pip-audit could not audit the pins in requirements.txt (exit 1): ConnectionError" in (
        result.stdout
    )


def test_known_vulnerabilities_are_listed_and_fail(tmp_path):
    result = _audit(tmp_path, VULNERABLE)
    assert result.returncode == 1
    assert "setuptools 65.5.0: PYSEC-2022-43012 (fixed in 65.5.1)" in result.stdout


def test_a_clean_audit_passes(tmp_path):
    result = _audit(tmp_path, CLEAN)
    assert result.returncode == 0, result.stdout
    assert result.stdout.count("no known vulnerabilities") == 2


def test_production_and_dev_pins_are_both_audited(tmp_path):
    # pip-audit ignores the `-r requirements.txt` line inside requirements-dev.txt: both are named.
    result = _audit(tmp_path, CLEAN, files=("requirements.txt", "requirements-dev.txt"))
    assert result.returncode == 0, result.stdout
    calls = (tmp_path / "calls").read_text().splitlines()
    assert calls[0].startswith("-r requirements.txt -r requirements-dev.txt --no-deps --disable-pip")
    assert "the pins in requirements.txt, requirements-dev.txt" in result.stdout
    make = subprocess.run(["make", "-n", "audit", f"VENV={tmp_path / 'venv'}"], capture_output=True, text=True,
                          cwd=PROJECT_DIR, check=True).stdout  # fmt: skip
    assert "scripts/audit.py requirements.txt requirements-dev.txt" in make


@pytest.mark.parametrize("target", ["setup", "test"])
def test_setup_upgrades_pip_and_setuptools_in_the_venv(tmp_path, target):
    venv = tmp_path / "venv"
    # A venv whose requirements are installed (the stamp is newer than requirements.txt).
    (venv / "bin").mkdir(parents=True)
    (venv / ".installed").touch()
    os.utime(venv / ".installed", (2**31 - 1, 2**31 - 1))
    result = subprocess.run(["make", "-n", target, f"VENV={venv}", f"AIRFLOW_HOME={tmp_path / 'af'}"],
                            capture_output=True, text=True, cwd=PROJECT_DIR, check=True)  # fmt: skip
    upgrade = f'{venv}/bin/pip install --quiet --upgrade "pip>=25.3" "setuptools>=78.1.1,<81"'
    if target == "setup":
        assert upgrade in result.stdout.splitlines()  # an existing venv gets the fixed tools too
    # A new venv upgrades them before installing the requirements.
    fresh = subprocess.run(["make", "-n", target, f"VENV={tmp_path / 'new'}", f"AIRFLOW_HOME={tmp_path / 'af'}"],
                           capture_output=True, text=True, cwd=PROJECT_DIR, check=True).stdout.splitlines()  # fmt: skip
    new_upgrade = upgrade.replace(str(venv), str(tmp_path / "new"))
    assert fresh.index(new_upgrade) < fresh.index(f"{tmp_path / 'new'}/bin/pip install --quiet -r requirements-dev.txt")
