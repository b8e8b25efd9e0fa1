"""The OpenAPI document checked into ``docs/openapi.json``; regenerate with
``python -m adapters.driving.api.openapi`` (a test fails while the file is stale)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from fastapi import FastAPI

from adapters.driving.api.app import DESCRIPTION, ROUTERS
from adapters.driving.api.problems import document_problems

DOCUMENT = Path(__file__).resolve().parents[3] / "docs" / "openapi.json"


def openapi_document() -> dict[str, Any]:
    """Built from the routers alone: no database or keys needed."""
    app = FastAPI(title="Returns OMS API", version="1.0.0", description=DESCRIPTION)
    for router in ROUTERS:
        app.include_router(router)
    document_problems(app)
    return app.openapi()


def render() -> str:
    return json.dumps(openapi_document(), indent=2, sort_keys=True) + "\n"


def write(path: Path = DOCUMENT) -> Path:
    path.write_text(render())
    return path


if __name__ == "__main__":
    print(write())
