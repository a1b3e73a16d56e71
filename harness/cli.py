"""The `harness` command: thin subcommands over config, runner and report. Heavy libraries are
imported only by the subcommands that train, so validate/ls answer in well under a second."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from harness.errors import Problem, SweepFailed, UserError


def _print_problems(err: UserError) -> None:
    # Plain lines, never wrapped: "file:line: path: message" must stay greppable and clickable.
    n = len(err.problems)
    lines = [f"{n} problem{'s' if n != 1 else ''}:"] + [f"  {problem}" for problem in err.problems]
    sys.stderr.write("\n".join(lines) + "\n")


def cmd_validate(args) -> int:
    from rich.console import Console

    from harness.config import load_suite

    problems = []
    for path in args.suites:
        try:
            loaded = load_suite(path)
            Console(highlight=False).print(f"[green]ok[/] {path} ({len(loaded.suite.models)} models, "
                                           f"{len(loaded.suite.tasks)} tasks, {len(loaded.suite.methods)} methods)")
        except UserError as err:
            problems.extend(err.problems)
    if problems:
        raise UserError(problems)
    return 0


def cmd_init(args) -> int:
    """A first suite from the user's own data files (harness/config/init.py)."""
    from harness.config.init import init_suite

    columns = {}
    for item in args.column:
        key, sep, value = item.partition("=")
        if not sep or not key or not value:
            raise UserError([Problem("harness init", None, "--column", f"{item!r}: write it as FIELD=COLUMN, "
                                                                        f"e.g. text=review")])
        columns[key] = value
    out = init_suite(Path(args.data), Path(args.test) if args.test else None,
                     Path(args.validation) if args.validation else None, args.model, args.kind, columns,
                     Path(args.out) if args.out else None, args.name, args.on_bad_rows == "drop", args.force)
    print(f"wrote {out}: harness validate accepts it. Next: harness run {out} --smoke, then harness run {out}")
    return 0


def cmd_ls(args) -> int:
    """One line per registered entry (plain text: easy to read, easy to grep)."""
    rows: list[tuple[str, ...]] = []
    if args.what == "methods":
        from harness.methods import METHODS

        for name in METHODS:
            m = METHODS.get(name)
            print(f"{name}  ({m.family})  {m.summary}")
            print(f"    training: {' '.join(f'{k}={v}' for k, v in m.training.items())}   "
                  f"search: {m.describe_space() or '-'}")
            for line in m.describe_params():
                print(f"    {line}")
        return 0
    elif args.what == "tasks":
        from harness.tasks import TASKS
        from harness.tasks.builtin_data import BUILTIN_DATA

        for name in TASKS:
            t = TASKS.get(name)
            metrics = " ".join(f"{k}{'↑' if up else '↓'}" for k, up in t.metrics.items())
            kind = t.name + (f" (objective: {t.objective})" if t.objective else f" (head: {t.variant})" if t.variant else "")
            heads = f"encoders: {t.encoder_head or '-'}, decoders: {t.decoder_head or '-'}"
            rows.append((kind, f"fields: {','.join(t.fields)}", f"metrics: {metrics}", heads, t.summary))
        for name in BUILTIN_DATA:
            d = BUILTIN_DATA.get(name)
            rows.append((f"builtin:{name}", f"data for {d.kind}", d.summary))
    else:
        from harness.models import BUILTIN_MODELS

        for name in BUILTIN_MODELS:
            m = BUILTIN_MODELS.get(name)
            rows.append((f"builtin:{name}", m.info.model_type, m.summary))
        rows.append(("<org/name>", "hub", "any Hugging Face hub id (needs the hub or its local cache)"))
        rows.append(("<./folder>", "local", "a folder with config.json and weights"))
    widths = [max(len(r[i]) for r in rows if len(r) > i) for i in range(max(map(len, rows)) - 1)]
    for row in rows:
        print("  ".join(cell.ljust(widths[i]) if i < len(widths) else cell for i, cell in enumerate(row)).rstrip())
    return 0


