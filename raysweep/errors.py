"""Errors a user can act on. The CLI prints them in one line and exits 2."""

from __future__ import annotations


class UserError(Exception):
    """Bad input or a call in the wrong order: reported without a traceback."""


class SpecError(UserError):
    """An experiment file (or ``--set`` / quick-mode flag) breaks a rule.

    The message names the field's path, the rule and the value given, e.g.
    ``phases[1].max_trial_time: unparseable duration; got '5 mins' (use 90s, 30m, 1h, 1h30m)``.
    """

    def __init__(self, path: str, rule: str, value: object = ...):
        self.path = path
        self.rule = rule
        self.value = value
        text = f"{path}: {rule}" if path else rule
        if value is not ...:
            text += f"; got {_short(value)}"
        super().__init__(text)


def _short(value: object, limit: int = 200) -> str:
    """``repr(value)``, cut to ``limit`` characters: one line, whatever a file held."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


class RunDirLocked(UserError):
    """Another driver holds the run directory."""
