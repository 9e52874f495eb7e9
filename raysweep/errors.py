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
            text += f"; got {value!r}"
        super().__init__(text)


class RunDirLocked(UserError):
    """Another driver holds the run directory."""