def cmd_run(args) -> int:
    from harness.api import run

    gpus = _gpus(args)
    results = run(args.suite, results=args.results, reports=args.reports, quiet=args.quiet, workers=args.workers,
                  gpus=gpus, storage=args.storage, smoke=args.smoke, gpu_memory=args.gpu_memory,
                  verbose=args.verbose, wide=args.wide)
    print(f"records: {results.root}/records   report: {results.page}")
    return results.exit_code


def _gpus(args) -> list[str] | None:
    """--gpus 0-7 / 0,1,2,3 / GPU UUIDs: the devices this command's workers lease to trials."""
    if not args.gpus:
        return None
    from harness.runner.leases import parse_devices

    try:
        return parse_devices(args.gpus)
    except ValueError as exc:
        raise UserError([Problem(f"harness {args.command}", None, "--gpus", f"{args.gpus!r}: {exc}")]) from None


def cmd_worker(args) -> int:
    """One worker of a suite on shared storage: claims trials until the suite is done; publishes nothing."""
    from harness.config import load_suite
    from harness.report.terminal import ProgressView
    from harness.runner.sweep import planned_trials, prepare_run, run_sweep

    loaded, root = prepare_run(load_suite(args.suite), args.results, smoke=False)
    with ProgressView(total=planned_trials(loaded), quiet=args.quiet) as view:
        outcome = run_sweep(loaded, root, view, gpus=_gpus(args), storage_url=args.storage, verbose=args.verbose)
    print(f"worker done: the suite's budget and confirmations are claimed and finished "
          f"({outcome.elapsed_s:.0f} s); `harness report --storage URL {loaded.suite.name}` shows the results")
    return 0


def cmd_export(args) -> int:
    """Write a results set held in PostgreSQL as today's files: records/<cell>/*.json and suite.yaml."""
    from harness.records.store import open_store

    source = open_store(args.storage, args.suite)
    records = source.load_all()
    if not records:
        raise UserError(f"{source.where}: no records")
    target = open_store(Path(args.out))
    for record in records:
        target.write(record)
    text = source.saved_suite()
    if text:
        target.save_suite(text)
    print(f"exported {len(records)} records to {target.root}")
    return 0


def library_log(folder: Path):
    """The libraries' warnings and log records (a decision.target's estimate applies methods on the meta
    device; bitsandbytes says what it could not load) to folder/harness.log, not the terminal."""
    from harness.runner.logs import captured

    return captured(folder / "harness.log", False)


