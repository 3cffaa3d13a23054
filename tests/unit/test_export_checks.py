"""The export's constant-memory statistics and the Great Expectations suite that judges them."""

from hotcrm.exports.accounts import WrittenExport, _count_problems, _Segment, check_export


def test_statistics_find_nulls_and_repeats_within_and_across_batches():
    segment = _Segment()
    last = _count_problems([("a", "A"), ("b", None), ("b", "B"), (None, "")], [0, 1], None, segment)
    assert (segment.null_ids, segment.duplicate_ids, segment.missing_required) == (1, 1, 2)
    assert last is None
    last = _count_problems([("c", "C"), ("d", "D")], [0, 1], "b", segment)
    assert (segment.null_ids, segment.duplicate_ids) == (1, 1)
    _count_problems([("d", "D"), ("e", "E")], [0, 1], last, segment)  # "d" ended the previous batch
    assert segment.duplicate_ids == 2


def _written(segments, database_count):
    return WrittenExport(
        name="x.json",
        spec={"fields": ["Id", "Name"], "filters": [], "format": "json", "changed_since": None},
        temp_path="/tmp/x",
        published_path="/tmp/y",
        export_date="2026-01-01T00:00:00Z",
        record_count=sum(s["rows"] for s in segments),
        database_count=database_count,
        sha256="0" * 64,
        size_bytes=1,
        required_fields=["Id", "Name"],
        segments=segments,
    )


def _segment(rows, null_ids=0, duplicate_ids=0, missing_required=0):
    return {"rows": rows, "null_ids": null_ids, "duplicate_ids": duplicate_ids, "missing_required": missing_required}


def test_clean_statistics_pass():
    result = check_export(_written([_segment(5000), _segment(1234)], 6234))
    assert result.success, result.summary()


def test_an_empty_export_of_an_empty_selection_passes():
    assert check_export(_written([_segment(0)], 0)).success


def test_each_problem_fails_its_expectation():
    result = check_export(
        _written([_segment(5000, duplicate_ids=1), _segment(1000, null_ids=2, missing_required=3)], 6001)
    )
    assert not result.success
    failed = {(o.type, o.kwargs.get("column")) for o in result.failures}
    assert failed == {
        ("expect_column_sum_to_be_between", "rows"),
        ("expect_column_max_to_be_between", "null_ids"),
        ("expect_column_max_to_be_between", "duplicate_ids"),
        ("expect_column_max_to_be_between", "missing_required"),
    }
    assert "observed_value=6000" in result.summary()


def test_prefetch_yields_everything_in_order_and_passes_errors_on():
    import pytest

    from hotcrm.exports.accounts import prefetch

    assert list(prefetch(iter(range(50)), depth=2)) == list(range(50))

    def broken():
        yield 1
        raise ValueError("server closed the connection")

    with pytest.raises(ValueError, match="server closed"):
        list(prefetch(broken()))


def test_prefetch_stopped_early_closes_its_source_in_the_fetching_thread():
    import threading

    from hotcrm.exports.accounts import prefetch

    closed_in = []

    def source():
        try:
            yield from range(1000)
        finally:
            closed_in.append(threading.current_thread().name)

    batches = prefetch(source(), depth=2)
    assert next(batches) == 0
    batches.close()  # the consumer failed: the thread must be done before the connection is reused
    assert closed_in == ["export-prefetch"]
    assert not any(t.name == "export-prefetch" for t in threading.enumerate())
