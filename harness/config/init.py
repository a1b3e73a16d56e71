"""`harness init`: a first suite from a user's own data files. The columns name the task kind
(a label-like column with few values: classification; question/answer: qa; document/summary:
summarization; chosen/rejected: preference); the data checks run; the suite written is commented
and accepted by `harness validate`. Where two readings fit, it refuses and names the flag that
settles it."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.errors import Problem, UserError
from harness.tasks.rows import FileProblem, read_rows

SAMPLE_ROWS = 2000  # rows read to detect columns and lengths (the checks read every row)
LABEL_MAX_VALUES = 20  # a label-like column has at most this many distinct values ...
LABEL_MAX_SHARE = 0.5  # ... and at most this share of the rows

# column names (lower case) that say what a column holds
QUESTION = ("question", "query", "prompt_question")
ANSWER = ("answer", "final_decision", "answer_idx", "label", "correct", "gold")
CONTEXT = ("context", "contexts", "passage", "abstract", "background")
OPTIONS = ("options", "choices", "candidates")
DOCUMENT = ("document", "dialogue", "dialog", "article", "source", "text", "input", "conversation")
SUMMARY = ("summary", "summary1", "highlights", "target", "tldr", "abstractive_summary")
QUICKSTART_METHODS = ("full", "lora", "qlora", "bitfit", "ln_tuning")
DEFAULT_MODELS = {"classification": "builtin:minilm-l6", "qa": "builtin:minilm-l6",
                  "summarization": "builtin:smollm2-135m", "preference": "builtin:smollm2-135m"}


@dataclass
class Reading:
    """One way to read the columns: a task kind and which column feeds each of its fields."""

    kind: str
    columns: dict[str, str]  # task field -> the data's column
    why: str
    other_labels: list[str] = field(default_factory=list)  # further label-like columns (classification)

    def describe(self) -> str:
        return f"{self.kind} ({', '.join(f'{k}={v}' for k, v in self.columns.items())})"


def _sample(path: Path) -> list[dict[str, Any]]:
    rows = []
    try:
        for row in read_rows(path):
            if row.values is not None:
                rows.append(row.values)
            if len(rows) >= SAMPLE_ROWS:
                break
    except FileProblem as exc:
        raise UserError([Problem(str(path), exc.line, "", exc.message)]) from None
    if not rows:
        raise UserError([Problem(str(path), None, "", "no row could be read: harness init needs data to look at")])
    return rows


def _find(columns: list[str], names: tuple[str, ...]) -> str | None:
    lowered = {c.lower(): c for c in columns}
    return next((lowered[n] for n in names if n in lowered), None)


def _mean_length(rows: list[dict], column: str) -> float:
    texts = [v for r in rows if isinstance(v := r.get(column), str)]
    return sum(map(len, texts)) / len(texts) if len(texts) >= 0.9 * len(rows) else 0.0


def _label_like(rows: list[dict], column: str) -> bool:
    values = [r.get(column) for r in rows]
    if any(isinstance(v, (list, dict)) for v in values):
        return False
    distinct = {str(v) for v in values if v is not None}
    return 2 <= len(distinct) <= min(LABEL_MAX_VALUES, max(2, LABEL_MAX_SHARE * len(rows)))


def readings(rows: list[dict]) -> list[Reading]:
    """Every task kind whose shape the columns fit."""
    columns = list(dict.fromkeys(c for r in rows for c in r))
    out = []
    chosen, rejected = _find(columns, ("chosen",)), _find(columns, ("rejected",))
    if chosen and rejected:
        mapping = {"chosen": chosen, "rejected": rejected}
        prompt = _find(columns, ("prompt", "question", "instruction"))
        if prompt:
            mapping = {"prompt": prompt, **mapping}
        out.append(Reading("preference", mapping, "columns chosen and rejected: preference pairs"))
    question, answer = _find(columns, QUESTION), _find(columns, ANSWER)
    if question and answer and answer != question:
        mapping = {"question": question, "answer": answer}
        for f, names in (("context", CONTEXT), ("options", OPTIONS)):
            if _find(columns, names):
                mapping[f] = _find(columns, names)
        out.append(Reading("qa", mapping, f"a question column ({question}) and an answer column ({answer})"))
    document, summary = _find(columns, DOCUMENT), _find(columns, SUMMARY)
    if document and summary and document != summary:
        out.append(Reading("summarization", {"document": document, "summary": summary},
                           f"a document column ({document}) and a summary column ({summary})"))
    claimed = {c for r in out for f, c in r.columns.items() if f not in ("document",)}
    texts = sorted((c for c in columns if _mean_length(rows, c) > 0), key=lambda c: -_mean_length(rows, c))
    labels = [c for c in columns if c not in claimed and _label_like(rows, c)]
    text = next((c for c in texts if c not in labels and c not in claimed), None) or \
        next((c for c in texts if c not in labels), None)
    if text and labels:
        reading = Reading("classification", {"text": text, "label": labels[0]},
                          f"a text column ({text}) and a label-like column ({labels[0]}: "
                          f"{len({str(r.get(labels[0])) for r in rows})} distinct values)")
        reading.other_labels = labels[1:]
        out.append(reading)
    return out


def choose(rows: list[dict], kind: str | None, columns: dict[str, str], path: Path) -> Reading:
    """The one reading that fits (with --kind and --column applied); UserError naming the flag that
    settles it where none or several do."""
    found = readings(rows)
    if kind is not None:
        found = [r for r in found if r.kind == kind] or [Reading(kind, {}, f"--kind {kind}")]
    for r in found:
        r.columns.update(columns)
    file = str(path)
    have = list(dict.fromkeys(c for r in rows for c in r))
    if not found:
        raise UserError([Problem(file, None, "", (
            f"no task kind fits these columns ({', '.join(have)}): name it with --kind (classification, qa, "
            f"summarization, preference) and the columns with --column FIELD=COLUMN (e.g. --column text=review "
            f"--column label=stars)"))])
    if len(found) > 1:
        options = "; ".join(f"--kind {r.kind} reads it as {r.describe()}" for r in found)
        raise UserError([Problem(file, None, "", f"two readings fit these columns, and harness init does not "
                                                       f"guess: {options}")])
    reading = found[0]
    if reading.other_labels and "label" not in columns:
        candidates = ", ".join([reading.columns["label"], *reading.other_labels])
        raise UserError([Problem(file, None, "", (
            f"several columns could be the label ({candidates}): name it with --column label=COLUMN"))])
    missing = [c for c in reading.columns.values() if c not in have]
    if missing:
        raise UserError([Problem(file, None, "", f"no column {missing[0]!r}; the data has: {', '.join(have)}")])
    return reading


def _max_length(rows: list[dict], reading: Reading, limit: int | None) -> int:
    """Tokens that hold 95% of the sampled inputs (~1.4 tokens a word), rounded up to 32, within the
    model's limit and 512 (CPU-friendly; say so in the suite)."""
    fields = [f for f in reading.columns if f not in ("label", "answer", "options")]
    lengths = sorted(sum(len(str(r.get(reading.columns[f]) or "").split()) for f in fields) for r in rows)
    p95 = lengths[min(len(lengths) - 1, math.ceil(0.95 * len(lengths)) - 1)] if lengths else 32
    tokens = 32 * math.ceil(max(32, 1.4 * p95) / 32)
    return min(tokens, 512, limit or 512)


