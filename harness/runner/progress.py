"""How the runner tells whoever watches it what it is doing. The runner never imports report/:
the terminal's ProgressView (report/terminal.py) is one implementation, EventSender (server.py)
carries the calls across the sweep process's pipe, Silent drops them."""

from __future__ import annotations

from typing import Protocol

from harness.records.schema import TrialRecord


class Progress(Protocol):
    def skip(self, n: int) -> None: ...  # n planned trials will not run (already done, or nothing to confirm)

    def status(self, text: str) -> None: ...

    def start_trial(self, description: str, max_steps: int) -> None: ...

    def on_progress(self, msg: dict) -> None: ...  # {"step": ..., "max_steps": ...} from the trial

    def end_trial(self, record: TrialRecord) -> None: ...


class Silent:
    def skip(self, n: int) -> None:
        pass

    def status(self, text: str) -> None:
        pass

    def start_trial(self, description: str, max_steps: int) -> None:
        pass

    def on_progress(self, msg: dict) -> None:
        pass

    def end_trial(self, record: TrialRecord) -> None:
        pass
