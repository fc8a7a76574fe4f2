"""Read an FAQ file for ``raydesk faq import``: CSV or YAML, checked before anything is sent.

CSV: a header row with ``id,question,answer`` and optionally ``alternates`` (paraphrases
separated by ``|``). YAML: a list of ``{id, question, answer, alternates: [...]}`` (or a
mapping with that list under ``items``). Errors name the file, the row and the field.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from raydesk.errors import BadRequest
from raydesk.schema import FaqItem, FaqReplace

REQUIRED = ("id", "question", "answer")


def _rows_from_csv(text: str, name: str) -> list[tuple[str, dict[str, Any]]]:
    reader = csv.DictReader(io.StringIO(text))
    missing = [c for c in REQUIRED if c not in (reader.fieldnames or [])]
    if missing:
        raise BadRequest(f"{name}: the header row lacks {', '.join(missing)} "
                         f"(need id,question,answer[,alternates])")
    rows = []
    for row in reader:
        alternates = [a.strip() for a in (row.get("alternates") or "").split("|") if a.strip()]
        rows.append((f"{name}:{reader.line_num}", {
            "id": (row.get("id") or "").strip(), "question": (row.get("question") or "").strip(),
            "answer": (row.get("answer") or "").strip(), "alternates": alternates}))
    return rows


class _TextLoader(yaml.SafeLoader):
    """YAML's safe loader, with numbers read as the text written: an id ``010`` or
    ``1.10`` stays what it says (not 8, not 1.1)."""


_NUMBERS = {"tag:yaml.org,2002:int", "tag:yaml.org,2002:float"}
_TextLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag not in _NUMBERS]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()}


def _strip(value: Any) -> Any:
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, list):
        return [_strip(v) for v in value]
    return value


def _rows_from_yaml(text: str, name: str) -> list[tuple[str, dict[str, Any]]]:
    try:
        data = yaml.load(text, Loader=_TextLoader)
    except yaml.YAMLError as exc:
        raise BadRequest(f"{name}: not valid YAML: {exc}") from None
    if isinstance(data, dict) and "items" in data:
        data = data["items"]
    if not isinstance(data, list):
        raise BadRequest(f"{name}: expected a list of FAQ items (or 'items: [...]')")
    rows = []
    for i, item in enumerate(data, start=1):
        if not isinstance(item, dict):
            raise BadRequest(f"{name}: item {i} is not a mapping")
        rows.append((f"{name}: item {i}", {k: _strip(v) for k, v in item.items()}))
    return rows


def read_faq(path: str | Path) -> FaqReplace:
    path = Path(path)
    try:
        text = path.read_text("utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise BadRequest(f"{path}: cannot read it: {exc}") from None
    suffix = path.suffix.lower()
    formats = {".csv": "csv", ".yaml": "yaml", ".yml": "yaml"}
    if suffix not in formats:
        raise BadRequest(f"{path}: unknown format {suffix or '(none)'}; use .csv or .yaml")
    return parse_faq(text, formats[suffix], str(path))


def parse_faq(text: str, fmt: str, name: str) -> FaqReplace:
    """An FAQ file's text (``fmt`` ``csv`` or ``yaml``) as the body of ``PUT /v1/faq``;
    errors name ``name``, the row and the field. Also ``POST /v1/faq/import``."""
    text = text.removeprefix("\ufeff")
    rows = _rows_from_csv(text, name) if fmt == "csv" else _rows_from_yaml(text, name)
    items: list[FaqItem] = []
    seen: dict[str, str] = {}
    for where, row in rows:
        try:
            item = FaqItem.model_validate(row)
        except ValidationError as exc:
            error = exc.errors()[0]
            field = ".".join(str(p) for p in error["loc"]) or "item"
            raise BadRequest(f"{where}: {field}: {error['msg']}") from None
        if item.id in seen:
            raise BadRequest(f"{where}: id {item.id!r} is also at {seen[item.id]}")
        seen[item.id] = where
        items.append(item)
    try:
        return FaqReplace(items=items)
    except ValidationError as exc:
        raise BadRequest(f"{name}: {exc.errors()[0]['msg']}") from None
