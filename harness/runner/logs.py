"""Where library chatter goes: third-party warnings, log lines and C-level prints of a sweep go to
the run's log file (results/<suite>/run.log), not the terminal, unless --verbose; the few that could
change a number (a kernel falling back to a slower path) are kept as notices for each record's
provenance and one line of the report.

The sweep process routes its own file descriptor 2, so every trial forked from it inherits the
routing; `harness run`'s own process keeps its stderr for our messages (problems, exit reasons)."""

from __future__ import annotations

import logging
import os
import re
import sys
import warnings
from contextlib import contextmanager
from pathlib import Path

LOG_ENV = "HARNESS_LOG_FILE"  # set by the runner for the sweep processes it spawns
VERBOSE_ENV = "HARNESS_VERBOSE"

# A warning that could matter to a number: a kernel or path falling back, a fast path missing.
NOTABLE = re.compile(r"fall(?:s|ing)?[ -]?back|failed to load|not available|slow(?:er)? (?:path|kernel)|"
                     r"not supported on this|unsupported on this", re.I)


# "/.../site-packages/bitsandbytes/optim/optimizer.py:518: UserWarning: Paged optimizers are ..."
WARNING_AT = re.compile(r"^(?:.*?site-packages/(?P<package>[A-Za-z0-9_]+)/)?\S*:\d+: (?P<message>\w+: .*)$")


class Notices(logging.Handler):
    """Keeps, once each, the first line of every warning-or-worse log record that NOTABLE matches."""

    def __init__(self):
        super().__init__(level=logging.WARNING)
        self.seen: dict[str, None] = {}

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = record.getMessage().strip().splitlines()[0] if record.getMessage().strip() else ""
        except Exception:  # noqa: BLE001 - a library's malformed log call must not stop a trial
            return
        if text and NOTABLE.search(text):
            shown = f"{record.name}: {text}"
            where = WARNING_AT.match(text) if record.name == "py.warnings" else None
            if where:  # a Python warning: the package that raised it, not the file and line of each call
                shown = f"{where.group('package') or 'python'}: {where.group('message')}"
            self.seen.setdefault(shown if len(shown) <= 240 else shown[:237] + "...", None)


_NOTICES = Notices()


def notices() -> list[str]:
    """What this process (and the sweep process it was forked from) noticed, in order."""
    return list(_NOTICES.seen)


def _send_library_logs_to_root() -> None:
    """transformers keeps its own stderr handler and does not propagate: let its records reach ours."""
    try:
        import transformers

        transformers.logging.disable_default_handler()
        transformers.logging.enable_propagation()
        transformers.logging.set_verbosity_warning()
    except ImportError:  # pragma: no cover - a dependency
        pass


def route(log_file: str | os.PathLike | None, verbose: bool) -> None:
    """In a sweep process, before the training stack is imported: warnings become log records,
    every log record goes to the log file (and notices are kept), and so does anything written to
    file descriptor 2. verbose: the same records on the terminal instead."""
    root = logging.getLogger()
    root.setLevel(logging.INFO)
    root.addHandler(_NOTICES)
    logging.captureWarnings(True)
    warnings.simplefilter("default")  # each warning once per place, as Python shows it by default
    if verbose or not log_file:
        root.addHandler(logging.StreamHandler(sys.stderr))
        return
    path = Path(log_file)
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(process)d %(levelname)s %(name)s: %(message)s"))
    root.addHandler(handler)
    sys.stderr.flush()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    os.dup2(fd, 2)  # C extensions and print(file=sys.stderr) from libraries, and the forked trials'
    os.close(fd)


def route_from_env() -> None:
    """route() as the spawning `harness run` asked through the environment (nothing where it did not)."""
    if os.environ.get(LOG_ENV) or os.environ.get(VERBOSE_ENV):
        route(os.environ.get(LOG_ENV), os.environ.get(VERBOSE_ENV) == "1")
        _send_library_logs_to_root()


@contextmanager
def captured(log_file: Path | None, verbose: bool):
    """In `harness run`'s own process (publishing the report): warnings and log records to the log
    file for the duration, stderr left alone for our own messages."""
    if verbose or log_file is None:
        yield
        return
    log_file.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(log_file, encoding="utf-8", delay=True)  # no file where nothing was said
    handler.setFormatter(logging.Formatter("%(asctime)s %(process)d %(levelname)s %(name)s: %(message)s"))
    _send_library_logs_to_root()  # transformers' advisories too ("use_cache=True is incompatible ...")
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)
    with warnings.catch_warnings():
        warnings.simplefilter("default")
        logging.captureWarnings(True)
        try:
            yield
        finally:
            logging.captureWarnings(False)
            root.handlers[:] = saved[0]
            root.setLevel(saved[1])
            handler.close()
