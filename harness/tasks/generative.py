"""Shared pieces for decoder-LM tasks: prompts (chat template where the tokenizer has one),
supervised examples with the loss on the answer tokens only, batched greedy generation, and
length-normalized option log-likelihoods."""

from __future__ import annotations

import time

IGNORE = -100  # label id the loss skips (torch's CrossEntropyLoss ignore_index)


def prompt_ids(tokenizer, user_text: str) -> list[int]:
    """Token ids of the prompt up to where the model's answer starts."""
    if getattr(tokenizer, "chat_template", None):
        out = tokenizer.apply_chat_template([{"role": "user", "content": user_text}], add_generation_prompt=True,
                                            tokenize=True, return_dict=True)
        return list(out["input_ids"])
    return tokenizer(f"{user_text}\nAnswer: ", add_special_tokens=True)["input_ids"]


def sft_example(tokenizer, user_text: str, answer: str, max_length: int) -> dict:
    """input_ids = prompt + answer + eos; labels mask the prompt with -100. Where too long, the
    prompt is cut from its start (the instruction sits at the end of our prompts, after the text)."""
    answer_ids = tokenizer(answer, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    answer_ids = answer_ids[: max_length // 2]
    prompt = prompt_ids(tokenizer, user_text)
    prompt = prompt[-(max_length - len(answer_ids)):]
    ids = prompt + answer_ids
    return {"input_ids": ids, "attention_mask": [1] * len(ids), "labels": [IGNORE] * len(prompt) + answer_ids}


def option_example(tokenizer, user_text: str, options: list[str], answer: int, max_length: int) -> dict:
    """A prompt with its answer options as token ids (for option_scores) and the right one's index;
    the prompt is cut from its start so the longest option still fits in max_length."""
    option_ids = [tokenizer(o, add_special_tokens=False)["input_ids"] for o in options]
    longest = max(len(x) for x in option_ids)
    return {"prompt_ids": prompt_ids(tokenizer, user_text)[-(max_length - longest):], "option_ids": option_ids,
            "answer_index": answer}


def pick_options(model, prompts, options, device: str, batch_size: int = 1) -> list[int]:
    """The index of the likeliest option for each prompt (length-normalized log-likelihood)."""
    return [max(range(len(s)), key=s.__getitem__) for s in score_options(model, prompts, options, device, batch_size)]


def score_options(model, prompts, options, device: str, batch_size: int = 1) -> list[list[float]]:
    """Each prompt's options' length-normalized log-likelihoods (option_scores), scored `batch_size`
    prompts at a time where the prompt's KV cache can be shared (option_scores_batch)."""
    model.eval()
    prompts, options = [list(p) for p in prompts], [[list(o) for o in opts] for opts in options]
    shared = _can_share_prompt_cache(model) and all(prompts) and all(all(opts) for opts in options)
    step = max(batch_size, 1) if shared else 1
    # longest first, so a batch holds prompts of similar lengths and pads little (as lm-eval orders
    # its requests); the scores go back to the prompts' own order
    order = sorted(range(len(prompts)), key=lambda i: -len(prompts[i]))
    out: list[list[float]] = [[] for _ in prompts]
    for start in range(0, len(order), step):
        chunk = order[start:start + step]
        chunk_p, chunk_o = [prompts[i] for i in chunk], [options[i] for i in chunk]
        if shared:
            scored = option_scores_batch(model, chunk_p, chunk_o, device)
        else:
            scored = [option_scores(model, p, o, device) for p, o in zip(chunk_p, chunk_o)]
        for i, s in zip(chunk, scored):
            out[i] = s
    return out


def option_scores_batch(model, prompts: list[list[int]], options: list[list[list[int]]],
                        device: str) -> list[list[float]]:
    """option_scores for several prompts in two forwards: the prompts left-padded into one batch
    (position ids from the attention mask, so each prompt sees the positions it would alone), then
    every prompt's options against its own rows of the shared KV cache. Written by hand: transformers
    scores options only through generate's beam machinery, and lm-eval reruns the prompt per option."""
    import torch

    pad = 0
    width = max(len(p) for p in prompts)
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts], device=device)
    ids = torch.tensor([[pad] * (width - len(p)) + p for p in prompts], device=device)
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    counts = [len(opts) for opts in options]
    with torch.inference_mode():
        out = model(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True)
        first = torch.log_softmax(out.logits[:, -1].float(), dim=-1)  # left padding: the last column is each prompt's end
        flat = [o for opts in options for o in opts]
        owner = torch.tensor([i for i, n in enumerate(counts) for _ in range(n)], device=device)
        longest = max(len(o) for o in flat)
        logprobs = None
        if longest > 1:
            key = "cache" if getattr(out, "cache", None) is not None else "past_key_values"
            cache = getattr(out, key)
            cache.batch_select_indices(owner)
            option_ids = torch.tensor([o + [pad] * (longest - len(o)) for o in flat], device=device)
            option_mask = torch.tensor([[1] * len(o) + [0] * (longest - len(o)) for o in flat], device=device)
            full_mask = torch.cat([mask[owner], option_mask], dim=1)
            starts = torch.tensor([len(prompts[i]) for i in owner.tolist()], device=device)
            option_positions = starts[:, None] + torch.arange(longest, device=device)[None, :]
            logits = model(input_ids=option_ids, attention_mask=full_mask, position_ids=option_positions,
                           use_cache=True, **{key: cache}).logits
            logprobs = torch.log_softmax(logits.float(), dim=-1)
    scores, row = [], 0
    for i, opts in enumerate(options):
        mine = []
        for option in opts:
            # position k of the option pass predicts option token k+1
            total = float(first[i, option[0]]) + sum(float(logprobs[row, k - 1, option[k]]) for k in range(1, len(option)))
            mine.append(total / len(option))
            row += 1
        scores.append(mine)
    return scores


