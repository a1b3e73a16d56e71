"""Saving and reloading what a method trained: peft adapters through peft's own format; for our
methods (BitFit, partial freezing, bottleneck adapters, full) the trainable tensors as safetensors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

TRAINED_FILE = "trained.safetensors"


def trainable_state_bytes(model) -> int:
    """Bytes a saved artifact of this trial needs: every trainable tensor at its stored dtype
    (for full fine-tuning, that is the whole checkpoint)."""
    return sum(p.numel() * p.element_size() for p in model.parameters() if p.requires_grad)


def folder_bytes(folder: Path) -> int:
    return sum(f.stat().st_size for f in Path(folder).rglob("*") if f.is_file())


def save_trained(model, folder: Path) -> int:
    """Write what the trial trained into folder; return its size on disk in bytes."""
    from peft import PeftModel
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if isinstance(model, PeftModel):
        model.save_pretrained(folder)
    else:
        state = {n: p.detach().cpu().contiguous() for n, p in model.named_parameters() if p.requires_grad}
        save_file(state, str(folder / TRAINED_FILE))
    return folder_bytes(folder)


def load_trained(base, folder: Path, method, params: dict[str, Any], ctx):
    """Rebuild a trained model from a fresh base and the artifact save_trained wrote."""
    from peft import PeftModel
    from safetensors.torch import load_file

    folder = Path(folder)
    if (folder / "adapter_config.json").exists():
        if method.prepare_base is not None:
            method.prepare_base(base, params, ctx)
        return PeftModel.from_pretrained(base, folder)
    model = method.build(base, params, ctx)
    result = model.load_state_dict(load_file(str(folder / TRAINED_FILE)), strict=False)
    if result.unexpected_keys:
        raise ValueError(f"{folder}: tensors the method does not have: {result.unexpected_keys[:5]}")
    return model
