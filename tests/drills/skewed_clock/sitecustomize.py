"""Loaded by a drill's worker process (PYTHONPATH): its wall clock runs CW_CLOCK_SKEW_S seconds off.

``time.time``/``time.time_ns`` and ``datetime.now``/``utcnow`` are shifted; the monotonic clock is
not (a skewed wall clock does not make intervals wrong). Nothing else in the process changes.
"""

from __future__ import annotations

import datetime as _datetime
import os
import time as _time

SKEW_S = float(os.environ.get("CW_CLOCK_SKEW_S", "0") or 0)

if SKEW_S:
    _real_time, _real_time_ns = _time.time, _time.time_ns
    _time.time = lambda: _real_time() + SKEW_S
    _time.time_ns = lambda: _real_time_ns() + int(SKEW_S * 1e9)

    class _SkewedDatetime(_datetime.datetime):
        @classmethod
        def now(cls, tz=None):  # type: ignore[no-untyped-def, override]
            return super().now(tz) + _datetime.timedelta(seconds=SKEW_S)

        @classmethod
        def utcnow(cls):  # type: ignore[no-untyped-def, override]
            return super().utcnow() + _datetime.timedelta(seconds=SKEW_S)

    _datetime.datetime = _SkewedDatetime  # type: ignore[misc]
