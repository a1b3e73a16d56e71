"""Work done once per (model, task) in the sweep process and shared by every trial: the loaded
base model, the tokenizer and the tokenized data (trial processes inherit them through fork)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.measure.memory import model_bytes
from harness.models import resolve
from harness.plan import head_for
from harness.spec import ModelSpec, TaskSpec
from harness.tasks import TaskFamily, family_for
from harness.tasks.data import fingerprint, load_splits, train_test_duplicates
from harness.tasks.heads import HEADS, Head


@dataclass
class Prepared:
    model: Any  # base model with its task head, on the CPU, never trained in this process
    tokenizer: Any
    data: Any  # tokenized DatasetDict
    labels: list[str]
    data_fingerprint: str
    total_params: int
    model_type: str
    source: str  # what from_pretrained reads, for methods that load their own (quantized) copy
    model_spec: ModelSpec
    family: TaskFamily
    head: Head
    splits: Any = None  # the raw splits (text), for baselines that need no model
    validation_source: dict = None  # where the validation split came from, with its size
    train_test_duplicates: int = 0
    model_bytes: int = 0  # the base model's weights and buffers, as loaded in the sweep process
    task: TaskSpec | None = None  # the suite's task entry (objective settings a family reads)
    data_checks: dict | None = None  # rows read and dropped per split, labels only validation/test have

    @property
    def head_names(self) -> tuple[str, ...]:
        """The freshly initialised head modules of this model (they always train)."""
        return self.head.modules_of(self.model)

    def load_variant(self, **kwargs):
        """A fresh copy of the model loaded with extra from_pretrained arguments (quantization)."""
        model, _ = load_model(self.source, self.model_spec, self.head, self.labels, **kwargs)
        return model


def pick_device(requested: str) -> str:
    import torch

    if requested == "auto":
        # The NVML-based check (set in the runner) answers without creating a CUDA context,
        # so trial processes forked later can still initialise CUDA themselves.
        return "cuda" if torch.cuda.is_available() else "cpu"
    return requested


def load_model(source: str, spec: ModelSpec, head: Head | str, labels: list[str], **kwargs):
    """The model with the head the task needs, in the suite's dtype, and its tokenizer."""
    import torch
    from transformers import AutoTokenizer

    head = HEADS.get(head) if isinstance(head, str) else head
    tokenizer = AutoTokenizer.from_pretrained(source, revision=spec.revision)
    if tokenizer.pad_token is None:  # decoder LMs often ship without one
        tokenizer.pad_token = tokenizer.eos_token
    model = head.load(source, spec.revision, getattr(torch, spec.dtype), labels, **kwargs)
    if head.labelled or head.num_labels is not None:  # a classifier on decoders reads the last non-pad token
        model.config.pad_token_id = tokenizer.pad_token_id
    return model, tokenizer


class Preparer:
    """Caches tokenized data per (tokenizer, task, max length) and the current base model."""

    def __init__(self, base_dir: Path, seed: int, max_examples: int | None = None):
        self.base_dir = base_dir
        self.seed = seed
        self.max_examples = max_examples
        self._data: dict[tuple, tuple] = {}
        self._model_key: tuple | None = None
        self._model: tuple | None = None
        self._last: tuple[tuple, Prepared | Exception] | None = None

    def get(self, model_spec: ModelSpec, task: TaskSpec) -> Prepared:
        """The prepared model and data; a preparation that failed raises again (it is not retried)."""
        key = (model_spec, task)
        if self._last is None or self._last[0] != key:
            try:
                self._last = (key, self._prepare(model_spec, task))
            except Exception as exc:  # noqa: BLE001 - each trial of the cell records it
                self._model_key = self._model = None
                self._last = (key, exc)
        if isinstance(self._last[1], Exception):
            raise self._last[1]
        return self._last[1]

    def _prepare(self, model_spec: ModelSpec, task: TaskSpec) -> Prepared:
        from transformers import AutoConfig

        family = family_for(task)
        source = resolve(model_spec, self.base_dir)
        splits, validation_source, data_checks = load_splits(task.data, family, self.base_dir, seed=self.seed,
                                                             cap=self.max_examples)
        config = AutoConfig.from_pretrained(source, revision=model_spec.revision)
        head = head_for(family, config)
        labels = []
        if family.label_field:
            # every split's labels: a small or unlucky training sample may lack a class the test set has
            labels = task.labels or sorted({str(v) for split in splits.values() for v in split[family.label_field]})
        model_key = (source, model_spec.dtype, model_spec.revision, head.name, tuple(labels) if head.labelled else ())
        if model_key != self._model_key:
            self._model = None  # free the previous base model before loading the next
            self._model = load_model(source, model_spec, head, labels)
            self._model_key = model_key
        model, tokenizer = self._model
        data_key = (source, task.model_dump_json(), model_spec.max_length, family.key, head.name)
        if data_key not in self._data:
            tokenized = family.tokenize(splits, tokenizer, model_spec.max_length, labels, head.name)
            self._data[data_key] = (tokenized, fingerprint(splits), train_test_duplicates(splits))
        data, fp, duplicates = self._data[data_key]
        return Prepared(model=model, tokenizer=tokenizer, data=data, labels=labels, data_fingerprint=fp,
                        total_params=sum(p.numel() for p in model.parameters()),
                        model_bytes=model_bytes(model),
                        model_type=model.config.model_type, source=source, model_spec=model_spec,
                        family=family, head=head, splits=splits, validation_source=validation_source,
                        train_test_duplicates=duplicates, task=task, data_checks=data_checks)
