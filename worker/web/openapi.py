"""What the OpenAPI schema says of a route where FastAPI cannot derive it.

A body read raw (`worker/web/request_body.py`) has no model FastAPI could describe, and a 202's
links (the id it answers, read back at GET /resends/{request_id}) let clients and stateful
fuzzers follow a request from its creation to its record.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel


def json_request_body(model: type[BaseModel]) -> dict[str, Any]:
    """`openapi_extra` for a route that reads `model` as JSON from the raw body."""
    return {
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": model.model_json_schema()}},
        }
    }


def link(operation: str, source: str = "$response.body#/id") -> dict[str, Any]:
    """An OpenAPI link: `operation` called with `source` (by default the id answered) as its
    `request_id`."""
    return {"operationId": operation, "parameters": {"request_id": source}}


def accepted(description: str, links: dict[str, Any]) -> dict[int | str, dict[str, Any]]:
    """A route's 202 response, with the links from the request it accepted."""
    return {202: {"description": description, "links": links}}
