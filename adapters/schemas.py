"""JSON Schemas of the wire contract, generated from the pydantic models.

``rma schemas`` writes them under ``docs/schemas``; a test regenerates them and fails if the
checked-in files differ, so integrators never read a stale contract.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

from adapters.contracts import INBOUND, CloudEvent
from domain.events import EVENT_TYPES

DEFAULT_DIR = Path(__file__).resolve().parent.parent / "docs" / "schemas"


def _dump(schema: dict[str, Any]) -> bytes:
    return orjson.dumps(schema, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n"


def schema_files() -> dict[str, bytes]:
    """Relative path -> file content, for every schema of the contract."""
    files = {"cloudevent.json": _dump(CloudEvent.model_json_schema())}
    for topic, models in INBOUND.items():
        for type_name, model in models.items():
            schema = model.model_json_schema()
            schema["description"] = (
                f"`data` of a `{type_name}` CloudEvent on `{topic}`. " + (model.__doc__ or "")
            ).strip()
            files[f"inbound/{topic}/{type_name}.json"] = _dump(schema)
    for type_name, event_class in sorted(EVENT_TYPES.items()):
        schema = event_class.model_json_schema()
        schema["description"] = (
            f"`data` of a `{type_name}` CloudEvent (our outbound event), plus `aggregate_id`, "
            "`version` and `position`."
        )
        files[f"outbound/{type_name}.json"] = _dump(schema)
    return files


def export(directory: Path = DEFAULT_DIR) -> list[Path]:
    written = []
    for relative, content in schema_files().items():
        path = directory / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
        written.append(path)
    return written
