"""The terminal: rich progress during a sweep and the leaderboard table after it."""

from __future__ import annotations

import sys

import pandas as pd
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from harness.measure.host import BUSY_SHARE
from harness.records.schema import TrialRecord
from harness.report.acceleration import acceleration_rows, acceleration_table
from harness.report.preference import preference_rows
from harness.report.compute import compute_lines, compute_table, rung_lines
from harness.report.decide import DEFAULT_TOLERANCE, MAX_SEEDS, Terms, answers
from harness.report.target import fits_somewhere
from harness.report.leaderboard import leaderboard, method_text, metric_columns


MEMORY_NOTE = ("train MiB: the training phase's peak above the process before any model weights (weights, "
               "gradients, optimizer states, activations); eval MiB: the test evaluation's, above the same baseline "
               "(at the suite's eval batch size); 'busy N%': other processes used N% of the host's CPU during the "
               "trial, so its speed is not the method's.")


def compact_note(tolerance: float, level: float = 0.90) -> str:
    looks = (f" (confirm.seeds: auto: the {level:.1%} interval, Bonferroni over its looks)" if level > 0.9 + 1e-9
             else "")
    return (f"vs best: the paired difference to the best over the seeds both ran; equivalent where its "
            f"{level:.0%} interval{looks} "
            f"lies within ±{tolerance:g} (decision.tolerance), worse where it lies below zero, undecided otherwise "
            f"(+N: more seeds that would likely decide it). train MiB: the training phase's peak above the process "
            f"before any model weights. Every column: --wide, the report, leaderboard.csv.")


def target_lines(terms: Terms | None, task: str) -> list[str]:
    """Under the answer, where the suite names a decision.target: each method there, predicted."""
    rows = [t for t in (terms.target if terms else ()) if t["task"] == task]
    if not rows:
        return []
    first = rows[0]
    out = [f"  at the target ({first['model']} on {first['gpu'] or 'the given memory'}, {first['seq_len']} tokens, "
           f"{first['dtype']}; predicted{', calibrated on this run' if first.get('calibrated') else ''}):"]
    for t in rows:
        most, fits = t.get("max_micro_batch"), fits_somewhere(t)
        speed = f", {t['tokens_per_s']:,.0f} tokens/s" if t.get("tokens_per_s") else ""
        out.append(f"    {t['method']}: {t['predicted_bytes'] / 2**30:.1f} GiB at micro-batch {t['micro_batch']}, "
                   f"{'fits' if fits else 'does not fit' if fits is False else 'no limit known'}"
                   f"{f' (up to micro-batch {most})' if most else ''}{speed}")
    return out


