"""The model heads task families build on, registered once: per head, the transformers auto class,
the peft task type, the collator and how labels are handled. The runner asks this registry and never
interprets a head's name itself, so a new task family is one file in harness/tasks."""

from __future__ import annotations

from dataclasses import dataclass

from harness.registry import Registry


@dataclass(frozen=True)
class Head:
    name: str
    summary: str
    auto_class: str  # transformers Auto* class that loads a model with this head
    peft_task_type: str  # peft TaskType name
    new_modules: tuple[str, ...] = ()  # attributes of a freshly initialised head: they always train
    labelled: bool = False  # one output per label (the task's label set sizes the head)
    pad_labels: bool = False  # the collator pads `labels` with -100 (token-level targets)
    # a micro-batch can be packed into one row with position ids (acceleration.packing): token-level
    # targets only; a head that reads one position per example (classification) cannot
    packable: bool = False
    num_labels: int | None = None  # a fixed number of outputs (a reward model's one score)

    def load(self, source: str, revision: str | None, dtype, labels: list[str], **kwargs):
        import transformers

        auto = getattr(transformers, self.auto_class)
        if self.labelled:
            kwargs.update(num_labels=len(labels), id2label=dict(enumerate(labels)),
                          label2id={label: i for i, label in enumerate(labels)})
        elif self.num_labels is not None:
            kwargs.update(num_labels=self.num_labels)
        return auto.from_pretrained(source, revision=revision, dtype=dtype, **kwargs)

    def collator(self, tokenizer, packing: bool = False, attention: str | None = None):
        """Pads a batch; token-level labels with -100, so padding adds nothing to the loss. Packed:
        padding-free rows with position ids restarting at each example (harness/tasks/packing.py;
        the layout depends on the attention implementation)."""
        from transformers import DataCollatorForSeq2Seq, DataCollatorWithPadding

        if packing:
            if not self.packable:
                raise ValueError(f"the {self.name} head cannot pack examples")
            from harness.tasks.packing import packing_collator

            return packing_collator(tokenizer, attention)
        if self.pad_labels:
            return DataCollatorForSeq2Seq(tokenizer, padding=True, label_pad_token_id=-100)
        return DataCollatorWithPadding(tokenizer)

    def modules_of(self, model) -> tuple[str, ...]:
        """The new-head modules this model has (classifier for BERT, score for Llama)."""
        return tuple(name for name in self.new_modules if hasattr(model, name))


HEADS: Registry[Head] = Registry("head")
for _head in (
    Head("sequence_classification", "a classification head on the last (decoders) or [CLS] (encoders) state",
         "AutoModelForSequenceClassification", "SEQ_CLS", new_modules=("classifier", "score"), labelled=True),
    Head("reward", "one scalar score on the last (decoders) or [CLS] (encoders) state: a reward model",
         "AutoModelForSequenceClassification", "SEQ_CLS", new_modules=("classifier", "score"), num_labels=1),
    Head("causal_lm", "the language-modelling head: next-token prediction", "AutoModelForCausalLM", "CAUSAL_LM",
         pad_labels=True, packable=True),
):
    HEADS.register(_head.name, _head)
