"""The per-route circuit breaker of dynamic routes: ``threshold`` consecutive connect errors or
timeouts open it (503 at once, no backend call) for ``reset_after`` seconds; then one trial request
goes through (half-open) and its outcome closes or re-opens it. Breakers are per node."""

from __future__ import annotations

import time
from collections.abc import Callable


class CircuitBreaker:
    """closed -> (``threshold`` consecutive failures) -> open -> (``reset_after`` s) ->
    half-open: one trial request; its success closes, its failure re-opens."""

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"

    __slots__ = ("clock", "failures", "opened_at", "reset_after", "state", "threshold", "trial")

    def __init__(
        self, threshold: int, reset_after: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.threshold = threshold
        self.reset_after = reset_after
        self.clock = clock
        self.state = self.CLOSED
        self.failures = 0
        self.opened_at = 0.0
        self.trial = False
        """A half-open trial request is in flight."""

    def allow(self) -> tuple[bool, bool]:
        """(may this request go to the backend, is it the half-open trial)."""
        if self.state == self.CLOSED:
            return True, False
        if self.state == self.OPEN:
            if self.clock() - self.opened_at < self.reset_after:
                return False, False
            self.state = self.HALF_OPEN
            self.trial = False
        if self.trial:
            return False, False
        self.trial = True
        return True, True

    def retry_after(self) -> float:
        if self.state != self.OPEN:
            return 1.0  # half-open: a trial is deciding right now
        return max(0.0, self.reset_after - (self.clock() - self.opened_at))

    def success(self, trial: bool) -> None:
        self.state = self.CLOSED
        self.failures = 0
        if trial:
            self.trial = False

    def failure(self, trial: bool) -> None:
        if trial:
            self.trial = False
            self._open()
        elif self.state == self.CLOSED:
            self.failures += 1
            if self.failures >= self.threshold:
                self._open()

    def release(self, trial: bool) -> None:
        """The request ended without telling anything about the backend (cancelled, refused
        locally): let another trial go."""
        if trial:
            self.trial = False

    def _open(self) -> None:
        self.state = self.OPEN
        self.opened_at = self.clock()
        self.failures = 0
