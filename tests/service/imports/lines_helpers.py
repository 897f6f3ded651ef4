"""NDJSON lines for import tests."""

from __future__ import annotations

import json
from typing import Any

from service.ids import new_id


def merchant_line(uscc: str, **overrides: Any) -> dict[str, Any]:
    line: dict[str, Any] = {
        "kind": "merchant",
        "uscc": uscc,
        "name": "天津市导入测试商贸有限公司",
        "entity_type": "COMPANY",
        "registration_status": "ACTIVE",
        "registered_on": "2018-04-02",
        "legal_representative": "刘洋",
        "address": "天津市南开区复康路88号",
    }
    line.update(overrides)
    return line


def record_line(uscc: str, source_record_id: str | None = None, **overrides: Any) -> dict[str, Any]:
    line: dict[str, Any] = {
        "kind": "record",
        "source": "tax",
        "source_record_id": source_record_id or new_id("tax"),
        "uscc": uscc,
        "category": "MAJOR_TAX_VIOLATION",
        "severity": "SERIOUS",
        "authority": "国家税务总局天津市税务局第一稽查局",
        "document_no": "津税一稽处〔2026〕8号",
        "decided_on": "2026-02-10",
        "publicity_until": "2029-02-10",
        "summary": "虚开增值税专用发票",
    }
    line.update(overrides)
    return line


def ndjson(*lines: dict[str, Any] | str) -> bytes:
    return "".join(
        (line if isinstance(line, str) else json.dumps(line, ensure_ascii=False)) + "\n"
        for line in lines
    ).encode()
