"""Which serving engines take each method's artifact (harness/data/serving_engines.yaml, with the
sources and the date each entry was read): for the report's Serving table and for
decision.limits.serve_with."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

FILE = Path(__file__).resolve().parent.parent / "data" / "serving_engines.yaml"
SERVES = ("adapter", "merged", "model", "no")


class Engine(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    version: str
    docs: str


class Entry(BaseModel):
    model_config = ConfigDict(extra="forbid")
    serves: Literal["adapter", "merged", "model", "no"]
    source: str = Field(min_length=1)
    limits: str | None = None
    note: str | None = None


class EngineFile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    checked: str = Field(pattern=r"^\d{4}-\d{2}-\d{2}$")
    engines: dict[str, Engine]
    sources: dict[str, str]
    methods: dict[str, dict[str, Entry]]

    @model_validator(mode="after")
    def _complete(self):
        for method, entries in self.methods.items():
            missing = sorted(set(self.engines) - set(entries))
            unknown = sorted(set(entries) - set(self.engines))
            if missing or unknown:
                raise ValueError(f"{method}: engines missing {missing}, unknown {unknown}")
            for engine, entry in entries.items():
                if entry.source not in self.sources:
                    raise ValueError(f"{method}.{engine}: source {entry.source!r} is not in sources")
        return self

    def url(self, entry: Entry) -> str:
        return self.sources[entry.source]


@lru_cache(maxsize=1)
def engine_file(path: str = str(FILE)) -> EngineFile:
    import yaml

    return EngineFile.model_validate(yaml.safe_load(Path(path).read_text(encoding="utf-8")))


def artifact_key(method: str, params: dict[str, Any] | None = None) -> str:
    """The engine file's key for a run: the method, or lora+dora where LoRA ran with use_dora."""
    params = params or {}
    if method in ("lora", "qlora", "lora_8bit") and params.get("use_dora"):
        return "lora+dora"
    return method


def support(method: str, params: dict[str, Any] | None = None) -> dict[str, Entry] | None:
    """engine -> how it serves this method's artifact (None: not in the file, e.g. a baseline)."""
    return engine_file().methods.get(artifact_key(method, params))


def serves_with(method: str, params: dict[str, Any] | None, engine: str) -> Entry | None:
    found = support(method, params)
    return None if found is None else found.get(engine)


def short(method: str, params: dict[str, Any] | None = None) -> str:
    """'vLLM adapter · SGLang adapter · TGI merged · llama.cpp no' for a table cell."""
    found = support(method, params)
    if found is None:
        return ""
    engines = engine_file().engines
    return " · ".join(f"{engines[k].name} {e.serves}" for k, e in found.items())
