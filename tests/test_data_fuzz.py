"""Fuzzing the data loader as the YAML loader is fuzzed: random JSONL and CSV bytes and rows (mixed
types, nulls, huge fields, odd encodings, ragged CSV) give a clean problem or a successful load,
never a traceback or a hang."""

from __future__ import annotations

import codecs
import io
import json
import time
from contextlib import redirect_stderr, redirect_stdout

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness.cli import main

SUITE = """\
name: fuzz
models: [{{source: builtin:tiny-bert, max_length: 32}}]
tasks:
  - name: t
    kind: classification
    data: {{files: {{train: {train}, test: test.jsonl}}{extra}}}
methods: [{{name: lora}}]
"""

scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True), st.text(max_size=30),
                    st.just("x" * 200_000))
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner,
                                                                                             max_size=3), max_leaves=6)
rows = st.lists(st.dictionaries(st.sampled_from(["text", "label", "other", ""]), values, max_size=4), max_size=12)
encodings = st.sampled_from(["utf-8", "utf-8-sig", "utf-16", "latin-1", "cp1252"])


def jsonl_bytes(items: list, noise: bytes, encoding: str, cut: int) -> bytes:
    text = "\n".join(json.dumps(r) for r in items)
    data = text.encode(encoding, errors="replace")
    return data[:cut] + noise if cut < len(data) else data + noise


def csv_bytes(cells: list[list[str]], encoding: str, crlf: bool) -> bytes:
    end = "\r\n" if crlf else "\n"
    text = end.join(",".join(row) for row in [["text", "label"]] + cells)
    return text.encode(encoding, errors="replace")


def validate(tmp_path, name: str, data: bytes, drop: bool) -> tuple[int, str, float, object]:
    (tmp_path / "test.jsonl").write_text('{"text": "fine", "label": "pos"}\n{"text": "bad", "label": "neg"}\n')
    (tmp_path / name).write_bytes(data)
    extra = ", on_bad_rows: drop" if drop else ""
    suite = tmp_path / "suite.yaml"
    suite.write_text(SUITE.format(train=name, extra=extra), encoding="utf-8")
    out, err = io.StringIO(), io.StringIO()
    t0 = time.perf_counter()
    with redirect_stdout(out), redirect_stderr(err):
        code = main(["validate", str(suite)])
    return code, err.getvalue(), time.perf_counter() - t0, suite


CLEAN: list[float] = []  # seconds to validate a clean file, measured in this run


def check(tmp_path, name: str, data: bytes, drop: bool) -> None:
    if not CLEAN:  # the yardstick: the same command on clean rows, in this process
        clean = b"".join(json.dumps({"text": f"row {i}", "label": "pos" if i % 2 else "neg"}).encode() + b"\n"
                         for i in range(20))
        CLEAN.append(min(validate(tmp_path, "clean.jsonl", clean, False)[2] for _ in range(3)))
    code, err, seconds, suite = validate(tmp_path, name, data, drop)
    assert code in (0, 2), err
    assert "Traceback" not in err
    # a hang shows as a ratio to clean data (no wall-clock limit: machines differ)
    assert seconds < 200 * CLEAN[0] + 1.0, f"validate took {seconds:.2f} s, {seconds / CLEAN[0]:.0f}x clean data"
    if code == 0:  # what validate accepts, the loader loads
        from harness.config import load_suite
        from harness.tasks import family_for
        from harness.tasks.data import load_splits

        task = load_suite(suite).suite.tasks[0]
        splits, _, _ = load_splits(task.data, family_for(task), tmp_path)
        assert all(isinstance(t, str) and t.strip() for t in splits["train"]["text"])


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(items=rows, noise=st.binary(max_size=40), encoding=encodings, cut=st.integers(0, 4000), drop=st.booleans())
def test_random_jsonl_is_a_clean_problem_or_a_load(tmp_path, items, noise, encoding, cut, drop):
    check(tmp_path, "train.jsonl", jsonl_bytes(items, noise, encoding, cut), drop)


cells = st.lists(st.lists(st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=12), min_size=0,
                          max_size=4), max_size=12)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cells=cells, encoding=encodings, crlf=st.booleans(), bom=st.booleans(), drop=st.booleans())
def test_random_csv_is_a_clean_problem_or_a_load(tmp_path, cells, encoding, crlf, bom, drop):
    data = csv_bytes(cells, encoding, crlf)
    check(tmp_path, "train.csv", (codecs.BOM_UTF8 if bom else b"") + data, drop)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=600), suffix=st.sampled_from(["train.jsonl", "train.csv", "train.json"]))
def test_random_bytes_are_a_clean_problem_or_a_load(tmp_path, data, suffix):
    check(tmp_path, suffix, data, drop=False)