def cmd_recommend(args) -> int:
    """The answer for an existing results set, with the suite's decision settings or the command line's."""
    import json

    from rich.console import Console

    from harness.records.store import open_store
    from harness.report.decide import decision, decision_of
    from harness.report.publish import answer_terms

    folder = Path(args.results_dir)
    if not args.storage and not folder.is_dir():
        raise UserError(f"{folder}: results folder not found")
    store = open_store(args.storage or folder, args.results_dir)
    records = store.load_all()
    if not records:
        raise UserError(f"{store.where}: no trial records found")
    from harness.estimate import unknown_gpu

    prefer = [p.strip() for p in args.prefer.split(",") if p.strip()] if args.prefer else None
    if (problem := unknown_gpu(args.gpu)) is not None:
        raise UserError(f"harness recommend --gpu: {problem}")
    suite_text = store.saved_suite() or ""
    saved = decision_of(suite_text)
    given = {k: v for k, v in (("gpu", args.gpu), ("memory", args.memory)) if v is not None}
    serve = {"serve_with": args.serve_with} if args.serve_with else {}
    limits = {**saved.limits.model_dump(), **given, **serve} if given or serve else None
    target = {**saved.target.model_dump(), **given} if given and saved.target else None
    try:
        with library_log(folder if folder.is_dir() else store.reports_dir() / records[0].suite):
            terms = answer_terms(suite_text, records, store.reports_dir() / records[0].suite, Path.cwd(),
                                 tolerance=args.tolerance, prefer=prefer, limits=limits, target=target)
    except ValueError as exc:  # pydantic's ValidationError: a tolerance <= 0, an unknown preference, a bad size
        raise UserError(f"harness recommend: {'; '.join(e['msg'] for e in exc.errors())} "
                        f"(--tolerance > 0; --prefer from train_memory, train_time, forgetting, serving_latency, "
                        f"serving_memory; --memory e.g. 24GiB)") from None
    spec = terms.spec
    decided = decision(records, terms)
    if args.json:
        print(json.dumps(decided, indent=1))
        return 0
    console = Console(highlight=False, width=None if sys.stdout.isatty() else 100)
    for part in decided:
        console.print(f"[bold]{part['task']} · {part['model']}:[/] {part['answer']}")
        for row in part["methods"]:
            n = row["more_seeds"]
            more = f" (+{n} seed{'s' if n != 1 else ''} would likely decide it)" if n else ""
            diff = f" {row['diff_vs_best']:+.4f}" if row["diff_vs_best"] is not None else ""
            broken = f"; breaks {', '.join(row['breaks'])}" if row["breaks"] else ""
            console.print(f"  {row['method']}: {row['verdict'] or 'no verdict (one seed)'}{diff}{more}{broken}",
                          markup=False)
    limits = ", ".join(f"{k} {v}" for k, v in spec.limits.model_dump(exclude_none=True).items())
    print(f"tolerance ±{spec.tolerance:g}; prefer {', '.join(spec.prefer)}" + (f"; limits: {limits}" if limits else ""))
    return 0


def cmd_report(args) -> int:
    from harness.records.store import open_store
    from harness.report.publish import publish

    folder = Path(args.results_dir)
    if not args.storage and not folder.is_dir():
        raise UserError(f"{folder}: results folder not found")
    store = open_store(args.storage or folder, args.results_dir)
    suite_text = store.saved_suite() or ""
    records = store.load_all(skip_bad=args.skip_bad)
    for problem in store.skipped:
        print(f"skipped: {problem}", file=sys.stderr)
    if not records:
        raise UserError(f"{folder}: no trial records found (expected records/<cell>/trial-*.json)")
    out = Path(args.out) if args.out else store.reports_dir() / records[0].suite
    storage = store.study_storage_url if store.has_studies() else None
    with library_log(folder if folder.is_dir() else out):  # a decision.target's estimate says things
        page = publish(records, out, storage, suite_text, study_prefix=store.study_name(''), wide=args.wide).page
    print(f"report: {page}")
    return 0


# Where each part of the bench's one-cell suite comes from on the command line.
BENCH_FLAGS = {"models[0].source": "--model", "models[0].max_length": "--max-length", "models[0].dtype": "--dtype",
               "tasks[0].data": "--data", "methods[0]": "--method/--param", "training.max_steps": "--steps",
               "training.batch_size": "--batch-size", "training.eval_batch_size": "--eval-batch-size",
               "tasks[0].head": "--head", "tasks[0]": "--data", "acceleration": "--accelerate"}


def _bench_problem(problem: Problem) -> Problem:
    flag = next((f for prefix, f in BENCH_FLAGS.items() if problem.path.startswith(prefix)), problem.path)
    return Problem(file="harness bench", line=None, path=flag, message=problem.message)


