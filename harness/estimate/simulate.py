"""One training step simulated on fake tensors: what autograd saves, what the optimizer keeps and
when the peak falls, without a byte of weights or a GPU.

The model is built from its config on the meta device, the method applied to it exactly as a trial
applies it (peft's own layers, dropout, casts), its tensors swapped for FakeTensors, and two steps
run (forward, loss, backward, gradient clipping, optimizer step, zero_grad): the first creates the
optimizer states, the second is watched by torch's own MemTracker
(torch.distributed._tools.mem_tracker), which sees every tensor storage live at each operator and
keeps the breakdown (parameters, gradients, optimizer states, activations, temporaries) at the
moment the total peaks: what `torch.cuda.max_memory_allocated` reads on a GPU.

What fake tensors cannot run is added by arithmetic, in `harness.estimate.parts`: bitsandbytes'
4-bit/8-bit weights (simulated as compute-dtype Linear layers, then counted at their packed size
with their constants) and 8-bit optimizer states (simulated as AdamW's, counted at 1 byte per state).
Nothing here exists in a library: accelerate's estimator counts weights only."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class StepShape:
    micro_batch: int
    seq_len: int
    dtype: str  # the model's dtype (float32 on CPU, bfloat16 on GPU)
    optim: str  # a transformers optimizer name
    gradient_checkpointing: bool = False
    attention: str = "sdpa"  # attn_implementation
    device: str = "cpu"  # where the trial would run (decides the compute dtype of quantized bases)
    pure_dtype: bool = False  # cast everything, adapters included, to dtype after the method (a bare bf16 loop)
    # model: the loss the model computes from labels (transformers upcasts causal-LM logits to float32);
    # bare: cross-entropy on the logits in the model's dtype, as a bare PyTorch loop writes it
    loss: str = "model"


@dataclass
class Simulated:
    """Byte counts at the simulated step's peak, and the model it ran (meta tensors, for FLOPs and counts)."""

    peak: dict[str, int]  # parameters, buffers, gradients, optimizer, activations (incl. temporaries)
    model: Any
    quantized: dict[str, tuple[int, int]]  # module name -> (in_features, out_features) of a 4/8-bit base layer
    trainable: list[tuple[str, int, str]]  # (name, numel, dtype) of every trained parameter
    frozen: list[tuple[str, int, str]]


def build_meta_model(config, head, num_labels: int, dtype: str, attention: str):
    """The model with its task head from the config alone, on the meta device (no weights read)."""
    import copy

    import torch
    import transformers

    config = copy.deepcopy(config)  # the caller's config (the sweep's loaded model's) stays as it was
    if head.labelled or head.num_labels is not None:
        config.num_labels = head.num_labels or max(num_labels, 2)
        if getattr(config, "pad_token_id", None) is None:
            config.pad_token_id = 0  # decoders find each sequence's last token through it
    auto = getattr(transformers, head.auto_class)
    with torch.device("meta"):
        try:
            return auto.from_config(config, dtype=getattr(torch, dtype), attn_implementation=attention)
        except (ValueError, ImportError):  # an attention kernel this host lacks (flash_attention_2): sdpa's memory
            return auto.from_config(config, dtype=getattr(torch, dtype), attn_implementation="sdpa")


def _stand_in_quantized(model, kept: tuple[str, ...], compute_dtype) -> dict[str, tuple[int, int]]:
    """Quantized bases: every Linear bitsandbytes would quantize (all but the kept heads) becomes a
    Linear that computes in the compute dtype and returns its input's dtype, as bitsandbytes'
    Linear4bit does; it keeps a compute-dtype weight for the simulation, counted later at its packed
    size."""
    import torch

    class QuantizedStandIn(torch.nn.Linear):
        def forward(self, x):
            return torch.nn.functional.linear(x.to(self.weight.dtype), self.weight, self.bias).to(x.dtype)

    found = {}
    for name, module in list(model.named_modules()):
        if type(module) is torch.nn.Linear and not any(name == k or name.startswith(k + ".") or name.endswith("." + k)
                                                       for k in kept):
            module.__class__ = QuantizedStandIn
            found[name] = (module.in_features, module.out_features)
    model.is_loaded_in_4bit = True  # what prepare_model_for_kbit_training looks for
    model._stand_in_dtype = compute_dtype
    return found


