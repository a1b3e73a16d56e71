"""The name of a cell's Optuna study, typed: one to-string and one from-string for the sweep that
opens the studies and the report that reads them. A store may prefix it (records/pg.py: the suite)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

_NAME = re.compile(r"^(?P<cell>.+?)(?:::rung(?P<rung>\d+)|::confirm-t(?P<trial>\d+))?$")


@dataclass(frozen=True)
class StudyKey:
    """A cell's search study (rung 0), one rung's study under successive halving, or the study of a
    chosen trial's confirmation runs."""

    cell: str
    phase: Literal["search", "confirm"] = "search"
    rung: int = 0  # search under sha: the rung whose runs this study holds
    trial: int | None = None  # confirm: the search trial whose configuration is re-run with seeds

    @classmethod
    def confirming(cls, cell: str, trial: int) -> "StudyKey":
        return cls(cell, "confirm", trial=trial)

    def __str__(self) -> str:
        if self.phase == "confirm":
            return f"{self.cell}::confirm-t{self.trial:04d}"
        return f"{self.cell}::rung{self.rung}" if self.rung else self.cell

    @classmethod
    def parse(cls, name: str, prefix: str = "") -> "StudyKey":
        """The key of a study name (less the store's prefix)."""
        match = _NAME.match(name.removeprefix(prefix))
        if match["trial"] is not None:
            return cls.confirming(match["cell"], int(match["trial"]))
        return cls(match["cell"], rung=int(match["rung"] or 0))
