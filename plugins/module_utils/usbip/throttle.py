# Copyright: (c) 2026, usbip.usbip contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A log that whoever causes the events cannot flood: :class:`LogThrottle`.

One line per refused connection lets whoever can open connections write the
daemon's log; one line per refused request on the channel between usbipd's
two processes lets a taken-over network process do the same. Both go through
this class: the first events of each kind in an interval are logged in full,
the others counted into one summary line.

It sits below ``net/`` and ``daemon/`` (both use it) and imports nothing of
the package.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Callable, Dict, List, Optional


class LogThrottle:
    """At most ``burst`` lines per kind of event in each interval; the rest counted into one line.

    An event is named by its ``summary`` (``"connections from 10.0.0.7
    refused: not in the allowed client networks"``): the first ``burst`` in
    an interval are logged in full, later ones are counted, and when the
    interval ends :meth:`flush` logs ``"<n> more <summary>"`` once. At most
    ``capacity`` summaries are kept; events past that are counted together
    and reported as events about other clients, so memory stays bounded
    whoever causes them.

    ``schedule(delay, callback)`` (the event loop's ``call_later``) makes the
    summary come when the interval ends; without it, it comes with the next
    event after the interval, or at :meth:`flush`.
    """

    def __init__(self, log: logging.Logger, interval: float = 10.0, capacity: int = 256, burst: int = 1,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.log = log
        self.interval = interval
        self.capacity = capacity
        self.burst = burst
        self.clock = clock
        self.schedule: Optional[Callable[[float, Callable[[], None]], Any]] = None
        #: summary -> [lines logged, events not logged, level]
        self._counts: Dict[str, List[int]] = {}
        self._others = 0
        self._others_level = logging.INFO
        self._ends: Optional[float] = None
        self._timer: Any = None

    def event(self, summary: str, level: int, message: str, *args: Any, exc_info: bool = False) -> bool:
        """One event; ``message % args`` is logged if it is among the first ``burst`` of ``summary`` in the interval.

        Returns whether it was logged. ``exc_info`` goes with the line if it is logged.
        """
        now = self.clock()
        if self._ends is not None and now >= self._ends:
            self.flush()
        counted = self._counts.get(summary)
        if counted is not None:
            if counted[0] >= self.burst:
                counted[1] += 1
                return False
            counted[0] += 1
        elif len(self._counts) >= self.capacity:
            self._others += 1
            self._others_level = max(self._others_level, level)
            return False
        else:
            self._counts[summary] = [1, 0, level]
        if self._ends is None:
            self._ends = now + self.interval
            if self.schedule is not None:
                self._timer = self.schedule(self.interval, self.flush)
        self.log.log(level, message, *args, exc_info=exc_info)
        return True

    def flush(self) -> None:
        """Log the summaries of the interval and start afresh."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        counts, others, interval = self._counts, self._others, self.interval
        self._counts, self._others, self._ends = {}, 0, None
        for summary, (_logged, count, level) in counts.items():
            if count:
                self.log.log(level, "%d more %s", count, summary)
        if others:
            self.log.log(self._others_level, "%d more events about other clients not logged (over %d kinds in"
                         " %.0f s)", others, self.capacity, interval)
            self._others_level = logging.INFO