def generate(model, tokenizer, prompts: list[list[int]], max_new_tokens: int, batch_size: int,
             device: str) -> tuple[list[str], float]:
    """Greedy continuations, batched with left padding and the KV cache; also tokens/s generated."""
    import torch

    from harness.methods.base import generate as peft_aware_generate

    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    texts, new_tokens, t0 = [], 0, time.perf_counter()
    model.eval()
    with torch.inference_mode():
        for start in range(0, len(prompts), batch_size):
            batch = prompts[start:start + batch_size]
            width = max(len(p) for p in batch)
            ids = torch.tensor([[pad] * (width - len(p)) + p for p in batch], device=device)
            mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in batch], device=device)
            out = peft_aware_generate(model, input_ids=ids, attention_mask=mask, max_new_tokens=max_new_tokens,
                                      do_sample=False, use_cache=True, pad_token_id=pad,
                                      eos_token_id=tokenizer.eos_token_id)
            for row in out[:, width:]:
                row = row.tolist()
                if tokenizer.eos_token_id in row:
                    row = row[: row.index(tokenizer.eos_token_id)]
                new_tokens += len(row)
                texts.append(tokenizer.decode(row, skip_special_tokens=True).strip())
    return texts, new_tokens / max(time.perf_counter() - t0, 1e-9)


def option_scores(model, prompt: list[int], options: list[list[int]], device: str) -> list[float]:
    """Mean log-probability per token of each option's tokens after the prompt (length-normalized,
    so long options are not penalized for their length). The prompt runs once and its KV cache is
    shared by the options, where the model allows it; otherwise each option reruns the prompt."""
    import torch

    if not options:
        return []
    if not _can_share_prompt_cache(model) or not prompt or not all(options):
        return _option_scores_full(model, prompt, options, device)
    n, width = len(options), max(len(o) for o in options)
    with torch.inference_mode():
        out = model(input_ids=torch.tensor([prompt], device=device), use_cache=True)
        first = torch.log_softmax(out.logits[0, -1].float(), dim=-1)  # predicts each option's first token
        if width == 1:
            return [float(first[o[0]]) for o in options]
        # transformers 5.x renamed past_key_values to cache (argument and output) along the way
        key = "cache" if getattr(out, "cache", None) is not None else "past_key_values"
        cache = getattr(out, key)
        cache.batch_repeat_interleave(n)
        ids = torch.tensor([o + [0] * (width - len(o)) for o in options], device=device)
        mask = torch.tensor([[1] * (len(prompt) + len(o)) + [0] * (width - len(o)) for o in options], device=device)
        logits = model(input_ids=ids, attention_mask=mask, use_cache=True, **{key: cache}).logits
        logprobs = torch.log_softmax(logits.float(), dim=-1)
    scores = []
    for i, option in enumerate(options):
        # position k of the option pass predicts option token k+1
        total = float(first[option[0]]) + sum(float(logprobs[i, k - 1, option[k]]) for k in range(1, len(option)))
        scores.append(total / len(option))
    return scores


def _can_share_prompt_cache(model) -> bool:
    """A transformers model (its KV cache can be repeated across the options), without peft prompt
    learning (whose virtual tokens would be prepended again to the options' pass)."""
    if getattr(model, "config", None) is None:
        return False
    peft_config = getattr(model, "active_peft_config", None)
    return not getattr(peft_config, "is_prompt_learning", False)


def _option_scores_full(model, prompt: list[int], options: list[list[int]], device: str) -> list[float]:
    """The same scores with prompt + option as one sequence per option, in one padded batch."""
    import torch

    seqs = [prompt + o for o in options]
    width = max(len(s) for s in seqs)
    ids = torch.tensor([s + [0] * (width - len(s)) for s in seqs], device=device)
    mask = torch.tensor([[1] * len(s) + [0] * (width - len(s)) for s in seqs], device=device)
    with torch.inference_mode():
        logprobs = torch.log_softmax(model(input_ids=ids, attention_mask=mask).logits.float(), dim=-1)
    scores = []
    for i, option in enumerate(options):
        positions = range(len(prompt) - 1, len(prompt) - 1 + len(option))  # logits at t predict token t+1
        total = sum(float(logprobs[i, p, option[k]]) for k, p in enumerate(positions))
        scores.append(total / max(len(option), 1))
    return scores
