"""The HTML report: self-contained, escaped, agreeing with the terminal, and drawn in a real browser."""

from __future__ import annotations

import re
import shutil
from html.parser import HTMLParser
from pathlib import Path

import optuna
import pytest
from rich.console import Console

from harness.records.synthetic import make_record
from harness.report.leaderboard import leaderboard
from harness.report.publish import publish
from harness.report.terminal import print_leaderboard

EVIL = "<script>alert(1)</script>"


@pytest.fixture
def records():
    out = []
    for i, (method, acc, mib) in enumerate([("full", 0.91, 900), ("lora", 0.88, 520), ("bitfit", 0.83, 480),
                                             ("ia3", 0.86, 470)]):
        for trial in range(2):
            out.append(make_record(model=EVIL, method=method, trial=trial, accuracy=acc - 0.02 * trial,
                                   peak_mib=mib, trainable=10 ** (6 - i), total=10 ** 7))
    out.append(make_record(model=EVIL, method="lora", trial=2, status="oom", reason="out of memory at batch size 16"))
    return out


@pytest.fixture
def storage(tmp_path):
    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    for method in ("full", "lora"):
        study = optuna.create_study(storage=url, study_name=f"sentiment--x--{method}", direction="maximize")
        for i in range(4):
            trial = study.ask({"learning_rate": optuna.distributions.FloatDistribution(1e-5, 1e-2, log=True),
                               "r": optuna.distributions.CategoricalDistribution([4, 8, 16])})
            study.tell(trial, 0.6 + 0.05 * i + trial.params["learning_rate"])
    return url


class _Rows(HTMLParser):
    """Text of every row of every leaderboard table."""

    def __init__(self):
        super().__init__()
        self.rows, self._in_board, self._row, self._cell = [], False, None, None

    def handle_starttag(self, tag, attrs):
        if tag == "table":
            self._in_board = "leaderboard" in (dict(attrs).get("class") or "").split()  # the first table
        elif tag == "tr" and self._in_board:
            self._row = []
        elif tag == "td" and self._row is not None:
            self._cell = ""

    def handle_data(self, data):
        if self._cell is not None:
            self._cell += data

    def handle_endtag(self, tag):
        if tag == "td" and self._cell is not None:
            self._row.append(self._cell.strip())
            self._cell = None
        elif tag == "tr" and self._row is not None:
            if self._row:
                self.rows.append(self._row)
            self._row = None
        elif tag == "table":
            self._in_board = False


def _report(records, tmp_path, storage=None) -> Path:
    return publish(records, tmp_path / "report", storage, "name: synthetic\n# " + EVIL,
                   console=Console(file=open("/dev/null", "w"))).page


def test_report_is_self_contained_and_escaped(records, tmp_path, storage):
    page = _report(records, tmp_path, storage)
    html = page.read_text()
    assert EVIL not in html, "a user string reached the page unescaped"
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert not re.search(r"""(src|href)=["']https?://""", html), "the report must not load anything from the network"
    assert html.count('<script src="plotly.min.js">') == 1 and (page.parent / "plotly.min.js").stat().st_size > 10**6
    for export in ("leaderboard.csv", "leaderboard.json", "leaderboard.md"):
        assert (page.parent / export).exists()
    assert "out of memory at batch size 16" in html  # the failure is listed with its reason


def test_report_rows_equal_records_and_terminal(records, tmp_path):
    html = _report(records, tmp_path).read_text()
    parser = _Rows()
    parser.feed(html)
    board = leaderboard(records)
    expected = [[str(int(r["rank"])), r["method"], f"{r['metric:accuracy']:.4f}"] for _, r in board.iterrows()]
    assert [row[:3] for row in parser.rows] == expected
    console = Console(record=True, width=200)
    print_leaderboard(records, console=console, wide=True)
    text = console.export_text()
    terminal = [line for line in text.splitlines() if re.match(r"^│ \d+ │", line)]
    assert [[c.strip() for c in line.strip("│").split("│")][:3] for line in terminal] == expected


def test_a_failure_reason_with_brackets_prints_as_written():
    """A reason quotes library errors verbatim: gloo's "[/__w/.../pair.cc:537]" once ended a run in rich's
    MarkupError after every trial had finished."""
    reason = "rank 0 ended failed: RuntimeError: [/__w/pytorch/gloo/pair.cc:537] Connection closed [bold]x"
    records = [make_record(), make_record(method="full", status="crashed", reason=reason)]
    console = Console(record=True, width=300)
    print_leaderboard(records, console=console)
    assert f"crashed sentiment--tiny--full trial 0: {reason}" in console.export_text()


