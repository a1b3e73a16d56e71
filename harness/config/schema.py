"""The suite's JSON Schema (`harness schema`), from the same typed models validate uses: pydantic
writes the suite's own schema; each registered method's entry gets its typed parameters (its
MethodParams and the training settings a method may fix), so an editor with the YAML language
server completes and checks `methods[].params` too. Checks that need the data or the host (files,
columns, installed packages) stay in `harness validate`."""

from __future__ import annotations

from typing import Any

from harness.methods import METHODS
from harness.spec import Suite, TrainingParams

SCHEMA_ID = "https://github.com/harness/harness/suite.schema.json"


def _inline(schema: dict[str, Any], defs: dict[str, Any], prefix: str) -> dict[str, Any]:
    """A model's schema with its $defs moved into the shared ones under a prefix."""
    import json

    own = schema.pop("$defs", {})
    text = json.dumps(schema)
    for name, body in own.items():
        defs[f"{prefix}{name}"] = json.loads(json.dumps(body).replace("#/$defs/", f"#/$defs/{prefix}"))
        text = text.replace(f'"#/$defs/{name}"', f'"#/$defs/{prefix}{name}"')
    return json.loads(text)


def suite_schema() -> dict[str, Any]:
    schema = Suite.model_json_schema()
    defs = schema.setdefault("$defs", {})
    training = _inline(TrainingParams.model_json_schema(), defs, "Training")
    entries = []
    for name in METHODS:
        method = METHODS.get(name)
        params = _inline(method.params.model_json_schema(), defs, f"{method.params.__name__}_")
        fields = {**training.get("properties", {}), **params.get("properties", {})}
        entries.append({
            "type": "object", "title": name, "description": method.summary,
            "properties": {
                "name": {"const": name},
                "label": {"type": "string", "description": "row label; set it to compare two variants of one method"},
                "params": {"type": "object", "properties": fields, "additionalProperties": False},
                "search": {"type": "object", "propertyNames": {"enum": sorted(fields)},
                           "additionalProperties": {"$ref": "#/$defs/ParamSpace"}},
            },
            "required": ["name"], "additionalProperties": False,
        })
    schema["properties"]["methods"]["items"] = {"anyOf": entries}
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = SCHEMA_ID
    defs.pop("MethodEntry", None)
    return schema