def human_count(n: float) -> str:
    for unit, size in (("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= size:
            return f"{n / size:.2f}{unit}"
    return f"{int(n)}"


def confidence_text(row) -> str:
    if not row.get("seeds"):
        return "—"
    return f"[{row['ci_low']:.4f}, {row['ci_high']:.4f}] (n={int(row['seeds'])})"


def forgetting_text(row) -> str:
    """Forgetting on general text with its 95% interval (over seeds, or over documents for one run)."""
    value = row.get("forgetting")
    if value is None or pd.isna(value):
        return "—"
    low, high = row.get("forgetting_low"), row.get("forgetting_high")
    return f"{value:+.3f}" + ("" if low is None or pd.isna(low) else f" [{low:+.3f}, {high:+.3f}]")


def retention_short(row) -> str:
    """The compact table's retention figure: forgetting (decoder LMs) or representation drift."""
    if row.get("forgetting") is not None and not pd.isna(row.get("forgetting")):
        return f"{row['forgetting']:+.3f}"
    if row.get("repr_drift") is not None and not pd.isna(row.get("repr_drift")):
        return f"{row['repr_drift']:.3f}"
    return "—"


def rank_text(row) -> str:
    """The rank of a method; "ref" for a baseline row (shown, not ranked); "*" marks a row chosen on
    its test score (a record written before validation scores existed)."""
    if row.get("reference"):
        return "ref"
    if row.get("skipped") is True:
        return "skipped"  # predicted not to fit (harness estimate): never started
    rank = "" if pd.isna(row.get("rank")) else str(int(row["rank"]))
    return rank + ("*" if row.get("test_selected") is True else "")


def verdict_word(row) -> str:
    """Against the best (report/decide.py): equivalent, worse, better or undecided (not yet known:
    never "as good"), with the seeds that would likely decide an undecided one; "" where no interval
    could be formed (a single seed)."""
    word = row.get("verdict")
    return word if word in ("equivalent", "worse", "better", "undecided") else ""


def more_seeds_text(row) -> str:
    """An undecided row's "+N": the seeds that would likely decide it ("+100+": more than a sweep spends)."""
    more = row.get("more_seeds")
    if row.get("verdict") != "undecided" or more is None or pd.isna(more):
        return ""
    return f" +{int(more)}{'+' if more >= MAX_SEEDS else ''}"


def _against_best(row, show) -> str:
    """A row's cell against the best: "—" for a baseline or where no paired difference exists, "best"
    for the best, else show(the mean paired difference) -- the wide and the compact cell alike."""
    if row.get("reference"):
        return "—"
    if row.get("rank") == 1:
        return "best"
    diff = row.get("diff_vs_best")
    if diff is None or pd.isna(diff):
        return "—"
    return show(diff)


def tie_text(row) -> str:
    """The mean paired difference to the best method over the seeds both ran, its interval (90%; under
    seeds: auto the corrected level) and verdict."""
    return _against_best(row, lambda diff: f"{diff:+.4f} [{row['diff_low']:+.4f}, {row['diff_high']:+.4f}] "
                                           f"{verdict_word(row)}{more_seeds_text(row)}".rstrip())


def verdict_text(row) -> str:
    """The compact table's cell: the verdict against the best and the mean paired difference."""
    return _against_best(row, lambda diff: f"{verdict_word(row)} {diff:+.3f}{more_seeds_text(row)}".strip())


def score_text(row, metric: str) -> str:
    """The objective's test score with its 95% interval over the seeds, where seeds ran."""
    value = row.get(metric)
    if value is None or pd.isna(value):
        return "—"
    if row.get("seeds") and not pd.isna(row.get("ci_low")):
        return f"{value:.3f} [{row['ci_low']:.3f}, {row['ci_high']:.3f}]"
    return f"{value:.3f}"


def caption(part: pd.DataFrame) -> list[str]:
    """Per cell: trials run and complete, and the search space; baselines and warnings explained."""
    lines = []
    for _, row in part.iterrows():
        if row.get("reference"):
            continue
        lines.append(f"{row['method']}: {int(row['complete'])}/{int(row['trials'])} trials complete; search "
                     f"{row.get('search_space') or 'fixed'}")
    served = serving_line(part)
    if served:
        lines.append(served)
    if part["test_selected"].any():
        lines.append("* chosen on its test score: records written before validation scores existed (schema 1)")
    dup = part["duplicates"].max()
    if pd.notna(dup) and dup > 0:
        lines.append(f"warning: {int(dup)} test examples also stand in the training split, exactly")
    return lines


def serving_line(part: pd.DataFrame) -> str:
    """Each profiled method's serving cost as shipped, in one line (the page's Serving table has every variant)."""
    if "serve_ms" not in part or not part["serve_ms"].notna().any():
        return ""
    rows = part[part["serve_ms"].notna()]
    generate = (rows["serve_mode"] == "generate").any()
    items = [f"{r['method']} {r['serve_variant']} {r['serve_ms']:.2f}"
             + ("" if pd.isna(r.get("serve_overhead")) else f" ({r['serve_overhead']:+.0f}%)") for _, r in rows.iterrows()]
    unit = "decode ms/token at batch 1" if generate else "ms/example at batch 1"
    return f"serving ({unit} as shipped, vs the base): " + ", ".join(items)


def compact_table(board: pd.DataFrame, task: str, model: str, width: int = 100) -> Table:
    """What fits 100 columns: rank, method, the objective with its interval, the verdict against the
    best, trainable share, train memory and speed (the rest: --wide, the exports, the HTML page)."""
    part = board[(board.task == task) & (board.model == model)]
    objective = part["objective_metric"].dropna().iloc[0] if part["objective_metric"].notna().any() else ""
    seeded = bool((part["seeds"] > 0).any())
    retained = "forgets" in part and bool(part["forgets"].notna().any())
    table = Table(title=f"{task} · {model}: test {objective}" + (" (seed mean, 95% CI)" if seeded else ""),
                  title_justify="left", caption="\n".join(caption(part)), caption_justify="left")
    rows = []
    for _, row in part.iterrows():
        has = not pd.isna(row.get("trainable_params")) and not pd.isna(row.get("train_s"))
        busy = row.get("busy") if row.get("busy") is not None and not pd.isna(row.get("busy")) else 0.0
        speed = f"{row['tokens_per_s']:.0f}" + (" busy" if busy > BUSY_SHARE else "") \
            if has and not row.get("reference") else "—"
        rows.append((rank_text(row), method_text(row), score_text(row, f"metric:{objective}"), verdict_text(row),
                     f"{row['trainable_pct']:.2f}%" if has else "—",
                     "—" if not has or pd.isna(row.get("peak_mib")) else f"{row['peak_mib']:.0f}", speed)
                    + ((retention_short(row),) if retained else ()))
    heads = (("#", "right"), ("method", "left"), (objective or "score", "right"), ("vs best", "left"),
             ("trainable", "right"), ("train MiB", "right"), ("tokens/s", "right"))
    if retained:
        heads += (("forgets" if part["forgetting"].notna().any() else "drift", "right"),)
    widths = [max([len(head)] + [len(r[i]) for r in rows]) for i, (head, _) in enumerate(heads)]
    # what the method column may take: the width less every other column whole and the borders
    room = width - sum(w for i, w in enumerate(widths) if i != 1) - (3 * len(heads) + 1)
    if retained and room < widths[1]:  # the retention figure only where nothing wraps for it (--wide has it)
        heads, rows, widths = heads[:-1], [r[:-1] for r in rows], widths[:-1]
        room = width - sum(w for i, w in enumerate(widths) if i != 1) - (3 * len(heads) + 1)
    for i, (head, justify) in enumerate(heads):
        if i == 1:  # the method's label folds where the terminal is narrow
            table.add_column(head, justify=justify, overflow="fold", min_width=min(widths[1], 6),
                             max_width=max(room, 6))
        elif room >= 6 or i not in (2, 3):  # figures stay on one line ...
            table.add_column(head, justify=justify, no_wrap=True, min_width=widths[i])
        else:  # ... unless the terminal is too narrow for them all: the interval and verdict wrap
            table.add_column(head, justify=justify)
    for r in rows:
        table.add_row(*r)
    return table


def leaderboard_table(board: pd.DataFrame, task: str, model: str) -> Table:
    part = board[(board.task == task) & (board.model == model)]
    metrics = [m for m in metric_columns(board) if part[m].notna().any()]
    objective = part["objective_metric"].dropna().iloc[0] if part["objective_metric"].notna().any() else ""
    how = ("test score, seed mean of the validation-best configuration" if (part["seeds"] > 0).any()
           else "test score of the validation-best trial")
    table = Table(title=f"{task} · {model} ({how} per method; {objective})", title_justify="left",
                  caption="\n".join(caption(part)), caption_justify="left")
    table.add_column("#", justify="right")
    table.add_column("method")
    for m in metrics:
        table.add_column(m.removeprefix("metric:"), justify="right")
    seeded = bool((part["seeds"] > 0).any())
    if seeded:
        table.add_column("95% CI (seeds)", justify="right")
        table.add_column("Δ vs best [95% CI]", justify="left")
    for col in ("trainable", "train s", "tokens/s", "train MiB", "eval MiB", "forgetting [95% CI]", "drift",
                "trials ok"):
        table.add_column(col, justify="right")
    for _, row in part.iterrows():
        rank = rank_text(row)
        vals = ["—" if pd.isna(row.get(m)) else f"{row[m]:.4f}" for m in metrics]
        has = not pd.isna(row.get("trainable_params")) and not pd.isna(row.get("train_s"))
        trainable = f"{human_count(row['trainable_params'])} ({row['trainable_pct']:.2f}%)" if has else "—"
        extra = []
        if seeded:
            extra = [confidence_text(row), tie_text(row)]
        busy = row.get("busy") if row.get("busy") is not None and not pd.isna(row.get("busy")) else 0.0
        speed = f"{row['tokens_per_s']:.0f}" + (f" busy {busy:.0%}" if busy > BUSY_SHARE else "") if has else "—"
        table.add_row(rank, method_text(row), *vals, *extra, trainable,
                      f"{row['train_s']:.1f}" if has else "—", speed,
                      "—" if not has or pd.isna(row.get("peak_mib")) else f"{row['peak_mib']:.0f}",
                      "—" if pd.isna(row.get("eval_mib")) else f"{row['eval_mib']:.0f}",
                      forgetting_text(row), _drift_text(row), f"{int(row['complete'])}/{int(row['trials'])}")
    return table


def _drift_text(row) -> str:
    """KL drift from the base (decoder LMs) or representation drift (other heads)."""
    for key, fmt in (("drift", "KL {:.4f}"), ("repr_drift", "1-CKA {:.4f}")):
        if row.get(key) is not None and not pd.isna(row.get(key)):
            return fmt.format(row[key])
    return "—"


def print_leaderboard(records: list[TrialRecord], elapsed_s: float | None = None,
                      console: Console | None = None, wide: bool = False) -> pd.DataFrame:
    board = leaderboard(records)
    print_board(board, records, elapsed_s, console, wide=wide)
    return board


def acceleration_view(rows: list[dict]) -> Table:
    table = Table(title="acceleration: each option against the axis's first entry (medians over complete trials)",
                  title_justify="left")
    keys = ("task", "model", "method", "option", "trials", "tokens_per_s", "speedup", "train_mib",
            "memory_change", "compile_s", "baseline")
    for key, head in zip(keys, ("task", "model", "method", "option", "trials", "tokens/s", "speed-up",
                                "train MiB", "memory", "compile s", "against")):
        table.add_column(head, justify="left" if key in ("task", "model", "method", "option", "baseline") else "right")
    for row in rows:
        table.add_row(*(str(row[k]) for k in keys))
    return table


def print_board(board: pd.DataFrame, records: list[TrialRecord], elapsed_s: float | None = None,
                console: Console | None = None, compute: pd.DataFrame | None = None, wide: bool = False,
                log_file: str | None = None, terms: Terms | None = None) -> None:
    """The answer, then the compact leaderboard per task x model (wide: every column), then failures, notes and the
    compute lines. Off a terminal (CI logs, files) rich would assume 80 columns: 100 for the compact
    table, 200 for the wide one."""
    if console is None:
        console = Console(highlight=False, width=None if sys.stdout.isatty() else 200 if wide else 100)
    said = answers(board, terms)
    for (task, model), _ in board.groupby(["task", "model"], sort=False):
        console.print(f"[bold]{task} · {model}:[/] {said[(task, model)]}", highlight=False)  # the answer first
        for line in target_lines(terms, task):
            console.print(line, markup=False, highlight=False)
        console.print(leaderboard_table(board, task, model) if wide else
                      compact_table(board, task, model, console.width))
    for line in data_lines(records) + notice_lines(records, log_file):
        console.print(line, markup=False, highlight=False, soft_wrap=True)  # greppable
    failures = [r for r in records if r.status != "complete"]
    for r in failures:
        # a reason quotes library errors, which hold brackets rich would read as markup ("[/__w/.../pair.cc:537]")
        reason = escape((r.reason or "").splitlines()[0] if r.reason else "")
        console.print(f"[yellow]{r.status}[/] {escape(r.cell_id)} trial {r.trial_number}: {reason}",
                      markup=True, highlight=False, soft_wrap=True)
    if records:
        source = f" Measured by {records[0].memory.source}." if records[0].memory.source else ""
        tolerance = float(board["tolerance"].iloc[0]) if "tolerance" in board and len(board) else DEFAULT_TOLERANCE
        level = float(board["level"].max()) if "level" in board and len(board) else 0.90
        console.print((MEMORY_NOTE if wide else compact_note(tolerance, level)) + source, markup=False,
                      highlight=False)
    for line in compute_lines(compute_table(records) if compute is None else compute) + rung_lines(records):
        console.print(line, markup=False, highlight=False, soft_wrap=True)  # greppable
    accel = acceleration_rows(acceleration_table(records))
    if accel:
        console.print(acceleration_view(accel))
    for row in preference_rows(records):
        if row["reference_mib"] != "—":
            console.print(f"{row['task']} · {row['method']}: {row['objective']} reference = {row['reference']}"
                          f" ({row['reference_mib']} MiB); train MiB {row['train_mib']}", markup=False, highlight=False)
    if elapsed_s is not None:
        console.print(f"sweep took {elapsed_s:.0f} s")


def data_lines(records: list[TrialRecord]) -> list[str]:
    """Per task: rows the data checks dropped (data.on_bad_rows: drop) and labels only validation/test
    have (data.allow_unseen_labels): never silent."""
    out, seen = [], set()
    for r in records:
        checks = r.data_checks or {}
        if r.task in seen or not checks:
            continue
        seen.add(r.task)
        if checks.get("summary"):
            out.append(f"data · {r.task}: {checks['summary']}")
        for split, labels in (checks.get("unseen_labels") or {}).items():
            rows = sum(labels.values())
            out.append(f"data · {r.task}: {rows} {split} row{'s carry' if rows != 1 else ' carries'} labels the "
                       f"training split lacks ({', '.join(sorted(labels))}): the model cannot get them right")
    return out


def notice_lines(records: list[TrialRecord], log_file: str | None = None) -> list[str]:
    """One line where library warnings could matter to a number (a kernel fallback): they are on the report."""
    noticed = {n for r in records for n in r.environment.get("notices", [])}
    if not noticed:
        return []
    where = f"; all library output: {log_file}" if log_file else ""
    return [f"{len(noticed)} library warning{'s' if len(noticed) != 1 else ''} may affect speed or memory (listed on "
            f"the report){where}"]


class ProgressView:
    """Overall trials bar with ETA, plus the current trial's training steps: the terminal's side of
    the runner's Progress protocol (harness/runner/progress.py)."""

    def __init__(self, total: int, quiet: bool = False):
        self.quiet = quiet
        # off a terminal (a log file) a trial's line is never wrapped at rich's assumed 80 columns
        console = None if sys.stdout.isatty() else Console(highlight=False, width=200)
        self.progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
                                 disable=quiet, transient=False, console=console)
        self.overall = self.progress.add_task("trials", total=total)
        self.current = self.progress.add_task("", total=1, visible=False)

    def __enter__(self):
        self.progress.__enter__()
        return self

    def __exit__(self, *exc):
        return self.progress.__exit__(*exc)

    def skip(self, n: int) -> None:
        if n:
            self.progress.update(self.overall, total=self.progress.tasks[self.overall].total - n)

    def status(self, text: str) -> None:
        self.progress.update(self.current, description=text, visible=True)

    def start_trial(self, description: str, max_steps: int) -> None:
        self.progress.reset(self.current, total=max_steps, description=f"  {description} · step", visible=True)

    def on_progress(self, msg: dict) -> None:
        if "step" in msg:
            self.progress.update(self.current, completed=msg["step"], total=msg.get("max_steps"))

    def end_trial(self, record: TrialRecord) -> None:
        self.progress.advance(self.overall)
        score = ""
        if record.objective is not None:
            chosen_on = "" if record.selection_score is None else f"validation {record.selection_score:.4f}, "
            score = f" {record.objective_metric}: {chosen_on}test {record.objective:.4f}"
        what = f"confirm seed {record.seed} of trial" if record.phase == "confirm" else "trial"
        self.progress.console.print(f"  {record.cell_id} {what} {record.trial_number}: {record.status}{score} "
                                    f"({record.timing.total_s:.1f} s)", highlight=False, markup=False)