def _restore_stand_in_dtype(model, quantized: dict[str, tuple[int, int]]) -> None:
    """prepare_model_for_kbit_training casts every non-4-bit parameter to float32; the real packed
    weights are left alone by it, so the stand-ins go back to the compute dtype."""
    dtype = getattr(model, "_stand_in_dtype", None)
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    for name, module in base.named_modules():
        for key in (name, name.removesuffix(".base_layer")):
            if key in quantized and hasattr(module, "weight") and not hasattr(module, "base_layer"):
                module.weight.data = module.weight.data.to(dtype)


def _fake(model, mode) -> None:
    """Swap every meta parameter and buffer for a FakeTensor on the CPU (shared tensors stay shared)."""
    import torch

    memo: dict[int, Any] = {}
    alive = []  # the originals, so that no id is reused while the memo is built

    def fake(t):
        if id(t) not in memo:
            alive.append(t)
            with mode:
                memo[id(t)] = torch.empty(t.shape, dtype=t.dtype, device="cpu")
        return memo[id(t)]

    for module in model.modules():
        for name, param in list(module._parameters.items()):
            if param is not None:
                if id(param) not in memo:
                    alive.append(param)
                    with mode:
                        data = torch.empty(param.shape, dtype=param.dtype, device="cpu")
                    memo[id(param)] = torch.nn.Parameter(data, requires_grad=param.requires_grad)
                module._parameters[name] = memo[id(param)]
        for name, buf in list(module._buffers.items()):
            if buf is not None:
                module._buffers[name] = fake(buf)


def _inputs(model, head, shape: StepShape, mode, vocab: int) -> dict:
    import torch

    with mode:
        ids = torch.zeros((shape.micro_batch, shape.seq_len), dtype=torch.long)
        # every sequence at full length: the attention mask is all ones, which transformers drops (no
        # mask lets SDPA take its flash path and native grouped-query attention); fake tensors hold no
        # values to find that out from, so none is passed
        batch = {"input_ids": ids}
        batch["labels"] = (torch.zeros((shape.micro_batch,), dtype=torch.long) if head.labelled
                           else torch.zeros_like(ids))
    return batch


def _optimizer(params, shape: StepShape):
    """The optimizer the Trainer builds for this name, as torch would run it on the device: its
    states (8-bit ones are recounted later) and the temporaries of its implementation."""
    import torch

    foreach = shape.device == "cuda" and shape.optim in ("adamw_torch", "adamw_hf", "adamw")
    return torch.optim.AdamW(params, lr=1e-4, foreach=foreach)


