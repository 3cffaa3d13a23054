"""Pieces of hand-written PostgreSQL statements built from the models (column lists, typed
placeholders, defaults), for the few hot paths that do their work in one statement."""

from __future__ import annotations

from typing import Any

from sqlalchemy import String
from sqlalchemy.dialects import postgresql


def typed_param(column, name: str | None = None) -> str:
    """The placeholder of a value for ``column`` in an ``INSERT ... SELECT``: typed, so a NULL
    fits any column. Text is left untyped: assigned to the column, an over-long value is an
    error (an explicit cast to ``VARCHAR(n)`` would truncate it silently)."""
    placeholder = f"%({name or column.key})s"
    if isinstance(column.type, String):
        return placeholder
    return f"CAST({placeholder} AS {column.type.compile(dialect=postgresql.dialect())})"


def insert_from(model, prefix: str, expressions: dict[str, str], source: str, where: str = "") -> str:
    """``INSERT INTO <model> ... SELECT ... FROM <source>``: ``expressions`` by attribute (SQL
    over ``source``), every other column with a default from a ``<prefix>_<attr>`` parameter."""
    columns, values = [], []
    for column in model.__table__.columns:
        if column.key in expressions:
            columns.append(column.name)
            values.append(expressions[column.key])
        elif column.default is not None:
            columns.append(column.name)
            values.append(typed_param(column, f"{prefix}_{column.key}"))
    return f"INSERT INTO {model.__table__.name} ({', '.join(columns)}) SELECT {', '.join(values)} FROM {source}{where}"


def default_params(model, prefix: str, given: dict[str, Any]) -> dict[str, Any]:
    """The ``<prefix>_<attr>`` parameters of :func:`insert_from`: ``given`` values, else the model's defaults."""
    params = {}
    for column in model.__table__.columns:
        if column.default is not None:
            value = given.get(column.key)
            if value is None:
                value = column.default.arg(None) if column.default.is_callable else column.default.arg
            params[f"{prefix}_{column.key}"] = value
    return params