def _methods_for(model: str, kind: str) -> tuple[list[str], list[str]]:
    """The quickstart's methods that can run this model and task (validate's own checks), and why the
    others cannot."""
    from harness import models
    from harness.methods import METHODS
    from harness.spec import ModelSpec
    from harness.tasks import family_of

    info = models.model_info(ModelSpec(source=model), Path.cwd())
    family = family_of(kind)
    keep, left = [], []
    for name in QUICKSTART_METHODS:
        method = METHODS.get(name)
        head = family.head_for(info.is_decoder) if info else None
        reason = (method.check(info, head) if info and head else None) or family.method_problem(method)
        (left.append(f"{name}: {reason}") if reason else keep.append(name))
    return keep, left


def _rel(path: Path, folder: Path) -> str:
    import os

    return os.path.relpath(path.resolve(), folder.resolve())


def suite_text(name: str, reading: Reading, model: str, max_length: int, files: dict[str, Path], out: Path,
               methods: list[str], left_out: list[str], drop: bool, n_rows: int) -> str:
    folder = out.parent
    columns = {f: c for f, c in reading.columns.items() if f != c}
    data = "{" + ", ".join(f"{s}: {_rel(p, folder)}" for s, p in files.items()) + "}"
    def c(code: str, comment: str = "") -> str:  # comments in one column, as a person would write them
        return f"{code:<34}# {comment}" if comment else code

    lines = [
        f"# Written by harness init from {_rel(files['train'], Path.cwd())}: {reading.why}.",
        "# Check it, then:  harness run " + _rel(out, Path.cwd()) + " --smoke   (every cell once, minutes)",
        "#                  harness run " + _rel(out, Path.cwd()) + "           (the sweep)",
        f"name: {name}",
        "models:",
        c(f"  - source: {model}", "an encoder: classifies" if "minilm" in model else "a decoder LM"),
        c(f"    max_length: {max_length}", "~95% of the sampled inputs fit (at most 512 here: CPU-friendly)"),
        c("    dtype: float32", "bfloat16 on a GPU; on CPUs bf16 is ~25x slower"),
        "tasks:",
        f"  - name: {name}",
        f"    kind: {reading.kind}",
        "    data:",
        f"      files: {data}",
    ]
    if columns:
        lines.append(c("      columns: {" + ", ".join(f"{f}: {col}" for f, col in columns.items()) + "}",
                       "task field: your column"))
    if "validation" not in files:
        lines.append("      # no validation file: 10% of train is carved out (seeded); choices read it, never test")
    if drop:
        lines.append(c("      on_bad_rows: drop", "bad rows are left out and counted on the report"))
    if n_rows > 2000:
        lines.append(c("      train_size: 2000", "a first sweep on a sample; remove for the whole training file"))
    lines += [c("methods:", "the quickstart's; harness ls methods lists all")]
    lines += [f"  - name: {m}" for m in methods]
    lines += [f"  # left out: {why}" for why in left_out]
    lines += [
        "search:",
        c("  trials_per_cell: 3", "the same budget for every method; trial 0 is each method's defaults"),
        "confirm:",
        c("  seeds: 3", "the validation-best configuration re-run with fresh seeds, reported on test"),
        "training:",
        "  max_steps: 100",
        "  batch_size: 16",
        "",
    ]
    return "\n".join(lines)