@pytest.mark.parametrize("width", [80, 100, 200])
def test_the_compact_leaderboard_fits_the_terminal(width):
    """No line of the compact table is wider than the terminal. At 100 columns and more a row's
    figures stay on its one line (only a long method label folds); at 80 the interval and verdict
    wrap too. Each confirmed method's score carries its interval and its verdict against the best."""
    out = []
    for method, acc in (("full", 0.92), ("lora_with_a_long_label", 0.86), ("bitfit", 0.70)):
        out.append(make_record(method=method, accuracy=acc, trainable=10**5, total=10**7))
        for seed in (1, 2, 3):
            out.append(make_record(method=method, seed=seed, phase="confirm",
                                   accuracy=acc + 0.01 * seed * (1 if method != "bitfit" else -3)))
    out.append(make_record(method="none", family="baseline", accuracy=0.5, trainable=0))
    console = Console(record=True, width=width)
    print_leaderboard(out, console=console)
    text = console.export_text()
    assert max(len(line.rstrip()) for line in text.splitlines()) <= width
    rows = [line for line in text.splitlines() if re.match(r"^│ +(\d+|ref) +│", line)]
    if width >= 100:  # each row's figures on its one line
        assert len(rows) == 4
        assert all(re.search(r"\d\.\d{3} \[\d\.\d{3}, \d\.\d{3}\] │ (best|worse|undecided)", r) for r in rows[:3])
        assert re.search(r"│ +1 │ full +│ +0\.940 \[0\.\d{3}, 0\.\d{3}\] │ best", text)
        assert "worse -0." in text or "undecided -0." in text
        header = next(line for line in text.splitlines() if "method" in line)
        assert [c.strip() for c in header.strip("┃").split("┃")] == [
            "#", "method", "accuracy", "vs best", "trainable", "train MiB", "tokens/s"]
    assert "lora_with" in text and "bitfit" in text and "none" in text
    wide = Console(record=True, width=200)
    print_leaderboard(out, console=wide, wide=True)
    wide_text = wide.export_text()
    assert "eval MiB" in wide_text and "macro_f1" in wide_text


def _browser():
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        return None, None
    return chromium, sync_playwright


@pytest.mark.e2e
def test_report_in_headless_chromium(records, tmp_path, storage):
    chromium, sync_playwright = _browser()
    if not chromium or not sync_playwright:
        pytest.skip("headless Chromium or playwright is not installed here (.ci/run installs both)")
    page_path = _report(records, tmp_path, storage)
    shot = Path(__import__("os").environ.get("HARNESS_SCREENSHOT", tmp_path / "report.png"))
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--no-first-run"])
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        errors, dialogs = [], []
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
        page.goto(page_path.as_uri())
        page.wait_for_function("document.querySelectorAll('.chart .main-svg').length > 0")
        page.wait_for_timeout(500)
        drawn = page.evaluate("""[...document.querySelectorAll('.chart')].map(
            d => [...d.querySelectorAll('svg.main-svg')].reduce((n, s) => n + s.querySelectorAll('*').length, 0))""")
        rows = page.evaluate("""[...document.querySelectorAll('table.leaderboard tbody tr')].map(
            tr => [...tr.children].slice(0, 3).map(td => td.textContent.trim()))""")
        model_heading = page.evaluate("document.querySelector('h3').textContent")
        first_section = page.evaluate("document.querySelector('h2').textContent")
        # the first screen fits 1280 pixels: nothing scrolls sideways, with every column opened too
        widths = [page.evaluate("document.documentElement.scrollWidth")]
        page.click("details.every-column summary")
        widths.append(page.evaluate("document.documentElement.scrollWidth"))
        said = page.evaluate("document.querySelector('p.answer').textContent")
        # sorting: click the accuracy header twice (ascending, then descending)
        page.click("table.leaderboard th:nth-child(3)")
        ascending = page.evaluate("[...document.querySelectorAll('table.leaderboard tbody tr')].map(tr => tr.children[2].textContent)")
        page.screenshot(path=str(shot), full_page=True)
        browser.close()
    assert errors == [] and dialogs == []
    assert len(drawn) >= 3 + 3 + 1 and all(n > 10 for n in drawn), drawn  # Pareto x3, search, curves
    board = leaderboard(records)
    assert rows == [[str(int(r["rank"])), r["method"], f"{r['metric:accuracy']:.4f}"] for _, r in board.iterrows()]
    assert EVIL in model_heading  # shown as text
    assert first_section == "The answer" and EVIL in said and ("Use " in said or "Best by" in said), said
    assert widths == [1280, 1280], widths
    assert ascending == sorted(ascending)
    assert shot.stat().st_size > 10_000


def test_seed_interval_is_clipped_to_the_metrics_range():
    from scipy import stats

    from harness.report.leaderboard import mean_ci95

    values = [0.99, 0.97, 1.0]
    mean, low, high = mean_ci95(values)
    assert high > 1.0  # the plain t-interval runs past a perfect score
    half = stats.t.ppf(0.975, 2) * stats.tstd(values) / 3 ** 0.5
    assert low == pytest.approx(mean - half)
    _, low_c, high_c = mean_ci95(values, (0.0, 1.0))
    assert (low_c, high_c) == (low, 1.0)


def test_library_warnings_that_could_change_a_number_are_kept_once_each():
    """Notices (runner/logs.py): a fallback warning is kept once whatever line raised it; chatter is not."""
    import logging

    from harness.runner.logs import Notices

    notices = Notices()
    log = logging.getLogger("py.warnings")
    log.addHandler(notices)
    try:
        for line in (509, 518):
            log.warning(f"/v/lib/site-packages/bitsandbytes/optim/optimizer.py:{line}: UserWarning: Paged optimizers "
                        f"are not supported on CPU. Falling back to non-paged optimizer behavior.\n  warnings.warn(")
        log.warning("/v/lib/site-packages/optuna/_experimental.py:32: ExperimentalWarning: Argument is experimental")
    finally:
        log.removeHandler(notices)
    assert list(notices.seen) == ["bitsandbytes: UserWarning: Paged optimizers are not supported on CPU. Falling back "
                                  "to non-paged optimizer behavior."]
