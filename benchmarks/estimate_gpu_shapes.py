"""The estimate against measured GPU peaks (issue 16's second must-show), from the config alone.

Measured on one H100 (torch's peak allocated), TinyLlama-1.1B shape (22 layers, hidden 2048,
intermediate 5632, 32 heads / 4 KV heads, vocab 32000), causal-LM loss over all 1024 tokens,
micro-batch 8 x 1024, pure bf16 (weights, gradients and AdamW states all bf16, adapters too),
torch's fused AdamW, SDPA, LoRA/QLoRA r16 on q,k,v,o,gate,up,down, IA3 on k,v,down, prompt
tuning with 20 virtual tokens, no checkpointing unless said. Three readings of the same step:

- harness: as a harness trial runs it: peft's adapters in its default dtype (float32 adapter
  weights on a bf16 base, peft's autocast_adapter_dtype) and the loss the model computes from its
  labels (transformers upcasts the logits to float32 before cross-entropy);
- pure bf16: the adapters cast to bf16 too, the model's loss;
- pure bf16, bare loss: cross-entropy on the bf16 logits, as a bare PyTorch loop may write it.

    python benchmarks/estimate_gpu_shapes.py"""

from __future__ import annotations

import time

MEASURED_GIB = [  # (label, method, params, gradient checkpointing, measured GiB)
    ("full fine-tuning", "full", {}, False, 23.9),
    ("LoRA r16 all linear", "lora", {"r": 16, "target_modules": "all-linear"}, False, 27.3),
    ("QLoRA r16 NF4 double quant", "qlora", {"r": 16, "target_modules": "all-linear", "compute_dtype": "bfloat16"},
     False, 26.0),
    ("IA3 k,v,down", "ia3", {}, False, 19.0),
    ("LayerNorm tuning", "ln_tuning", {}, False, 16.4),
    ("prompt tuning, 20 tokens", "prompt_tuning", {"num_virtual_tokens": 20}, False, 15.4),
    ("LoRA + checkpointing", "lora", {"r": 16, "target_modules": "all-linear"}, True, 4.3),
    ("full + checkpointing", "full", {}, True, 9.0),
    ("QLoRA + checkpointing", "qlora", {"r": 16, "target_modules": "all-linear", "compute_dtype": "bfloat16"}, True, 3.0),
]


def main() -> None:
    from transformers import LlamaConfig

    from harness.estimate import predict_memory
    from harness.methods import METHODS
    from harness.spec import TrialTraining
    from harness.tasks.heads import HEADS

    config = LlamaConfig(hidden_size=2048, intermediate_size=5632, num_hidden_layers=22, num_attention_heads=32,
                         num_key_value_heads=4, vocab_size=32000, max_position_embeddings=2048)
    head = HEADS.get("causal_lm")
    readings = {"harness": (False, "model"), "pure bf16": (True, "model"), "pure bf16, bare loss": (True, "bare")}
    print("| cell | measured GiB | " + " | ".join(f"{r} GiB (diff)" for r in readings) + " |")
    print("| --- | --- | " + " | ".join("---" for _ in readings) + " |")
    inside, counts = set(), []
    for label, name, params, checkpointing, measured in MEASURED_GIB:
        method = METHODS.get(name)
        flat = {**method.defaults, **{k: v for k, v in params.items() if k in method.params.model_fields},
                "optim": "adamw_torch_fused"}  # 32-bit states in the parameters' dtype, for QLoRA too
        training = TrialTraining(batch_size=8, optim="adamw_torch_fused")
        got = {}
        t0 = time.perf_counter()
        for reading, (pure, loss) in readings.items():
            peak, parts, _ = predict_memory(config, head, 0, method, flat, training, micro_batch=8, seq_len=1024,
                                            dtype="bfloat16", device="cuda", model_type="llama", pure_dtype=pure,
                                            loss=loss, gradient_checkpointing=checkpointing)
            got[reading] = peak / 2**30
        within = [r for r, v in got.items() if abs(v - measured) <= 0.15 * measured]
        inside.update(within)
        print(f"| {label} | {measured:.1f} | " + " | ".join(
            f"{v:.2f} ({v / measured - 1:+.1%}){'' if r in within else ' **out**'}" for r, v in got.items())
            + f" |  ({time.perf_counter() - t0:.0f} s)", flush=True)
        counts.append(within)
    for reading in readings:
        print(f"{reading}: within 15% in {sum(reading in w for w in counts)} of {len(MEASURED_GIB)}")


if __name__ == "__main__":
    main()
