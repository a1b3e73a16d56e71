"""An evaluation's output, typed: the metrics, their standard errors and the rates measured while
scoring, each in its own field. Task families return one flat mapping (a metric, "se:<metric>" for
its standard error, generation_tokens_per_s for a rate); `Scores.of` is the one place that reads it."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

ERROR_PREFIX = "se:"
RATES = ("generation_tokens_per_s",)  # measured while scoring; a speed, not a score


@dataclass(frozen=True)
class Scores:
    metrics: dict[str, float]
    errors: dict[str, float] = field(default_factory=dict)  # finite standard errors only (JSON has no NaN)
    rates: dict[str, float] = field(default_factory=dict)

    @classmethod
    def of(cls, raw: dict[str, float]) -> "Scores":
        metrics, errors, rates = {}, {}, {}
        for key, value in raw.items():
            if key.startswith(ERROR_PREFIX):
                if math.isfinite(value):
                    errors[key.removeprefix(ERROR_PREFIX)] = value
            elif key in RATES:
                rates[key] = value
            else:
                metrics[key] = value
        return cls(metrics, errors, rates)
