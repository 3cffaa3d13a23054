"""The HotCRM → Salesforce field mapping (``include/config/salesforce_mapping.json``), the
payload a record maps to, its hash, and how records are batched.

The mapping file::

    {"external_id_field": "HotCRM_Id__c",
     "objects": {"Account": {"fields": {"Name": "Name", ...}},
                 "Contact": {"fields": {...},
                             "relationships": {"AccountId": {"object": "Account", "relationship": "Account"}}}}}

``fields`` maps a HotCRM API field to a Salesforce field; a relationship maps a HotCRM
reference (``AccountId``) to the Salesforce relationship name, sent by external id
(``"Account": {"HotCRM_Id__c": "<the account's HotCRM Id>"}``), so a Contact never needs
its Account's Salesforce Id.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from hotcrm.settings import PROJECT_DIR, read_json_file

DEFAULT_MAPPING_PATH = PROJECT_DIR / "include" / "config" / "salesforce_mapping.json"
SYNCABLE_OBJECTS = ("Account", "Contact")  # in the order they must be sent


class MappingError(ValueError):
    """The mapping file is wrong; the message names the file, the entry and the fix."""


@dataclass(frozen=True)
class Relationship:
    """A HotCRM reference sent as a Salesforce relationship by external id."""

    hotcrm_field: str
    target_object: str
    relationship_name: str
    salesforce_field: str  # the lookup field, set to null when the reference is empty


@dataclass(frozen=True)
class ObjectMapping:
    """How one HotCRM object maps to its Salesforce object."""

    name: str
    fields: dict[str, str]
    relationships: tuple[Relationship, ...] = ()


@dataclass(frozen=True)
class Mapping:
    """The whole mapping: the external-id field and each object's mapping."""

    external_id_field: str
    objects: dict[str, ObjectMapping] = field(default_factory=dict)
    path: str = ""


def _model_fields(name: str) -> list[str]:
    from hotcrm.crm.models import CRM_OBJECTS

    return CRM_OBJECTS[name].api_fields()


def parse_mapping(data: Any, *, source: str = "<mapping>") -> Mapping:
    """Check a mapping document and build a :class:`Mapping`; raises :class:`MappingError`."""
    if not isinstance(data, dict):
        raise MappingError(f"{source}: the mapping must be a JSON object with 'external_id_field' and 'objects'")
    ext = data.get("external_id_field", "HotCRM_Id__c")
    if not isinstance(ext, str) or not ext.endswith("__c"):
        raise MappingError(
            f"{source}: external_id_field {ext!r} must name a custom field (ending in __c) created in Salesforce "
            "as an External ID, e.g. 'HotCRM_Id__c'"
        )
    objects = data.get("objects")
    if not isinstance(objects, dict) or not objects:
        raise MappingError(f"{source}: 'objects' must map object names ({', '.join(SYNCABLE_OBJECTS)}) to mappings")
    built: dict[str, ObjectMapping] = {}
    for name, spec in objects.items():
        where = f"{source}: objects.{name}"
        if name not in SYNCABLE_OBJECTS:
            raise MappingError(f"{where}: unknown object; the sync handles {', '.join(SYNCABLE_OBJECTS)}")
        if not isinstance(spec, dict) or not isinstance(spec.get("fields"), dict) or not spec["fields"]:
            raise MappingError(f"{where}: needs a non-empty 'fields' object (HotCRM field -> Salesforce field)")
        allowed = _model_fields(name)
        fields: dict[str, str] = {}
        for hotcrm_field, sf_field in spec["fields"].items():
            if hotcrm_field not in allowed:
                raise MappingError(
                    f"{where}.fields.{hotcrm_field}: unknown HotCRM field; allowed: {', '.join(allowed)}"
                )
            if not isinstance(sf_field, str) or not sf_field.replace("_", "").isalnum():
                raise MappingError(f"{where}.fields.{hotcrm_field}: {sf_field!r} is not a Salesforce field name")
            if sf_field == ext:
                raise MappingError(f"{where}.fields.{hotcrm_field}: {ext} holds the HotCRM Id; map another field")
            fields[hotcrm_field] = sf_field
        if len(set(fields.values())) != len(fields):
            raise MappingError(f"{where}.fields: two HotCRM fields map to the same Salesforce field")
        relationships = []
        for hotcrm_field, rel in (spec.get("relationships") or {}).items():
            rwhere = f"{where}.relationships.{hotcrm_field}"
            if hotcrm_field not in allowed:
                raise MappingError(f"{rwhere}: unknown HotCRM field; allowed: {', '.join(allowed)}")
            if not isinstance(rel, dict) or rel.get("object") not in SYNCABLE_OBJECTS or not rel.get("relationship"):
                raise MappingError(
                    f"{rwhere}: needs 'object' (one of {', '.join(SYNCABLE_OBJECTS)}) and 'relationship' "
                    "(the Salesforce relationship name, e.g. 'Account')"
                )
            if rel["object"] not in objects:
                raise MappingError(f"{rwhere}: the target object {rel['object']} is not in the mapping; map it too")
            relationships.append(
                Relationship(
                    hotcrm_field,
                    rel["object"],
                    rel["relationship"],
                    rel.get("field") or f"{rel['relationship']}Id",
                )
            )
        built[name] = ObjectMapping(name, fields, tuple(relationships))
    return Mapping(ext, built, source)


def load_mapping(path: str | Path | None = None) -> Mapping:
    """Read and check the mapping file (default: ``include/config/salesforce_mapping.json``)."""
    path = Path(path or DEFAULT_MAPPING_PATH)
    # parse_mapping checks the shape (a JSON object), naming what is missing.
    data = read_json_file(
        path, "mapping", error=MappingError, hint="copy include/config/salesforce_mapping.json", expect=None
    )
    return parse_mapping(data, source=str(path))


def _json_value(value: Any) -> Any:
    """A column value as Salesforce's JSON wants it; a blank text is null (so a value cleared
    in HotCRM is cleared in Salesforce: JSON ``null``, ``#N/A`` in Bulk CSV)."""
    if isinstance(value, str) and value == "":
        return None
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dt.datetime):
        return value.isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    return value


def to_payload(mapping: Mapping, obj: ObjectMapping, record: dict[str, Any]) -> dict[str, Any]:
    """The Salesforce record for a HotCRM record (a dict keyed by API names, with ``Id``)."""
    payload: dict[str, Any] = {mapping.external_id_field: record["Id"]}
    for hotcrm_field, sf_field in obj.fields.items():
        payload[sf_field] = _json_value(record.get(hotcrm_field))
    for rel in obj.relationships:
        target = record.get(rel.hotcrm_field)
        if target:
            payload[rel.relationship_name] = {mapping.external_id_field: target}
        else:
            payload[rel.salesforce_field] = None
    return payload


def payload_hash(payload: dict[str, Any]) -> str:
    """A stable SHA-256 of a payload (key order and float/Decimal spelling do not matter)."""
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str, ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    """``items`` in consecutive slices of at most ``size``."""
    if size < 1:
        raise ValueError("size must be at least 1")
    for start in range(0, len(items), size):
        yield items[start : start + size]


def group_by_parent(records: Iterable[dict[str, Any]], parent_key: str) -> list[dict[str, Any]]:
    """Records ordered so children of one parent sit together (they then land in the same
    batch, which avoids ``UNABLE_TO_LOCK_ROW`` on the parent from parallel batches)."""
    return sorted(records, key=lambda r: (r.get(parent_key) is None, str(r.get(parent_key) or "")))
