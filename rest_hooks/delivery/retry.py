"""What an attempt's result means, and when to try again.

Pure functions, no Django: the deliver actor feeds them a status code or an error and gets
back a decision it records.
"""

from __future__ import annotations

import email.utils
import enum
import random
from collections.abc import Sequence
from dataclasses import dataclass


class Outcome(enum.Enum):
    SUCCESS = "success"
    RETRY = "retry"  # failed; try again if retries are left
    GONE = "gone"  # 410: the subscriber asked us to stop; disable the hook
    FINAL = "final"  # failed for good (refused target); never retried


def classify(status_code: int | None, *, refused: bool = False) -> Outcome:
    """``status_code`` None means no HTTP answer (timeout, connection error)."""
    if refused:
        return Outcome.FINAL
    if status_code is None:
        return Outcome.RETRY
    if 200 <= status_code < 300:
        return Outcome.SUCCESS
    if status_code == 410:
        return Outcome.GONE
    return Outcome.RETRY


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential schedule with jitter; ``schedule[n]`` is the wait before retry n+1."""

    schedule: Sequence[float]
    jitter: float = 0.1
    retry_after_min: float = 1.0
    retry_after_max: float = 86400.0

    @property
    def max_attempts(self) -> int:
        return len(self.schedule) + 1

    def clamp_retry_after(self, seconds: float) -> float:
        """Obey a receiver's Retry-After within bounds: no hammering, no parking for ever."""
        return min(max(seconds, self.retry_after_min), self.retry_after_max)

    def delay(
        self,
        attempts: int,
        retry_after: float | None = None,
        rng: random.Random | None = None,
    ) -> float | None:
        """Seconds to wait after the ``attempts``-th failed attempt; None: give up.

        A ``Retry-After`` answer replaces the schedule's delay, clamped so that a receiver
        can neither make us hammer it nor park a delivery for ever.
        """
        if attempts >= self.max_attempts:
            return None
        if retry_after is not None:
            return self.clamp_retry_after(retry_after)
        base = float(self.schedule[attempts - 1])
        spread = (rng or random).uniform(1 - self.jitter, 1 + self.jitter)
        return base * spread


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Seconds from ``now`` that a ``Retry-After`` header asks for (delta or HTTP date).

    None for anything else: the value is whatever a receiver wrote. Delta-seconds are
    ASCII digits only (``"²".isdigit()`` is true, and ``float()`` reads Arabic-Indic
    digits), and the date parser raises OverflowError on some dates.
    """
    if not value:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
        if when.tzinfo is None:
            return None
        return max(when.timestamp() - now, 0.0)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
