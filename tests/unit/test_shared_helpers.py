"""The shared helpers every capability uses instead of its own copy: the backoff delays, the CSV
formula escaper and the JSON config loader."""

from __future__ import annotations

import json
import random

import pytest

from hotcrm import retry, spreadsheet
from hotcrm.delivery.config import DeliveryConfig
from hotcrm.email.settings import EmailSettings
from hotcrm.leads.notices import load_recipient_rules
from hotcrm.quality import load_suite
from hotcrm.salesforce.client import RetryPolicy
from hotcrm.salesforce.mapping import MappingError, load_mapping
from hotcrm.settings import read_json_file
from hotcrm.webhooks.processing import backoff_delay

# --- backoff ------------------------------------------------------------------------------


def test_exponential_delay_doubles_up_to_its_cap():
    assert [retry.exponential_delay(n, 0.5, 3.0) for n in range(0, 6)] == [0.5, 0.5, 1.0, 2.0, 3.0, 3.0]


def test_full_jitter_draws_below_the_exponential_delay():
    rng = random.Random(7)
    draws = [retry.exponential_delay(4, 0.5, 30.0, jitter=True, rng=rng) for _ in range(200)]
    assert all(0 <= d <= 4.0 for d in draws) and max(draws) > 3.0 and min(draws) < 1.0


def test_scheduled_delay_follows_the_schedule_then_gives_up():
    assert [retry.scheduled_delay((5, 300, 1800), n) for n in (1, 2, 3, 4)] == [5, 300, 1800, None]
    rng = random.Random(1)
    draws = [retry.scheduled_delay((100,), 1, 0.2, rng) for _ in range(200)]
    assert all(80 <= d <= 120 for d in draws) and len(set(draws)) > 100


def test_each_retry_uses_the_shared_delays():
    # The Salesforce client, the delivery and email schedules and the webhook inbox's backoff
    # are the shared helpers with their own settings (same seeded draws, same answers).
    policy = RetryPolicy(base_delay=0.5, max_delay=30.0)
    assert policy.delay(3, random.Random(3)) == retry.exponential_delay(3, 0.5, 30.0, jitter=True, rng=random.Random(3))
    for settings in (DeliveryConfig(), EmailSettings()):
        schedule = settings.retry_schedule_seconds
        for attempt in range(1, len(schedule) + 2):
            expected = retry.scheduled_delay(schedule, attempt, settings.jitter_ratio, random.Random(attempt))
            assert settings.retry_delay(attempt, random.Random(attempt)) == expected
    assert [backoff_delay(n, 30).total_seconds() for n in (1, 2, 3, 20)] == [30, 60, 120, 3600]


# --- CSV formula escaper -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [("=1+1", "'=1+1"), ("+33 1", "'+33 1"), ("-2", "'-2"), ("@SUM(A1)", "'@SUM(A1)"), ("\tx", "'\tx"),
     ("\rx", "'\rx"), ("ok", "ok"), ("", ""), (None, ""), ("a=b", "a=b")],
)  # fmt: skip
def test_formula_cells_become_text(value, expected):
    assert spreadsheet.neutralize(value) == expected


def test_the_export_and_the_rejects_file_share_the_escaper():
    from hotcrm.exports import writers
    from hotcrm.leads import reports

    assert writers.neutralize_cell is spreadsheet.neutralize
    assert writers.csv_cell("=HYPERLINK()") == "'=HYPERLINK()" and writers.csv_cell(-5) == "-5"
    assert reports.neutralize is spreadsheet.neutralize


# --- JSON config loader ------------------------------------------------------------------


def test_bad_json_names_the_file_line_and_column(tmp_path):
    path = tmp_path / "conf.json"
    path.write_text('{\n  "a": 1,\n  "b": \n}')
    with pytest.raises(ValueError, match=r"conf.json, line 4, column 1: invalid JSON \(Expecting value\)"):
        read_json_file(path, "thing")


def test_a_missing_file_says_how_to_fix_it(tmp_path):
    with pytest.raises(ValueError, match=r"nope.json: thing file not found; set X to an existing file"):
        read_json_file(tmp_path / "nope.json", "thing", hint="set X to an existing file")


def test_the_top_level_value_is_checked(tmp_path):
    path = tmp_path / "list.json"
    path.write_text("[1, 2]")
    with pytest.raises(ValueError, match=r"list.json: the thing must be a JSON object, not list"):
        read_json_file(path, "thing")
    assert read_json_file(path, "thing", expect=list) == [1, 2]
    path.write_bytes(b'{"a": "\xff"}')
    with pytest.raises(ValueError, match=r"list.json: cannot read the thing"):
        read_json_file(path, "thing")


def test_every_config_file_reader_reports_bad_json_the_same_way(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{\n "x": ,\n}')
    with pytest.raises(MappingError, match=r"bad.json, line 2, column 7: invalid JSON"):
        load_mapping(bad)
    with pytest.raises(ValueError, match=r"bad.json, line 2, column 7: invalid JSON"):
        load_recipient_rules(bad)
    with pytest.raises(ValueError, match=r"bad.json, line 2, column 7: invalid JSON"):
        load_suite("bad", config_dir=tmp_path)
    with pytest.raises(ValueError, match=r"missing.json: quality suite file not found"):
        load_suite("missing", config_dir=tmp_path)
    (tmp_path / "rules.json").write_text(json.dumps(["not", "an", "object"]))
    with pytest.raises(ValueError, match=r"rules.json: the lead import notices must be a JSON object"):
        load_recipient_rules(tmp_path / "rules.json")
