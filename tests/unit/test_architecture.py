"""The package's shape, checked on its source so it cannot regress: core never imports Airflow
or ``hotcrm.airflow``, no two core modules import each other (even inside a function), and the
HTTP modules import on their own in a fresh interpreter."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.support import imports

ADAPTER = "hotcrm.airflow"
# The HTTP app and its routers: once an import cycle (app -> receiver -> app).
HTTP_MODULES = [
    "hotcrm.api.app",
    "hotcrm.web.responses",
    "hotcrm.api.routes",
    "hotcrm.api.standalone",
    "hotcrm.webhooks.receiver",
    "hotcrm.email.pages",
    "hotcrm.ui.routes",
]


def _is_core(module: str) -> bool:
    return module != ADAPTER and not module.startswith(ADAPTER + ".")


def test_core_never_imports_airflow_or_the_adapter():
    found = [
        f"{imp.module} line {imp.line}: imports {imp.target}"
        for imp in imports.all_imports()
        if _is_core(imp.module) and (imp.target == "airflow" or imp.target.startswith(("airflow.", ADAPTER)))
    ]
    assert found == [], "core modules must take plain settings; move the Airflow part to hotcrm.airflow"


def test_core_modules_have_no_import_cycle():
    # Every import counts, also one inside a function: a deferred import hides a cycle, it does not break it.
    known = set(imports.modules())
    graph: dict[str, set[str]] = {name: set() for name in known if _is_core(name)}
    for imp in imports.all_imports():
        if imp.module in graph and imp.target in graph and imp.target != imp.module:
            graph[imp.module].add(imp.target)
    assert imports.cycles(graph) == []


def _package(module: str) -> str:
    """``hotcrm.webhooks.receiver`` -> ``hotcrm.webhooks``; a top-level module is its own."""
    return ".".join(module.split(".")[:2])


def test_core_packages_have_no_import_cycle():
    # The HTTP app (hotcrm.api) mounts the webhook receiver, the quote pages and the HotCRM
    # pages; they share hotcrm.web, never hotcrm.api. Demo steps are left out: like the app,
    # they put the whole thing together (the webhook demo serves the app).
    graph: dict[str, set[str]] = {}
    for imp in imports.all_imports():
        if not (_is_core(imp.module) and _is_core(imp.target) and imp.target.startswith("hotcrm.")):
            continue
        if imp.module.endswith(".demo"):
            continue
        source, target = _package(imp.module), _package(imp.target)
        if source != target:
            graph.setdefault(source, set()).add(target)
    assert "hotcrm.web" in graph["hotcrm.webhooks"] and "hotcrm.webhooks" in graph["hotcrm.api"]
    assert imports.cycles(graph) == []


def test_cycle_finder_finds_a_deferred_cycle():
    # The check above would have caught the old app <-> receiver cycle.
    graph = {"hotcrm.api.app": {"hotcrm.webhooks.receiver"}, "hotcrm.webhooks.receiver": {"hotcrm.api.app"}}
    assert imports.cycles(graph) == [["hotcrm.api.app", "hotcrm.webhooks.receiver"]]


def test_import_graph_sees_function_level_imports():
    found = {(i.module, i.target, i.top_level) for i in imports.all_imports()}
    # hotcrm.airflow.leads imports its Airflow exception inside a function.
    assert ("hotcrm.airflow.leads", "airflow.sdk.exceptions", False) in found


def _reads_settings(module: str) -> bool:
    """The modules where settings are read: hotcrm.settings and each capability's settings
    module; demo steps (they set up the demo's environment) and the adapter (connections)."""
    last = module.rsplit(".", 1)[-1]
    return module == "hotcrm.settings" or last in ("config", "settings", "demo") or not _is_core(module)


# Not a setting: Great Expectations is told not to phone home before it is imported.
ENVIRONMENT_WRITES = {"hotcrm.quality"}


def test_the_environment_is_read_only_in_settings_modules():
    found = [
        f"{module} line {line}"
        for module, line in imports.environment_reads()
        if not _reads_settings(module) and module not in ENVIRONMENT_WRITES
    ]
    assert found == [], "read settings in hotcrm.settings or the capability's config/settings module"


def test_environment_reads_are_found():
    modules = {module for module, _line in imports.environment_reads()}
    assert {"hotcrm.settings", "hotcrm.api.config", "hotcrm.email.settings"} <= modules


@pytest.mark.parametrize("module", HTTP_MODULES)
def test_http_module_imports_alone_in_a_fresh_interpreter(module):
    done = subprocess.run(
        [sys.executable, "-c", f"import {module}"], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr[-2000:]
