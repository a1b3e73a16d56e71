"""Tiny random models with a tokenizer trained in memory: fast, offline, deterministic test models.

Built once per cache folder and then loaded through the same from_pretrained path as any model."""

from __future__ import annotations

from pathlib import Path

# A small English corpus for the word-level vocabulary: the built-in data sets' words plus
# common function words, so any built-in task tokenizes without unknown tokens.
_EXTRA_WORDS = (
    "the a an and or but not no is was are were be been it this that of to in on for with at by "
    "from as i you he she we they my your his her our their very really quite so too yes maybe "
    "question answer context summary dialogue option"
)


def _corpus() -> list[str]:
    from harness.tasks.builtin_data import all_builtin_texts

    return [_EXTRA_WORDS, *all_builtin_texts()]


def _train_tokenizer(decoder: bool):
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "<s>", "</s>"]
    tok = Tokenizer(models.WordLevel(unk_token="[UNK]"))
    tok.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase()])
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.train_from_iterator(_corpus(), trainers.WordLevelTrainer(special_tokens=specials, min_frequency=1))
    if decoder:
        tok.post_processor = processors.TemplateProcessing(
            single="<s> $A", pair="<s> $A $B", special_tokens=[("<s>", tok.token_to_id("<s>"))])
        return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>",
                                       pad_token="[PAD]", unk_token="[UNK]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B [SEP]",
        special_tokens=[("[CLS]", tok.token_to_id("[CLS]")), ("[SEP]", tok.token_to_id("[SEP]"))])
    return PreTrainedTokenizerFast(tokenizer_object=tok, cls_token="[CLS]", sep_token="[SEP]",
                                   pad_token="[PAD]", unk_token="[UNK]", mask_token="[MASK]")


def build_tiny(name: str, folder: Path) -> Path:
    """Write a tiny random model + tokenizer to `folder` (seeded: the same bytes every time)."""
    import torch
    from transformers import AutoModel, AutoModelForCausalLM, BertConfig, LlamaConfig

    decoder = name in ("tiny-llama", "llama-1b-random")
    tokenizer = _train_tokenizer(decoder)
    vocab = len(tokenizer)
    torch.manual_seed(0)
    if name == "llama-1b-random":
        config = LlamaConfig(vocab_size=32000, hidden_size=2048, intermediate_size=5632, num_hidden_layers=22,
                             num_attention_heads=32, num_key_value_heads=4, max_position_embeddings=2048,
                             pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
                             eos_token_id=tokenizer.eos_token_id, tie_word_embeddings=False)
        model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    elif decoder:
        # Widths are multiples of 32 and of bitsandbytes' 4-bit block (64): its packed CPU kernel
        # (AVX512-BF16 hosts) takes only such layers, and tests must not depend on the host CPU.
        config = LlamaConfig(vocab_size=vocab, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                             num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                             pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
                             eos_token_id=tokenizer.eos_token_id, tie_word_embeddings=False)
        model = AutoModelForCausalLM.from_config(config)
    else:
        config = BertConfig(vocab_size=vocab, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                            num_attention_heads=2, max_position_embeddings=256,
                            pad_token_id=tokenizer.pad_token_id)
        model = AutoModel.from_config(config)
    tmp = folder.with_name(folder.name + ".tmp")
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    tmp.replace(folder)  # atomic: a half-written model folder is never seen
    return folder
