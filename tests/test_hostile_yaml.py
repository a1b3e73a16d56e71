"""Hostile and malformed suites: each class gets a clean message and exit 2 within 2 s, never a
traceback or a hang; then a property-based fuzz test over random documents and mutated shipped suites."""

from __future__ import annotations

import io
import time
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from harness.cli import main
from harness.config.yaml_lines import MAX_BYTES

REPO = Path(__file__).resolve().parents[1]
SUITES = sorted((REPO / "suites").glob("*.yaml"))
SHIPPED = {p.name: yaml.safe_load(p.read_text()) for p in SUITES}


def validate(path: Path) -> tuple[int, str, float]:
    out, err = io.StringIO(), io.StringIO()
    t0 = time.perf_counter()
    with redirect_stdout(out), redirect_stderr(err):
        code = main(["validate", str(path)])
    return code, err.getvalue(), time.perf_counter() - t0


@pytest.fixture(scope="module")
def shipped_s() -> float:
    """The yardstick: seconds to validate the shipped quickstart suite, in this run."""
    return min(validate(REPO / "suites" / "quickstart.yaml")[2] for _ in range(3))


def billion_laughs(levels: int = 12) -> str:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    for i in range(1, levels):
        prev = f"*a{i - 1}"
        lines.append(f"a{i}: &a{i} [{', '.join([prev] * 10)}]")
    return "\n".join(lines) + f"\nname: x\nmodels: *a{levels - 1}\n"


