"""The path of a suite from `run_sweep` to its first record, file by file, as the code runs it.

    python tools/call_path.py [--show]     (in a checkout: the harness/ below the working folder)

Runs a one-trial suite on a tiny built-in model inline (runner.isolation: inline, so the trial runs in
this process) under a profile hook until the first record is written, and keeps every call from one
harness file into another. Prints the files the path passes through, the distinct file-to-file calls,
how many of those go up the house (a lower layer calling a higher one: spec, the registries and
records, plan, estimate, runner, report and config, api and cli; ../shared/DESIGN.md), and how many
pairs of files call each other both ways (the path goes back and forth between them). --show lists
the calls. Written by hand: no profiler reports file-to-file calls."""

from __future__ import annotations

import sys
import tempfile
import textwrap
from pathlib import Path

ROOT = Path.cwd() if (Path.cwd() / "harness").is_dir() else Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "harness"
LAYERS = {"spec.py": 0, "errors.py": 0, "methods": 1, "tasks": 1, "models": 1, "measure": 1, "metrics": 1,
          "records": 1, "plan.py": 2, "estimate": 3, "runner": 4, "report": 5, "config": 5, "api.py": 6, "cli.py": 6}

SUITE = """\
name: path
models: [{source: builtin:tiny-bert, max_length: 32}]
tasks: [{name: sentiment, kind: classification, data: {builtin: sentiment, train_size: 32}}]
methods: [{name: lora}]
search: {trials_per_cell: 1, strategy: none}
confirm: {seeds: 0}
training: {max_steps: 2, batch_size: 4, eval_batch_size: 32}
runner: {isolation: inline}
"""


def layer(rel: str) -> int:
    """A file's layer; runner/plan.py (where the plan lived before harness/plan.py) counts as the plan."""
    return LAYERS["plan.py"] if rel == "runner/plan.py" else LAYERS.get(Path(rel).parts[0], 1)


def main() -> int:
    sys.path.insert(0, str(ROOT))
    from harness.config import load_suite
    from harness.runner.progress import Silent
    from harness.runner.sweep import run_sweep

    calls: dict[tuple[str, str], int] = {}
    done = [False]
    inside = str(PACKAGE)

    def hook(frame, event, arg):
        if done[0] or event != "call" or not frame.f_code.co_filename.startswith(inside):
            return
        caller = frame.f_back
        while caller is not None and not caller.f_code.co_filename.startswith(inside):
            caller = caller.f_back  # through library frames (a callback the Trainer calls)
        callee = frame.f_code.co_filename
        if caller is not None and caller.f_code.co_filename != callee:
            key = (caller.f_code.co_filename, callee)
            calls[key] = calls.get(key, 0) + 1
        if frame.f_code.co_name == "write" and "records" in callee:
            done[0] = True

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "path.yaml"
        path.write_text(textwrap.dedent(SUITE))
        loaded = load_suite(str(path))
        sys.setprofile(hook)
        try:
            run_sweep(loaded, Path(tmp) / "results", Silent())
        finally:
            sys.setprofile(None)
    rel = lambda f: str(Path(f).relative_to(PACKAGE))  # noqa: E731
    edges = {(rel(a), rel(b)) for a, b in calls}
    files = {f for edge in edges for f in edge}
    up = sorted((a, b) for a, b in edges if layer(b) > layer(a))
    both_ways = sorted({tuple(sorted(e)) for e in edges if (e[1], e[0]) in edges})
    print(f"run_sweep -> first record: {len(files)} files, {len(edges)} file-to-file calls, {len(up)} of them up "
          f"to a higher layer, {len(both_ways)} pairs of files calling each other both ways")
    if "--show" in sys.argv:
        for a, b in sorted(edges):
            mark = " (up)" if (a, b) in up else ""
            print(f"  {a} -> {b}{mark}")
        for a, b in both_ways:
            print(f"  both ways: {a} <-> {b}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
