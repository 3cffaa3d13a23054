"""Data-quality checks with Great Expectations 1.x, used directly (not the GX provider).

A suite is data: a JSON file in ``include/config/quality/`` listing expectations by their
GX names with their keyword arguments, e.g.::

    {"name": "lead_file",
     "expectations": [
        {"type": "expect_table_row_count_to_be_between", "kwargs": {"min_value": 1}},
        {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "Email", "mostly": 0.95}}]}

:func:`validate_dataframe` runs a suite on a pandas DataFrame and returns a
:class:`QualityResult` (JSON-serializable summary, per-expectation outcomes) that
:func:`render_html` turns into a report a person can open. Great Expectations and pandas
are imported on first use, so importing this module stays cheap. :mod:`hotcrm.quality.worker`
runs a suite in a child process that imports GX while the caller does other work.
"""

from __future__ import annotations

import html
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from hotcrm.settings import CONFIG_DIR, read_json_file

QUALITY_CONFIG_DIR = CONFIG_DIR / "quality"


@dataclass
class ExpectationOutcome:
    """One expectation's result, in plain terms."""

    type: str
    kwargs: dict[str, Any]
    success: bool
    observed: dict[str, Any] = field(default_factory=dict)

    def describe(self) -> str:
        """One line a person can read: what was expected and what was seen."""
        column = self.kwargs.get("column")
        target = f" on {column}" if column else ""
        seen = ", ".join(f"{k}={v}" for k, v in self.observed.items())
        return f"{'passed' if self.success else 'FAILED'}: {self.type}{target} ({seen})"


@dataclass
class QualityResult:
    """A suite's verdict on one batch of data."""

    suite: str
    success: bool
    outcomes: list[ExpectationOutcome]
    statistics: dict[str, Any]

    @property
    def failures(self) -> list[ExpectationOutcome]:
        """The expectations that failed."""
        return [o for o in self.outcomes if not o.success]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serializable form, kept beside reports and manifests."""
        return asdict(self)

    def summary(self) -> str:
        """A short verdict, naming each failed expectation."""
        if self.success:
            return f"suite {self.suite!r} passed ({len(self.outcomes)} expectations)"
        return f"suite {self.suite!r} failed: " + "; ".join(o.describe() for o in self.failures)


_OBSERVED_KEYS = ("observed_value", "element_count", "unexpected_count", "unexpected_percent", "missing_count")


def load_suite(name: str, config_dir: Path = QUALITY_CONFIG_DIR) -> dict[str, Any]:
    """The suite ``name`` from ``include/config/quality/<name>.json``."""
    path = config_dir / f"{name}.json"
    suite = read_json_file(path, "quality suite", hint=f"suites live in {config_dir}")
    if not isinstance(suite.get("expectations"), list):
        raise ValueError(f"{path}: a suite needs an 'expectations' list")
    return suite


def _expectation_class(type_name: str):
    import great_expectations as gx

    class_name = "".join(part.capitalize() for part in type_name.split("_"))
    cls = getattr(gx.expectations, class_name, None)
    if cls is None:
        raise ValueError(f"unknown expectation type {type_name!r} (no gx.expectations.{class_name})")
    return cls


def validate_dataframe(df, suite_name: str, expectations: list[dict[str, Any]]) -> QualityResult:
    """Run the expectations on ``df`` with an ephemeral GX context and return the verdict."""
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
    import great_expectations as gx

    context = gx.get_context(mode="ephemeral")
    _quiet_progress_bars(context)
    batch_definition = (
        context.data_sources.add_pandas("hotcrm")
        .add_dataframe_asset(suite_name)
        .add_batch_definition_whole_dataframe("whole")
    )
    suite = gx.ExpectationSuite(name=suite_name)
    for spec in expectations:
        suite.add_expectation(_expectation_class(spec["type"])(**spec.get("kwargs", {})))
    suite = context.suites.add(suite)
    raw = batch_definition.get_batch(batch_parameters={"dataframe": df}).validate(suite).to_json_dict()
    outcomes = []
    for item in raw["results"]:
        config = item["expectation_config"]
        kwargs = {k: v for k, v in config.get("kwargs", {}).items() if k != "batch_id"}
        observed = {k: item["result"][k] for k in _OBSERVED_KEYS if k in item.get("result", {})}
        if "unexpected_percent" in observed and observed["unexpected_percent"] is not None:
            observed["unexpected_percent"] = round(float(observed["unexpected_percent"]), 3)
        outcomes.append(ExpectationOutcome(config["type"], kwargs, bool(item["success"]), observed))
    return QualityResult(suite_name, bool(raw["success"]), outcomes, dict(raw.get("statistics", {})))


def _quiet_progress_bars(context) -> None:
    try:
        from great_expectations.data_context.types.base import ProgressBarsConfig

        context.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
    except Exception:  # noqa: S110 - cosmetic only; older/newer GX may lack the setting
        pass


_REPORT_STYLE = """body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}
td,th{border:1px solid #ccc;padding:4px 8px;text-align:left}
.ok{background:#eaffea}.fail{background:#ffecec}"""


def html_page(title: str, body: str) -> str:
    """A self-contained HTML page in the reports' style: ``title`` is plain text (escaped
    here), ``body`` is HTML the caller has escaped."""
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>{_REPORT_STYLE}</style>
</head><body>{body}
</body></html>
"""


def render_section(result: QualityResult, heading: str) -> str:
    """A result as HTML to put in a page: the heading, the verdict and one row per expectation
    (every value escaped)."""
    esc = html.escape
    rows = "\n".join(
        f"<tr class='{'ok' if o.success else 'fail'}'><td>{'✔' if o.success else '✘'}</td>"
        f"<td>{esc(o.type)}</td><td>{esc(json.dumps(o.kwargs, default=str))}</td>"
        f"<td>{esc(json.dumps(o.observed, default=str))}</td></tr>"
        for o in result.outcomes
    )
    verdict = "passed" if result.success else "FAILED"
    return f"""<h1>{esc(heading)}</h1>
<p>Suite <b>{esc(result.suite)}</b>: <b>{verdict}</b>
({result.statistics.get("successful_expectations", "?")} of {result.statistics.get("evaluated_expectations", "?")}
expectations met)</p>
<table><tr><th></th><th>expectation</th><th>arguments</th><th>observed</th></tr>
{rows}
</table>"""


def render_html(result: QualityResult, title: str | None = None) -> str:
    """A self-contained HTML report of a result (every value escaped)."""
    heading = title or f"Data quality: {result.suite}"
    return html_page(heading, render_section(result, heading))
