"""The FLOPs model (harness/measure/flops.py) against PyTorch's FlopCounterMode on one real training
step of real models: MiniLM-L6 (classification head) and SmolLM2-135M (causal LM, tied LM head),
for full fine-tuning, LoRA, QLoRA, top_layers and prompt tuning. Prints the table and the ratio.

    python benchmarks/flops_check.py [--models minilm-l6,smollm2-135m] [--seq-len 64]"""

from __future__ import annotations

import argparse
import time


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--models", default="minilm-l6,smollm2-135m")
    parser.add_argument("--methods", default="full,lora,qlora,top_layers,prompt_tuning")
    parser.add_argument("--seq-len", type=int, default=64)
    parser.add_argument("--batch", type=int, default=2)
    args = parser.parse_args()
    import torch

    from harness.measure.flops import flop_check, flops_per_token
    from harness.methods import METHODS, ApplyContext
    from harness.models import BUILTIN_MODELS
    from harness.runner.prepare import load_model
    from harness.spec import ModelSpec

    print(f"{'model':14} {'method':14} {'modelled GFLOP/token':>21} {'counted GFLOP/token':>20} {'ratio':>7} {'s':>5}")
    for name in args.models.split(","):
        decoder = BUILTIN_MODELS.get(name).info.is_decoder
        head = "causal_lm" if decoder else "sequence_classification"
        source = str(BUILTIN_MODELS.get(name).locate())
        for method_name in args.methods.split(","):
            t0 = time.perf_counter()
            method = METHODS.get(method_name)
            ctx = ApplyContext("CAUSAL_LM" if decoder else "SEQ_CLS", () if decoder else ("classifier",),
                               BUILTIN_MODELS.get(name).info.model_type, max_steps=10)
            params = method.params()
            extra = method.load_kwargs(params, ctx) if method.load_kwargs else {}
            torch.manual_seed(0)
            model, tok = load_model(source, ModelSpec(source=source), head, [] if decoder else ["neg", "pos"], **extra)
            model = method.build(model, params, ctx)
            ids = torch.randint(100, 1000, (args.batch, args.seq_len), generator=torch.Generator().manual_seed(0))
            batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids),
                     "labels": ids.clone() if decoder else torch.tensor([0, 1] * (args.batch // 2) + [0] * (args.batch % 2))}
            counted = flop_check(model, batch)
            modelled = flops_per_token(model, float(args.seq_len)).per_token
            print(f"{name:14} {method_name:14} {modelled / 1e9:21.4f} {counted / 1e9:20.4f} {modelled / counted:7.3f} "
                  f"{time.perf_counter() - t0:5.1f}", flush=True)


if __name__ == "__main__":
    main()
