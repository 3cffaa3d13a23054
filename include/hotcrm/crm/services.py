"""A small service layer over the CRM models, shared by the pipelines and the API.

Fields are named by their API names (``AnnualRevenue``). Filters are lists of
``[field, operator, value]`` checked against an allowlist of fields and operators and
coerced to the column's type; values are always bound parameters, never SQL text.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from decimal import Decimal, InvalidOperation
from typing import Any

from sqlalchemy import ColumnElement, Select, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from hotcrm.crm.errors import CrmError, RecordNotFound
from hotcrm.crm.models import Base, api_to_attr, attr_to_api, utcnow

OPERATORS = ("=", "!=", "<", "<=", ">", ">=", "in", "not in", "like", "is null", "is not null")
_NO_VALUE_OPERATORS = ("is null", "is not null")
_ORDERED_TYPES = (int, float, Decimal, dt.date, dt.datetime)


class FilterError(CrmError, ValueError):
    """A filter, field name or value a caller sent that the allowlist refuses."""

    code = "INVALID_FILTER"


class NotFoundError(RecordNotFound, LookupError):
    """No record of that object with that Id."""


def allowed_fields(model: type[Base]) -> list[str]:
    """API names a caller may read, filter and write on ``model``."""
    return model.api_fields()


def _column(model: type[Base], field: str, *, where: str):
    if not isinstance(field, str) or field not in allowed_fields(model):
        raise FilterError(
            f"{where}: unknown field {field!r} for {model.__name__}; allowed fields: {', '.join(allowed_fields(model))}"
        )
    return model.__table__.columns[api_to_attr(field)]


def _coerce(value: Any, column, *, where: str) -> Any:
    """Coerce a JSON-ish value to the Python type of ``column``, or raise FilterError."""
    if value is None:
        return None
    python_type = column.type.python_type
    try:
        if python_type is str:
            if not isinstance(value, str):
                raise TypeError
            return value
        if python_type is bool:
            if not isinstance(value, bool):
                raise TypeError
            return value
        if python_type is int:
            if isinstance(value, bool) or not isinstance(value, int | str):
                raise TypeError
            return int(value)
        if python_type is Decimal:
            if isinstance(value, bool):
                raise TypeError
            return Decimal(str(value))
        if python_type is dt.datetime:
            parsed = value if isinstance(value, dt.datetime) else dt.datetime.fromisoformat(str(value))
            return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)
        if python_type is dt.date:
            return value if isinstance(value, dt.date) else dt.date.fromisoformat(str(value))
    except (TypeError, ValueError, InvalidOperation) as exc:
        raise FilterError(
            f"{where}: value {value!r} is not a valid {python_type.__name__} for field {attr_to_api(column.key)!r}"
        ) from exc
    return value


def parse_filters(model: type[Base], filters: Any) -> list[ColumnElement[bool]]:
    """Turn ``[[field, op, value], ...]`` into SQLAlchemy conditions, or raise FilterError
    naming the bad entry and the allowed values."""
    if filters is None:
        return []
    if not isinstance(filters, list | tuple):
        raise FilterError(f"filters must be a list of [field, operator, value]; got {filters!r}")
    conditions = []
    for index, entry in enumerate(filters):
        where = f"filter #{index + 1} {entry!r}"
        if not isinstance(entry, list | tuple) or len(entry) not in (2, 3):
            raise FilterError(f"{where}: expected [field, operator, value]")
        field, op = entry[0], entry[1]
        value = entry[2] if len(entry) == 3 else None
        column = _column(model, field, where=where)
        if not isinstance(op, str) or op.lower() not in OPERATORS:
            raise FilterError(f"{where}: unknown operator {op!r}; allowed operators: {', '.join(OPERATORS)}")
        op = op.lower()
        if op in _NO_VALUE_OPERATORS:
            conditions.append(column.is_(None) if op == "is null" else column.is_not(None))
            continue
        if len(entry) != 3:
            raise FilterError(f"{where}: operator {op!r} needs a value")
        if op in ("in", "not in"):
            if not isinstance(value, list | tuple) or not value:
                raise FilterError(f"{where}: operator {op!r} needs a non-empty list of values")
            values = [_coerce(v, column, where=where) for v in value]
            conditions.append(column.in_(values) if op == "in" else column.not_in(values))
            continue
        coerced = _coerce(value, column, where=where)
        if op == "like":
            if not isinstance(coerced, str):
                raise FilterError(f"{where}: operator 'like' needs a string value")
            conditions.append(column.like(coerced))
        elif coerced is None:
            if op not in ("=", "!="):
                raise FilterError(f"{where}: null can only be compared with '=' or '!='")
            conditions.append(column.is_(None) if op == "=" else column.is_not(None))
        elif op == "=":
            conditions.append(column == coerced)
        elif op == "!=":
            conditions.append(column != coerced)
        else:
            if not isinstance(coerced, _ORDERED_TYPES) and column.type.python_type is not str:
                raise FilterError(f"{where}: operator {op!r} is not supported for this field")
            conditions.append(
                {"<": column < coerced, "<=": column <= coerced, ">": column > coerced, ">=": column >= coerced}[op]
            )
    return conditions


def parse_fields(model: type[Base], fields: Iterable[str] | None) -> list[str]:
    """Validate a list of API field names (``None`` means all); raise FilterError on unknowns."""
    if fields is None:
        return allowed_fields(model)
    if isinstance(fields, str) or not isinstance(fields, Iterable):
        raise FilterError(f"fields must be a list of field names; got {fields!r}")
    names = list(fields)
    if not names:
        raise FilterError("fields must name at least one field")
    for name in names:
        _column(model, name, where="fields")
    if len(set(names)) != len(names):
        raise FilterError(f"fields lists a field twice: {names!r}")
    return names


def _to_attrs(model: type[Base], values: Mapping[str, Any]) -> dict[str, Any]:
    attrs = {}
    for field, value in values.items():
        column = _column(model, field, where="values")
        attrs[column.key] = _coerce(value, column, where=f"field {field!r}")
    return attrs


def get(session: Session, model: type[Base], record_id: str) -> Base:
    """The record with that Id, or NotFoundError."""
    record = session.get(model, record_id)
    if record is None:
        raise NotFoundError(f"{model.__name__} {record_id!r} not found")
    return record


def find_query(
    model: type[Base],
    filters: Any = None,
    *,
    order_by: Sequence[str] = ("Id",),
    limit: int | None = None,
) -> Select:
    """The SELECT for :func:`find`, for callers that stream it (exports)."""
    conditions = parse_filters(model, filters)
    query = select(model).where(*conditions)
    query = query.order_by(*[_column(model, f, where="order_by") for f in order_by])
    if limit is not None:
        query = query.limit(limit)
    return query


def find(
    session: Session,
    model: type[Base],
    filters: Any = None,
    *,
    order_by: Sequence[str] = ("Id",),
    limit: int | None = None,
) -> list[Base]:
    """Records matching validated filters."""
    return list(session.scalars(find_query(model, filters, order_by=order_by, limit=limit)))


def count(session: Session, model: type[Base], filters: Any = None) -> int:
    """How many records match validated filters."""
    conditions = parse_filters(model, filters)
    return session.scalar(select(func.count()).select_from(model).where(*conditions)) or 0


def create(session: Session, model: type[Base], values: Mapping[str, Any]) -> Base:
    """Create a record from API-named values; it is flushed, so its Id and defaults are set."""
    record = model(**_to_attrs(model, values))
    session.add(record)
    session.flush()
    return record


def update(session: Session, model: type[Base], record_id: str, values: Mapping[str, Any]) -> Base:
    """Update a record's API-named fields; NotFoundError when it does not exist."""
    record = get(session, model, record_id)
    for attr, value in _to_attrs(model, values).items():
        setattr(record, attr, value)
    session.flush()
    return record


def upsert(
    session: Session,
    model: type[Base],
    rows: Sequence[Mapping[str, Any]],
    *,
    key: str,
) -> int:
    """Insert rows, or update the existing record with the same ``key`` field, in one
    statement per batch (``INSERT ... ON CONFLICT DO UPDATE``). Returns the rows sent."""
    if not rows:
        return 0
    key_column = _column(model, key, where="upsert key")
    now = utcnow()
    prepared = []
    for row in rows:
        attrs = _to_attrs(model, row)
        attrs.setdefault("id", model.__table__.columns["id"].default.arg(None))
        if "last_modified_date" in model.__table__.columns:
            attrs.setdefault("created_date", now)
            attrs["last_modified_date"] = now
        prepared.append(attrs)
    columns = sorted({c for attrs in prepared for c in attrs})
    # Every row needs the same keys for an executemany INSERT.
    prepared = [{c: attrs.get(c) for c in columns} for attrs in prepared]
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    statement = insert(model.__table__)
    keep_on_update = {"id", "created_date", key_column.key}
    statement = statement.on_conflict_do_update(
        index_elements=[key_column],
        set_={c: statement.excluded[c] for c in columns if c not in keep_on_update},
    )
    session.execute(statement, prepared)
    return len(prepared)
