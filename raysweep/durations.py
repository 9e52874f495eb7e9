"""Durations as people write them in experiment files: ``90s``, ``30m``, ``1h30m``."""

from __future__ import annotations

import math
import re

_UNITS = {"d": 86400.0, "h": 3600.0, "m": 60.0, "s": 1.0}
_PART = re.compile(r"(\d+(?:\.\d+)?)\s*([dhms])")
_WHOLE = re.compile(r"^\s*(?:\d+(?:\.\d+)?\s*[dhms]\s*)+$")

DURATION_HINT = "use seconds or a string such as 90s, 30m, 1h, 1h30m"


def parse_duration(value: object) -> float:
    """Seconds in ``value`` (a number of seconds or ``1h30m``); ValueError naming the rule otherwise.

    Booleans, inf, nan and values <= 0 are refused.
    """
    if isinstance(value, bool):
        raise ValueError(f"unparseable duration ({DURATION_HINT})")
    if isinstance(value, (int, float)):
        seconds = float(value)
    elif isinstance(value, str) and _WHOLE.match(value.lower()):
        seconds = sum(float(n) * _UNITS[u] for n, u in _PART.findall(value.lower()))
    elif isinstance(value, str):
        try:
            seconds = float(value)
        except ValueError:
            raise ValueError(f"unparseable duration ({DURATION_HINT})") from None
    else:
        raise ValueError(f"unparseable duration ({DURATION_HINT})")
    if not math.isfinite(seconds):
        raise ValueError("a duration must be finite (leave the field out for no limit)")
    if not seconds > 0:
        raise ValueError("a duration must be positive")
    return seconds


def format_duration(seconds: float) -> str:
    """Short human form: ``45s``, ``2m``, ``1h30m``."""
    seconds = float(seconds)
    if seconds < 60:
        return f"{seconds:.3g}s"
    if seconds < 3600:
        minutes, rest = divmod(seconds, 60)
        return f"{int(minutes)}m" + (f"{int(rest)}s" if rest >= 1 else "")
    hours, rest = divmod(seconds, 3600)
    return f"{int(hours)}h" + (f"{int(rest // 60)}m" if rest >= 60 else "")
