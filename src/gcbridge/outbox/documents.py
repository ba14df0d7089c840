"""Outbox rows and dead-letter selections as JSON documents: what ``gcbridge outbox`` prints and what the
running service's admin endpoint serves and accepts. Pure; no I/O."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from gcbridge import _json
from gcbridge.outbox.base import ALL, RowInfo, Selection


def row_document(info: RowInfo, *, payload: bool = True) -> dict[str, Any]:
    """Every field of ``info``; the payload parsed when it is JSON (it is, unless a store was edited by hand),
    else as text."""
    doc = asdict(info)
    raw: bytes = doc.pop("payload")
    if payload:
        try:
            doc["payload"] = _json.loads(raw)
        except _json.JSONDecodeError:
            doc["payload"] = raw.decode("utf-8", "replace")
    return doc


def selection_document(rows: Selection) -> dict[str, Any]:
    """``{"all": true}`` or ``{"ids": [...]}``: the body of a replay or purge request."""
    return {"all": True} if rows == ALL else {"ids": list(rows)}


def parse_selection(body: object) -> Selection:
    """The rows a replay or purge request names: ``{"ids": [1, 2]}`` or ``{"all": true}``, one of them.
    Raises ``ValueError`` saying what is wrong."""
    if not isinstance(body, dict):
        raise ValueError('the body must be a JSON object: {"ids": [1, 2]} or {"all": true}')
    unknown = sorted(set(body) - {"ids", "all"})
    if unknown:
        raise ValueError(f"unknown field(s): {', '.join(unknown)}")
    ids, every = body.get("ids"), body.get("all", False)
    if every is not True and every is not False:
        raise ValueError('"all" must be true or false')
    if every == (ids is not None):
        raise ValueError('give "ids" or "all": true (one of them)')
    if every:
        return ALL
    if not isinstance(ids, list) or not ids:
        raise ValueError('"ids" must be a non-empty list of row ids')
    if not all(type(i) is int and i > 0 for i in ids):  # not bool, which is an int too
        raise ValueError('"ids" must hold positive whole numbers')
    return ids
