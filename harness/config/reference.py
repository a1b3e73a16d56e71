"""docs/suites.md, generated from the suite's JSON Schema (the typed models validate uses, their field
descriptions included) and the list of moved keys, so the reference cannot drift from the code:
`harness schema --markdown > docs/suites.md`; tests/test_docs.py checks the file is current."""

from __future__ import annotations

import json
from typing import Any

from harness.config.schema import suite_schema
from harness.spec import MOVED_KEYS

HEADER = """\
# Suite reference

Generated from the code by `harness schema --markdown > docs/suites.md` (a test checks it is
current). Unknown keys are rejected; `harness validate SUITE` names every problem as
`file:line: yaml.path: message`. Each method's own parameters: `harness ls methods`.
"""


def _type(prop: dict[str, Any], defs: dict[str, Any]) -> str:
    if "$ref" in prop:
        name = prop["$ref"].rsplit("/", 1)[-1]
        shown = defs.get(name, {}).get("type") == "object" and defs[name].get("properties") and "_" not in name
        return f"[{name}](#{name.lower()})" if shown else name
    if "enum" in prop:
        return " \\| ".join(json.dumps(v) for v in prop["enum"])
    if "const" in prop:
        return json.dumps(prop["const"])
    if "anyOf" in prop:
        return " or ".join(dict.fromkeys(_type(p, defs) for p in prop["anyOf"]))
    kind = prop.get("type", "any")
    if kind == "array":
        return f"list of {_type(prop.get('items', {}), defs)}"
    if kind == "object" and isinstance(prop.get("additionalProperties"), dict):
        return f"map of {_type(prop['additionalProperties'], defs)}"
    return str(kind)


def _default(prop: dict[str, Any]) -> str:
    if "default" not in prop:
        return "required" if prop.get("_required") else ""
    return f"`{json.dumps(prop['default'])}`"


def _escape(text: str) -> str:
    return " ".join(text.replace("|", "\\|").split())


def _table(title: str, schema: dict[str, Any], defs: dict[str, Any]) -> list[str]:
    required = set(schema.get("required", []))
    lines = [f"## {title}", ""]
    if schema.get("description"):
        lines += [_escape(schema["description"]), ""]
    lines += ["| key | type | default | meaning |", "| --- | --- | --- | --- |"]
    for key, prop in schema.get("properties", {}).items():
        default = "required" if key in required else _default(prop)
        lines.append(f"| `{key}` | {_type(prop, defs)} | {default} | {_escape(prop.get('description', ''))} |")
    return lines + [""]


def suite_reference() -> str:
    """The Markdown reference: the suite's top-level keys, then each section's model."""
    schema = suite_schema()
    defs = schema.get("$defs", {})
    out = [HEADER, *_table("Top level (`suite.yaml`)", schema, defs)]
    for name in sorted(defs):
        body = defs[name]
        if body.get("type") != "object" or not body.get("properties") or "_" in name:
            continue
        out += _table(f"`{name}`", body, defs)
    out += ["## Moved keys", "", "Keys older suites used; `harness validate` answers each with this text.", "",
            "| key | now |", "| --- | --- |"]
    out += [f"| `{'.'.join(key)}` | {_escape(text)} |" for key, text in MOVED_KEYS.items()]
    return "\n".join(out) + "\n"