def simulate(config, head, num_labels: int, method, method_params, ctx, shape: StepShape) -> Simulated:
    import torch
    from torch._subclasses.fake_tensor import FakeTensorMode

    model = build_meta_model(config, head, num_labels, shape.dtype, shape.attention)
    quantized: dict[str, tuple[int, int]] = {}
    if method.load_kwargs is not None:
        compute = _compute_dtype(method_params, shape)
        kept = tuple(ctx.head_names) + (("lm_head",) if ctx.task_type == "CAUSAL_LM" else ())
        quantized = _stand_in_quantized(model, kept, compute)
    model = method.apply(model, method_params, ctx)
    if quantized:
        _restore_stand_in_dtype(model, quantized)
        if getattr(method_params, "adapter_dtype", "float32") == "compute":
            # peft creates a 4-bit layer's adapters in the compute dtype when it does not autocast them; the
            # stand-ins were float32 (prepare_model_for_kbit_training) when the adapters were made
            for name, param in model.named_parameters():
                if "lora_" in name:
                    param.data = param.data.to(compute)
    if shape.pure_dtype:
        model.to(getattr(torch, shape.dtype))
    already = getattr(model, "is_activation_checkpointing", None)  # transformers 5 name; 4.x: is_gradient_checkpointing
    if already is None:
        already = getattr(model, "is_gradient_checkpointing", False)
    if shape.gradient_checkpointing and not already:
        model.gradient_checkpointing_enable()  # what the Trainer calls for training.gradient_checkpointing
        if hasattr(model, "enable_input_require_grads") and not any(
                p.requires_grad for n, p in model.named_parameters() if "embed" in n):
            model.enable_input_require_grads()
    trainable = [(n, p.numel(), str(p.dtype).removeprefix("torch.")) for n, p in model.named_parameters()
                 if p.requires_grad]
    frozen = [(n, p.numel(), str(p.dtype).removeprefix("torch.")) for n, p in model.named_parameters()
              if not p.requires_grad]

    mode = FakeTensorMode(allow_non_fake_inputs=True)
    _fake(model, mode)
    model.train()
    vocab = int(getattr(getattr(model, "config", None), "vocab_size", 2) or 2)
    batch = _inputs(model, head, shape, mode, vocab)
    params = [p for p in model.parameters() if p.requires_grad]
    with mode:
        optimizer = _optimizer(params, shape)

        def step():
            if head.num_labels is not None and not head.labelled:  # a score per sequence (reward model)
                loss = model(input_ids=batch["input_ids"]).logits.float().sum()
            elif shape.loss == "bare" and not head.labelled:
                logits = model(input_ids=batch["input_ids"]).logits[:, -shape.seq_len:]
                loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), batch["labels"].flatten())
            else:
                loss = model(**batch).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)

        step()  # creates the optimizer states
        tracker = PeakTracker(params, optimizer)
        base = set()
        for t in (*model.parameters(), *model.buffers(),
                  *(v for st in optimizer.state.values() for v in st.values() if hasattr(v, "untyped_storage"))):
            tracker.add(t)
            base.add(id(t))
        static = tracker.total  # weights, buffers, optimizer states: alive before and after the step
        with tracker.mode():
            step()
    weights = sum({t.untyped_storage()._cdata: t.untyped_storage().nbytes()
                   for t in (*model.parameters(), *model.buffers())}.values())
    peak = {"parameters": weights, "gradients": tracker.peak.get("gradients", 0),
            "optimizer": tracker.peak.get("optimizer", 0)}
    peak["activations"] = max(tracker.peak_total - static - peak["gradients"], 0)
    return Simulated(peak=peak, model=model, quantized=quantized, trainable=trainable, frozen=frozen)


class PeakTracker:
    """Live tensor storage bytes at every operator of a step, and the breakdown when the total peaks.

    torch's MemTracker does the same with per-module snapshots, which costs O(modules) per operator
    (a minute for LoRA on a 1B model); this keeps one running total. Storages are told apart by
    identity and forgotten through weakrefs when freed, as MemTracker does. Parameters, gradients and
    optimizer states are named by the caller; everything else alive is activations or temporaries."""

    def __init__(self, params, optimizer):
        self.params = list(params)
        self.optimizer = optimizer
        self.live: dict[int, int] = {}  # storage key -> bytes
        self._refs: dict[int, object] = {}
        self.total = 0
        self.peak_total = 0
        self.peak: dict[str, int] = {}

    def add(self, tensor) -> None:
        import weakref

        try:
            storage = tensor.untyped_storage()
        except (RuntimeError, NotImplementedError):
            return
        key = storage._cdata
        if key in self.live:
            return
        size = storage.nbytes()
        self.live[key] = size
        self.total += size

        def freed(_, key=key):
            self.total -= self.live.pop(key, 0)
            self._refs.pop(key, None)

        try:
            self._refs[key] = weakref.ref(storage, freed)
        except TypeError:
            pass

    def observe(self) -> None:
        if self.total > self.peak_total:
            self.peak_total = self.total
            grads = sum(p.grad.untyped_storage().nbytes() for p in self.params if p.grad is not None)
            opt = sum(t.untyped_storage().nbytes() for st in self.optimizer.state.values()
                      for t in st.values() if hasattr(t, "untyped_storage"))
            self.peak = {"gradients": grads, "optimizer": opt}

    def mode(self):
        from torch.utils._python_dispatch import TorchDispatchMode
        from torch.utils._pytree import tree_flatten

        tracker = self

        class Watch(TorchDispatchMode):
            def __torch_dispatch__(self, func, types, args=(), kwargs=None):
                out = func(*args, **(kwargs or {}))
                for t in tree_flatten(out)[0]:
                    if hasattr(t, "untyped_storage"):
                        tracker.add(t)
                tracker.observe()
                return out

        return Watch()


def _compute_dtype(method_params, shape: StepShape):
    import torch

    name = getattr(method_params, "compute_dtype", "auto")
    if name == "auto":
        return torch.bfloat16 if shape.device == "cuda" else torch.float32
    return getattr(torch, name)
