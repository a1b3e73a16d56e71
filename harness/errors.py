"""Problems a user can fix (bad suite, missing file, unreachable hub), shown without a traceback."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Problem:
    """One thing wrong with the user's input, located as precisely as we can."""

    file: str
    line: int | None
    path: str  # YAML path such as methods[2].search.lr.low ("" for the whole file)
    message: str

    def __str__(self) -> str:
        where = self.file if self.line is None else f"{self.file}:{self.line}"
        parts = [part for part in (where, self.path, self.message) if part]
        return ": ".join(parts)


class UserError(Exception):
    """Bad input: the CLI prints every problem and exits with code 2."""

    def __init__(self, problems: list[Problem | str] | str):
        if isinstance(problems, str):
            problems = [problems]
        problems = [Problem(file="", line=None, path="", message=p) if isinstance(p, str) else p for p in problems]
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


class SweepFailed(Exception):
    """The sweep process itself failed (not bad input): exit code 1, records written so far kept."""
