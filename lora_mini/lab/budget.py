"""One time budget for training runs, sweeps and benchmarks: how long is left, and what still fits.

    budget = Budget(seconds=600)          # None: unlimited
    if not budget.fits(estimate_s=40):    # would a 40 s job still finish inside the budget?
        skip(...)
    budget.expired()                      # past the limit: checkpoint and stop

The clock starts when the Budget is made (or at .start()); `clock` is injectable for tests.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field


@dataclass
class Budget:
    seconds: float | None = None          # None: no limit
    clock: object = time.monotonic
    started: float = field(default=None)

    def __post_init__(self):
        if self.seconds is not None and not (self.seconds > 0 and math.isfinite(self.seconds)):
            raise ValueError(f"a time budget must be a positive number of seconds or None, got {self.seconds!r}")
        if self.started is None:
            self.started = self.clock()

    def start(self) -> "Budget":
        self.started = self.clock()
        return self

    def elapsed(self) -> float:
        return self.clock() - self.started

    def remaining(self) -> float:
        """Seconds left (inf without a limit; never negative)."""
        return math.inf if self.seconds is None else max(0.0, self.seconds - self.elapsed())

    def expired(self) -> bool:
        return self.seconds is not None and self.elapsed() >= self.seconds

    def fits(self, estimate_s: float) -> bool:
        """True if a job expected to take `estimate_s` seconds ends inside the budget."""
        return estimate_s <= self.remaining()

    def to_dict(self) -> dict:
        return {"seconds": self.seconds, "elapsed": self.elapsed()}