def cmd_bench(args) -> int:
    from harness.config.loader import check_raw  # the checks validate runs
    from harness.config.yaml_lines import LineMap
    from harness.runner.bench import bench_raw, print_bench, run_bench

    def pairs(items: list[str], flag: str) -> dict:
        import yaml

        out = {}
        for item in items:
            key, sep, value = item.partition("=")
            if not sep:
                raise UserError([_bench_problem(Problem("", None, flag, f"{item!r}: write it as key=value"))])
            out[key] = yaml.safe_load(value)  # 16 -> int, all-linear -> str, true -> bool
        return out

    raw = bench_raw(args.model, args.method, args.steps, args.batch_size, args.max_length, args.data,
                    args.dtype, pairs(args.param, "--param"), phase_peaks=not args.no_phase_reset, head=args.head,
                    acceleration=pairs(args.accelerate, "--accelerate"), eval_batch_size=args.eval_batch_size,
                    test_size=args.test_size)
    suite, problems = check_raw(raw, Path.cwd(), lines=LineMap("harness bench"))
    if problems:
        raise UserError([_bench_problem(p) for p in problems])
    from harness.tasks import family_for

    if family_for(suite.tasks[0]).trainer is not None:
        raise UserError([Problem("harness bench", None, "--data", (
            f"{args.data} is a {suite.tasks[0].kind} set: it trains through TRL's own trainer, which the bench's "
            f"bare loop does not reproduce; measure it with harness run (suites/preference.yaml)"))])
    if args.serving:
        from harness.runner.serving_bench import print_serving_bench, run_serving_bench

        print_serving_bench(run_serving_bench(suite, repeats=args.repeats, json_out=args.json))
        return 0
    print_bench(run_bench(suite, only=args.only, json_out=args.json, repeats=args.repeats))
    return 0


def cmd_estimate(args) -> int:
    """Predicted peak memory, fit and speed of every training cell, from the models' configs alone."""
    import json

    from harness.estimate import target_for, unknown_gpu
    from harness.estimate.suite import estimate_suite, load_calibration, print_calibration, print_estimates

    calibration = load_calibration(args.calibrate) if args.calibrate else None
    if calibration and not args.json:
        print_calibration(calibration)
    if args.suite is None:
        if calibration is None:
            raise UserError("harness estimate: give a SUITE, or --calibrate RESULTS_DIR, or both")
        return 0
    from harness.config import load_suite

    if (problem := unknown_gpu(args.gpu)) is not None:
        raise UserError([Problem("harness estimate", None, "--gpu", problem)])
    from harness.api import memory_option

    gpu_memory = memory_option(args.gpu_memory, "harness estimate") if args.gpu_memory else None
    loaded = load_suite(args.suite)
    from harness.runner.prepare import pick_device

    target = target_for(pick_device(loaded.suite.training.device), args.gpu, gpu_memory,
                        loaded.suite.runner.memory_limit)
    from harness.runner.logs import captured

    # peft's and transformers' warnings while the methods are applied on the meta device: to a log
    log = Path(loaded.suite.output.results_dir) / loaded.suite.name / "estimate.log"
    with captured(log, args.verbose):
        estimates = estimate_suite(loaded, target, calibration)
    if args.json:
        print(json.dumps({"target": {"device": target.device, "gpu": target.gpu_name,
                                     "memory_limit_bytes": target.memory_limit_bytes,
                                     "peak_flops": target.peak_flops, "peak_source": target.peak_source},
                          "cells": [e.to_json() for e in estimates]}, indent=1))
    else:
        print_estimates(estimates, target)
    return 0


def cmd_schema(args) -> int:
    """The suite's JSON Schema on stdout (harness schema > suite.schema.json), or its Markdown
    reference (harness schema --markdown > docs/suites.md)."""
    import json

    if args.markdown:
        from harness.config.reference import suite_reference

        sys.stdout.write(suite_reference())
        return 0
    from harness.config.schema import suite_schema

    print(json.dumps(suite_schema(), indent=1))
    return 0


def cmd_compare(args) -> int:
    from harness.report.compare import run_compare

    with library_log(Path(args.out) if args.out else Path("reports") / "compare"):
        return run_compare(args.baseline, args.candidate, args.out, {
            "quality_abs": args.quality_abs, "memory_rel": args.memory_rel,
            "throughput_rel": args.throughput_rel, "time_rel": args.time_rel}, allow_mismatch=args.allow_mismatch)