def init_suite(train: Path, test: Path | None, validation: Path | None, model: str | None, kind: str | None,
               columns: dict[str, str], out: Path | None, name: str | None, drop: bool, force: bool = False) -> Path:
    """Write the suite and return its path; UserError (nothing written) where the data or the reading
    is not clear, or the suite would not validate."""
    from harness.config import load_suite
    from harness.models import BUILTIN_MODELS

    problems = [Problem("harness init", None, flag, f"file not found: {p}")
                for flag, p in (("--data", train), ("--test", test), ("--validation", validation))
                if p is not None and not p.is_file()]
    if test is None:
        problems.append(Problem("harness init", None, "--test", (
            "a suite reports on a test file the search never reads: give --test FILE (split one file into "
            "two first if you have one; see docs/data.md)")))
    if problems:
        raise UserError(problems)
    rows = _sample(train)
    reading = choose(rows, kind, columns, train)
    model = model or DEFAULT_MODELS[reading.kind]
    limit = None
    if model.startswith("builtin:") and model.removeprefix("builtin:") in BUILTIN_MODELS:
        limit = BUILTIN_MODELS.get(model.removeprefix("builtin:")).info.max_positions
    name = name or re.sub(r"[-_.]?train$", "", train.stem).replace(".", "-") or train.stem
    out = out or Path(f"{name}.yaml")
    if out.exists() and not force:
        raise UserError([Problem("harness init", None, "--out", f"{out} exists: name another with --out, or "
                                                                 f"replace it with --force")])
    files = {"train": train, **({"validation": validation} if validation else {}), "test": test}
    methods, left_out = _methods_for(model, reading.kind)
    n_rows = sum(1 for r in read_rows(train) if r.values is not None) if len(rows) >= SAMPLE_ROWS else len(rows)
    text = suite_text(name, reading, model, _max_length(rows, reading, limit), files, out, methods, left_out,
                      drop, n_rows)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.init")
    tmp.write_text(text, encoding="utf-8")
    try:
        load_suite(tmp)  # validate's own checks: the data read whole, the columns, the methods
    except UserError as err:
        tmp.unlink()
        bad_rows = any(p.file != str(tmp) for p in err.problems)
        hint = [] if drop or not bad_rows else [Problem("harness init", None, "", (
            "nothing written: fix the rows named above, or run harness init again with --on-bad-rows drop to "
            "leave them out (counted on the report)"))]
        raise UserError([p if p.file != str(tmp) else Problem(str(out), p.line, p.path, p.message)
                         for p in err.problems] + hint) from None
    tmp.replace(out)
    return out