HOSTILE = {
    "alias-bomb": (billion_laughs(), "expands to more than"),
    "self-alias-list": ("name: x\nmodels: &m [*m]\n", "cycle"),
    "self-alias-map": ("name: x\nmodels: &m\n  - source: *m\n", "cycle"),
    "deep-flow": ("name: x\nmodels: " + "[" * 5000 + "]" * 5000 + "\n", "nesting"),
    "deep-block": ("name: x\nmodels:\n" + "".join("  " * (i + 1) + "- \n" for i in range(300)), "nesting"),
    "models-a-number": ("name: x\nmodels: 5\ntasks: 3\nmethods: {a: 1}\n", "valid list"),
    "models-items-wrong": ("name: x\nmodels: [3, [1], null]\ntasks: [{kind: [1], name: {}}]\n"
                           "methods: [{name: [lora]}]\n", "models[0]"),
    "top-level-list": ("- a\n- b\n", "must be a YAML mapping"),
    "top-level-scalar": ("hello\n", "must be a YAML mapping"),
    "unhashable-key": ("name: x\n? [a, b]\n: c\n", "YAML syntax error"),
    "two-documents": ("name: x\n---\nname: y\n", "YAML syntax error"),
    "binary": ("name: \x00\x01\n", "YAML syntax error"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_yaml_is_refused_cleanly_and_fast(case, tmp_path, shipped_s):
    text, words = HOSTILE[case]
    path = tmp_path / f"{case}.yaml"
    path.write_text(text, encoding="utf-8")
    code, err, seconds = validate(path)
    assert code == 2, err
    assert words in err and str(path) in err
    assert "Traceback" not in err
    # refused about as fast as a good suite is checked (here 1-2x; 100x leaves room for a busy machine): a
    # ratio to a yardstick measured in this run, not a wall-clock limit
    assert seconds < 100 * shipped_s, f"{case} took {seconds:.2f} s, {seconds / shipped_s:.1f}x the quickstart's check"


def test_oversized_file_is_refused(tmp_path, shipped_s):
    path = tmp_path / "big.yaml"
    path.write_text("name: x\n" + "# padding\n" * (MAX_BYTES // 10 + 10), encoding="utf-8")
    code, err, seconds = validate(path)
    assert code == 2 and "a suite may be at most" in err and seconds < 100 * shipped_s


def test_method_parameters_are_typed(tmp_path):
    suite = dict(SHIPPED["quickstart.yaml"])
    suite["methods"] = [{"name": "lora", "params": {"r": "sixteen", "lora_dropout": 1.5, "use_dora": "yes"},
                         "search": {"r": {"low": 2.5, "high": 8}, "alpha_ratio": {"choices": [1.0, -2.0]},
                                    "use_rslora": {"low": 0, "high": 1}}},
                        {"name": "qlora", "params": {"quant_type": "int3", "learning_rate": -1.0}},
                        {"name": "adalora", "params": {"init_r": 4, "target_r": 8}}]
    path = tmp_path / "typed.yaml"
    path.write_text(yaml.safe_dump(suite, sort_keys=False))
    code, err, _ = validate(path)
    assert code == 2
    for expected in ("methods[0].params.r: Input should be a valid integer, but got 'sixteen'",
                     "methods[0].params.lora_dropout: Input should be less than 1",
                     "methods[0].params.use_dora: Input should be a valid boolean",
                     "methods[0].search.r: r is a whole number",
                     "methods[0].search.alpha_ratio.choices[1]: Input should be greater than 0",
                     "methods[0].search.use_rslora: use_rslora is not a number (bool)",
                     "methods[1].params.quant_type: Input should be 'nf4' or 'fp4'",
                     "methods[1].params.learning_rate: Input should be greater than 0",
                     "methods[2].params: target_r <= init_r must hold"):
        assert expected in err, f"{expected!r} not in:\n{err}"


# --- fuzzing -------------------------------------------------------------------------------------

scalars = st.one_of(st.none(), st.booleans(), st.integers(-10**6, 10**6), st.floats(allow_nan=True),
                    st.text(max_size=20), st.sampled_from(["lora", "builtin:tiny-bert", "classification",
                                                           "sentiment", "full", "accuracy", "~nobody/x", "./m"]))
values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                        st.dictionaries(st.text(max_size=12), inner, max_size=4)),
                      max_leaves=25)
KEYS = ["name", "models", "tasks", "methods", "search", "training", "source", "kind", "data", "params",
        "builtin", "files", "columns", "low", "high", "choices", "r", "learning_rate", "train_sizes", "metric"]


def _paths(node, prefix=()):
    yield prefix
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _paths(v, prefix + (k,))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _paths(v, prefix + (i,))


@st.composite
def mutated_suites(draw):
    """A shipped suite with a few random edits: a value replaced, a key dropped or added."""
    import copy

    doc = copy.deepcopy(SHIPPED[draw(st.sampled_from(sorted(SHIPPED)))])
    for _ in range(draw(st.integers(1, 4))):
        paths = [p for p in _paths(doc) if p]
        path = draw(st.sampled_from(paths))
        holder = doc
        for part in path[:-1]:
            holder = holder[part]
        action = draw(st.sampled_from(["replace", "drop", "add"]))
        if action == "replace":
            holder[path[-1]] = draw(values)
        elif action == "drop" and isinstance(holder, dict):
            holder.pop(path[-1], None)
        elif isinstance(holder, dict):
            holder[draw(st.sampled_from(KEYS))] = draw(values)
    return yaml.safe_dump(doc, sort_keys=False, allow_unicode=True)


@st.composite
def garbled_text(draw):
    """A shipped suite's text with characters cut, doubled or replaced."""
    text = SUITES[draw(st.integers(0, len(SUITES) - 1))].read_text()
    for _ in range(draw(st.integers(1, 6))):
        i = draw(st.integers(0, len(text)))
        text = text[:i] + draw(st.sampled_from(["", "&a ", "*a", "[", "]", "{", ": ", "\n  ", "- ", "'", "!!python/object "]))\
            + text[i + draw(st.integers(0, 3)):]
    return text


documents = st.one_of(mutated_suites(), garbled_text(),
                      values.map(lambda v: yaml.safe_dump(v, allow_unicode=True)), st.text(max_size=200))
FUZZ_EXAMPLES = int(__import__("os").environ.get("FUZZ_EXAMPLES", "400"))


@settings(max_examples=FUZZ_EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                            HealthCheck.too_slow])
@given(text=documents)
def test_fuzz_validate_never_raises(text, tmp_path):
    path = tmp_path / "fuzz.yaml"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    code, err, seconds = validate(path)  # an exception here fails the test with its traceback
    assert code in (0, 2)
    event(f"exit {code}")
    assert "Traceback" not in err
    if code == 2:
        assert err.strip().splitlines()[0].endswith(":") and str(path) in err  # "N problems:" then lines
    assert seconds < 2.0
