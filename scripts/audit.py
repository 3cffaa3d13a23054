"""``make audit``: pip-audit over the pinned requirements and the virtualenv itself, saying plainly
when the advisory data could not be reached.

pip-audit prints "No known vulnerabilities found" and exits 0 even when it could not look a
single package up (e.g. PyPI's JSON API unreachable: every dependency is then "skipped"). This
wrapper reads its JSON report instead and answers:

* exit 0: every package was looked up and none has a known vulnerability;
* exit 1: known vulnerabilities (listed, with the fixed versions);
* exit 3: the advisory data was not reachable for some or all packages: **not audited**
  (listed), which is never reported as a pass.

``PIP_AUDIT`` names another pip-audit executable (default: the one beside this Python);
``PIP_AUDIT_SERVICE=osv`` asks OSV (https://api.osv.dev) instead of PyPI.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

NOT_AUDITED = 3


def pip_audit_command() -> list[str]:
    """The pip-audit executable to run."""
    explicit = os.environ.get("PIP_AUDIT")
    if explicit:
        return [explicit]
    beside = Path(sys.executable).with_name("pip-audit")
    return [str(beside)] if beside.exists() else [sys.executable, "-m", "pip_audit"]


def run_audit(args: list[str], what: str) -> tuple[list[str], list[str], str | None]:
    """Run pip-audit with ``args``; (vulnerabilities, packages not audited, error) as lines."""
    command = [*pip_audit_command(), *args, "--format", "json", "--progress-spinner", "off", "--timeout", "15"]
    if os.environ.get("PIP_AUDIT_SERVICE"):
        command += ["--vulnerability-service", os.environ["PIP_AUDIT_SERVICE"]]
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=1800)
    except FileNotFoundError:
        return [], [], f"pip-audit is not installed in this environment: `{sys.executable} -m pip install pip-audit`"
    except subprocess.TimeoutExpired:
        return [], [], f"pip-audit did not finish auditing {what} in 30 minutes"
    try:
        report = json.loads(result.stdout)
    except json.JSONDecodeError:
        reason = (result.stderr.strip().splitlines() or ["no output"])[-1]
        return [], [], f"pip-audit could not audit {what} (exit {result.returncode}): {reason}"
    dependencies = report.get("dependencies", []) if isinstance(report, dict) else report
    vulnerable, skipped = [], []
    for dep in dependencies:
        if dep.get("skip_reason"):
            skipped.append(f"{dep['name']}: {dep['skip_reason']}")
            continue
        for vuln in dep.get("vulns", []):
            fixed = ", ".join(vuln.get("fix_versions") or []) or "no fixed version yet"
            vulnerable.append(f"{dep['name']} {dep.get('version', '?')}: {vuln.get('id')} (fixed in {fixed})")
    return vulnerable, skipped, None


def main(argv: list[str] | None = None) -> int:
    """Audit ``requirements.txt`` (or the files given) and this virtualenv; the exit code says the verdict."""
    argv = sys.argv[1:] if argv is None else argv
    files = argv or ["requirements.txt"]
    # Each file is named: pip-audit does not follow a file's own `-r other.txt` line.
    pins = [arg for name in files for arg in ("-r", name)]
    audits = [
        # The pins exactly as written (no resolution: the files pin what is installed).
        ([*pins, "--no-deps", "--disable-pip"], f"the pins in {', '.join(files)}"),
        # What is really installed, transitive packages, pip and setuptools included.
        (["--local"], f"the virtualenv {sys.prefix}"),
    ]
    any_vulnerable = any_unaudited = False
    for args, what in audits:
        vulnerable, skipped, error = run_audit(args, what)
        if error:
            any_unaudited = True
            print(f"NOT AUDITED: {error}")
            continue
        if vulnerable:
            any_vulnerable = True
            print(f"Known vulnerabilities in {what}:")
            print("\n".join(f"  {line}" for line in vulnerable))
        if skipped:
            any_unaudited = True
            print(
                f"NOT AUDITED: the advisory data could not be reached for {len(skipped)} package(s) of {what}; "
                "they were not checked (pip-audit needs https://pypi.org/pypi/<name>/<version>/json, or "
                "PIP_AUDIT_SERVICE=osv and https://api.osv.dev). First ones:"
            )
            print("\n".join(f"  {line}" for line in skipped[:10]))
        if not vulnerable and not skipped:
            print(f"Audited {what}: no known vulnerabilities.")
    if any_vulnerable:
        return 1
    if any_unaudited:
        print(
            "Result: the dependencies were NOT (fully) audited. Run `make audit` where the advisory data is reachable."
        )
        return NOT_AUDITED
    return 0


if __name__ == "__main__":
    sys.exit(main())