def cmd_trend(args) -> int:
    from harness.report.trend import write_trend

    print(f"trend: {write_trend(args.history, args.out)}")
    return 0


def _at_least_one(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number")
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is less than 1")
    return value


def _chatter_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--verbose", action="store_true",
                   help="show the libraries' warnings and log lines on the terminal (by default they go to "
                        "results/<suite>/run.log; those that could change a number are on the report)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="harness", description="Compare fine-tuning methods under equal search budgets.")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("run", help="sweep a suite and print its leaderboard")
    p.add_argument("suite")
    p.add_argument("--results", default=None, help="results root (default: the suite's output.results_dir)")
    p.add_argument("--reports", default=None, help="reports root (default: the suite's output.reports_dir)")
    p.add_argument("--quiet", action="store_true", help="no progress display")
    p.add_argument("--workers", type=_at_least_one, default=None,
                   help="worker processes on this machine (default 1; with --gpus one per device)")
    p.add_argument("--gpus", help="this machine's devices, e.g. 0-7 or 0,1,2,3: one worker per device, each trial "
                                  "leasing as many as it has ranks (runner.distributed)")
    p.add_argument("--storage", help="postgresql://USER@HOST/DB: studies and records in PostgreSQL, shared with "
                                     "`harness worker` on other machines (default: SQLite and files in --results)")
    p.add_argument("--gpu-memory", help="memory each trial must fit in, e.g. 40GiB (overrides runner.memory_limit): "
                                        "a cell predicted not to fit is recorded as skipped")
    p.add_argument("--smoke", action="store_true",
                   help="one short trial per cell (2 steps, 8 examples a split, the methods' defaults) into "
                        "<name>-smoke: learn in minutes that the whole suite can start")
    _chatter_flags(p)
    p.add_argument("--wide", action="store_true", help="the full leaderboard on the terminal (every column), "
                                                       "not the compact one that fits 100 columns")
    p.set_defaults(func=cmd_run)
    p = sub.add_parser("worker", help="claim and run a suite's trials on shared storage until the suite is done")
    p.add_argument("suite")
    p.add_argument("--storage", required=True, help="postgresql://USER@HOST/DB")
    p.add_argument("--gpus", help="this machine's devices, e.g. 0-7: one worker per device, each trial leasing as many "
                                  "as it has ranks")
    p.add_argument("--results", default=None, help="local folder for saved adapters (default: the suite's)")
    p.add_argument("--quiet", action="store_true")
    _chatter_flags(p)
    p.set_defaults(func=cmd_worker)
    p = sub.add_parser("export", help="write a PostgreSQL results set as records/<cell>/*.json files")
    p.add_argument("suite")
    p.add_argument("out", help="folder to write (results/<suite>)")
    p.add_argument("--storage", required=True, help="postgresql://USER@HOST/DB")
    p.set_defaults(func=cmd_export)
    p = sub.add_parser("init", help="write a first suite from your own data files (the task kind read from "
                                    "the columns; the data checked)")
    p.add_argument("--data", required=True, help="the training file (.jsonl, .json, .csv, .parquet)")
    p.add_argument("--test", help="the test file: reported on, never read by a choice")
    p.add_argument("--validation", help="a validation file (default: 10%% of train, carved out with a seed)")
    p.add_argument("--model", help="model source (default: builtin:minilm-l6 for classification and qa, "
                                   "builtin:smollm2-135m for summarization and preference)")
    p.add_argument("--kind", choices=["classification", "qa", "summarization", "preference"],
                   help="the task kind, where the columns fit more than one")
    p.add_argument("--column", action="append", default=[], metavar="FIELD=COLUMN",
                   help="which of your columns feeds a task field, e.g. label=stars (repeatable)")
    p.add_argument("--out", help="the suite file to write (default: <name>.yaml here)")
    p.add_argument("--name", help="the suite's name (default: the training file's name)")
    p.add_argument("--on-bad-rows", choices=["error", "drop"], default="error",
                   help="drop: leave out rows that cannot be used, counted on the report (default: stop and "
                        "name them)")
    p.add_argument("--force", action="store_true", help="replace --out if it exists")
    p.set_defaults(func=cmd_init)
    p = sub.add_parser("validate", help="check suites; exit 2 listing every problem")
    p.add_argument("suites", nargs="+")
    p.set_defaults(func=cmd_validate)
    p = sub.add_parser("ls", help="list registered methods, tasks or models")
    p.add_argument("what", choices=["methods", "tasks", "models"])
    p.set_defaults(func=cmd_ls)
    p = sub.add_parser("bench", help="one configuration through the harness and through a bare PyTorch loop")
    p.add_argument("--model", default="builtin:tiny-bert", help="model source (default builtin:tiny-bert)")
    p.add_argument("--method", default="lora")
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--max-length", type=int, default=128)
    p.add_argument("--data", default="sentiment-long",
                   help="built-in data set (default sentiment-long: ~1,100-word texts cut at --max-length, so "
                        "every step trains batch x max-length tokens; `sentiment` is ~12 tokens a text, where "
                        "fixed per-step costs dominate; dialogsum-mini and medqa-mini are decoder tasks of mixed "
                        "lengths, for packing)")
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    p.add_argument("--param", action="append", default=[], help="method parameter key=value (repeatable)")
    p.add_argument("--head", default="classification", choices=["classification", "causal-lm"],
                   help="causal-lm: a decoder trains its LM head (logits over every position), as causal-LM "
                        "fine-tuning does; the test split is scored by option likelihood (eval samples/s)")
    p.add_argument("--accelerate", action="append", default=[],
                   help="an acceleration option key=value, e.g. compile=true, gradient_checkpointing=true, "
                        "kernels=liger, packing=true, attention=sdpa (repeatable; both paths use it)")
    p.add_argument("--eval-batch-size", type=_at_least_one, default=64, help="prompts scored at once on the test split")
    p.add_argument("--test-size", type=_at_least_one, help="cap the test split (evaluation samples/s)")
    p.add_argument("--only", choices=["harness", "bare"], help="run one path (e.g. under /usr/bin/time -v)")
    p.add_argument("--repeats", type=_at_least_one, default=5, help="interleaved runs per path; the median is shown")
    p.add_argument("--json", help="also write the figures to this JSON file")
    p.add_argument("--serving", action="store_true",
                   help="time the serving variants (base, adapter, merged, ...) through the harness's serving profile "
                        "and through a bare model.generate loop (other heads: forward calls); decoders need a "
                        "generative --data (dialogsum-mini)")
    p.add_argument("--no-phase-reset", action="store_true",
                   help="CPU: keep the kernel's peak-RSS counter whole (for checks against /usr/bin/time -v)")
    p.set_defaults(func=cmd_bench)
    p = sub.add_parser("estimate", help="predicted peak training memory (weights, gradients, optimizer states, "
                                        "activations), fit and speed of every cell, from the models' configs")
    p.add_argument("suite", nargs="?")
    p.add_argument("--gpu", help="simulate this GPU kind: h100, h200, a100, a100-40gb, l40s, l4, a10g, rtx4090")
    p.add_argument("--gpu-memory", help="memory to fit in, e.g. 80GiB (default: runner.memory_limit, the GPU "
                                        "kind's, or this device's)")
    p.add_argument("--calibrate", metavar="RESULTS_DIR",
                   help="fit per-method activation factors (and MFU) from measured records, print how far they "
                        "moved, write RESULTS_DIR/estimate-calibration.json, and apply them to SUITE")
    p.add_argument("--json", action="store_true", help='print {"cells": [...]} for scripts')
    p.add_argument("--verbose", action="store_true", help="show the libraries' warnings (by default in "
                                                          "results/<suite>/estimate.log)")
    p.set_defaults(func=cmd_estimate)
    p = sub.add_parser("schema", help="the suite's JSON Schema, for editors (harness schema > suite.schema.json)")
    p.add_argument("--markdown", action="store_true", help="the suite reference as Markdown (docs/suites.md)")
    p.set_defaults(func=cmd_schema)
    p = sub.add_parser("compare", help="verdict per cell and metric between two results folders; exit 1 on a "
                                       "regression or a cell missing; tolerances from the baseline's suite")
    p.add_argument("baseline")
    p.add_argument("candidate")
    p.add_argument("--out", help="folder for index.html and junit.xml (default reports/compare/...)")
    p.add_argument("--quality-abs", type=float, help="tolerance: absolute change of the objective metric")
    p.add_argument("--memory-rel", type=float, help="tolerance: relative change of peak memory")
    p.add_argument("--throughput-rel", type=float, help="tolerance: relative change of train tokens/s")
    p.add_argument("--time-rel", type=float, help="tolerance: relative change of train time")
    p.add_argument("--allow-mismatch", action="store_true",
                   help="compare result sets of other data or suite settings anyway (every output says so)")
    p.set_defaults(func=cmd_compare)
    p = sub.add_parser("trend", help="each metric of each cell across nights (one results folder per night)")
    p.add_argument("history", help="e.g. results/nightly")
    p.add_argument("--out", help="report folder (default reports/<history>-trend)")
    p.set_defaults(func=cmd_trend)
    p = sub.add_parser("recommend", help="which method to use, from an existing results set: the answer and each "
                                         "method's verdict against the best")
    p.add_argument("results_dir", help="results/<suite>, or the suite's name with --storage")
    p.add_argument("--storage", help="postgresql://USER@HOST/DB holding the suite's records")
    p.add_argument("--tolerance", type=float, help="equivalence tolerance in the objective's units "
                                                   "(default: the suite's decision.tolerance, 0.01)")
    p.add_argument("--prefer", help="order among the equivalent methods, e.g. train_time,train_memory or "
                                    "serving_latency (default: the suite's decision.prefer)")
    p.add_argument("--gpu", help="the GPU kind a method must fit (l4, a10g, rtx4090, l40s, a100-40gb, a100, h100, "
                                 "h200; default: the suite's decision.limits.gpu); with a decision.target, its GPU")
    p.add_argument("--memory", help="the most train memory a method may need, e.g. 24GiB (default: the suite's "
                                    "decision.limits.memory)")
    p.add_argument("--serve-with", choices=["vllm", "sglang", "tgi", "llamacpp"],
                   help="a serving engine that must take the method's artifact (decision.limits.serve_with)")
    p.add_argument("--json", action="store_true", help="the answer and the verdicts as JSON")
    p.set_defaults(func=cmd_recommend)
    p = sub.add_parser("report", help="print the leaderboard of a results folder and write its HTML report")
    p.add_argument("results_dir", help="results/<suite>, or the suite's name with --storage")
    p.add_argument("--storage", help="postgresql://USER@HOST/DB holding the suite's records")
    p.add_argument("--out", help="report folder (default reports/<suite>)")
    p.add_argument("--skip-bad", action="store_true",
                   help="leave out records that cannot be read (listed on stderr) instead of stopping")
    p.add_argument("--wide", action="store_true", help="the full leaderboard on the terminal (every column)")
    p.set_defaults(func=cmd_report)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from harness.runner import signals

    previous = signals.stop_on_signals()  # SIGTERM stops as Ctrl-C does; a second signal ends every child at once
    try:
        return args.func(args)
    except UserError as err:
        _print_problems(err)
        return 2
    except SweepFailed as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    except BrokenPipeError:  # `harness ls methods | head`: the reader left; not an error of ours
        sys.stderr.close()
        return 0
    except KeyboardInterrupt:
        print("interrupted: finished trials are kept; run the same command again to resume", file=sys.stderr)
        return signals.exit_code()
    finally:
        signals.restore(previous)


if __name__ == "__main__":
    sys.exit(main())
