"""How far a trial got: the fidelity of every observation.

A run cut short (by the time budget, by ASHA, by a node that died) is not a
full run: its last value is a measurement at a lower fidelity. The experiment's
``fidelity`` says what measures progress (``FidelitySpec``: a reported value,
``training_iteration`` by default); this module reads, from a trial's progress
rows, the fidelity it reached. The recorder stores it in the trial's row
(column ``fidelity``), so every later phase sees each observation with the
fidelity it reached, as the raw values of its parameters.

Every observation also carries a few points of its learning curve
(:func:`curve`): the metric at geometric fractions of the fidelity the trial
reached, and last the point its objective was measured at. A multi-fidelity
model learns from them how values grow with training.

Pure logic: no Ray.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from raysweep.records import Observation, ProgressRecord, TrialStatus

if TYPE_CHECKING:
    from raysweep.spec import Experiment

__all__ = [
    "CURVE_POINTS",
    "ITERATION",
    "SECONDS",
    "FidelityScale",
    "curve",
    "curve_of_progress",
    "experiment_scale",
    "reached",
    "scale_for",
    "schedule_max",
]

#: Tune's own result keys a fidelity may name; the progress rows keep them as columns of their own.
ITERATION = "training_iteration"
SECONDS = "time_total_s"
#: Points kept of each trial's learning curve, the last one included: the last
#: report holding the metric, and the latest reports at or below 1/2, 1/4, 1/8 ... of its fidelity.
CURVE_POINTS = 4

#: One point of a learning curve: (fidelity in the units of ``attr``, the metric's value there).
Point = tuple[float, float]


def reached(
    progress: Sequence[ProgressRecord], attr: str, final_values: Mapping[str, float] | None = None
) -> float | None:
    """The last value of ``attr`` over a trial's progress rows (reports in order), or None.

    ``training_iteration`` and ``time_total_s`` are read from the rows' own
    iteration and time; any other name from the numbers the trial reported
    (a value may be missing from some reports: the last one that holds it
    counts). ``final_values`` (the numbers of the trial's final result) stand
    in when there are no progress rows. Non-finite values are skipped.
    """
    value: float | None = None
    for row in progress:
        candidate = level_of(attr, row.iteration, row.time_s, row.metrics)
        if candidate is not None:
            value = candidate
    if value is None and final_values is not None:
        value = _finite(final_values.get(attr))
    return value


def level_of(attr: str, iteration: int, time_s: float, values: Mapping[str, object]) -> float | None:
    """The fidelity one report states (``attr``'s value), or None when it holds none as a finite number."""
    if attr == ITERATION:
        return float(iteration)
    if attr == SECONDS:
        return _finite(time_s)
    return _finite(values.get(attr))


def curve(points: Sequence[Point], keep: int = CURVE_POINTS) -> tuple[Point, ...]:
    """At most ``keep`` points of a learning curve (reports in order), in rising fidelity.

    The last point is the last report holding the metric (where the trial's
    objective was measured); before it, for f its fidelity, the latest report
    at a fidelity at or below f/2, f/4, ... (each counted once). Points whose
    fidelity is not above the previous kept one are dropped, so the curve is
    a function of the fidelity. Empty when no report held both.
    """
    if not points or keep < 1:
        return ()
    final = points[-1]
    kept = [final]
    earlier = list(points[:-1])
    ceiling = final[0]
    while len(kept) < keep and earlier:
        ceiling /= 2.0
        below = [p for p in earlier if p[0] <= ceiling]
        if not below:
            break
        chosen = below[-1]
        if chosen[0] < kept[-1][0]:
            kept.append(chosen)
        earlier = earlier[: earlier.index(chosen)]
    return tuple(reversed(kept))


def curve_of_progress(progress: Sequence[ProgressRecord], attr: str, metric: str) -> tuple[Point, ...]:
    """:func:`curve` of a trial's progress rows (a row stating no fidelity counts at the last one stated)."""
    points = []
    last_level: float | None = None
    for row in progress:
        level = level_of(attr, row.iteration, row.time_s, row.metrics)
        last_level = last_level if level is None else level
        value = _finite(row.metrics.get(metric))
        if last_level is not None and value is not None:
            points.append((last_level, value))
    return curve(points)


def _finite(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


#: A measurement at or above this share of a full run's fidelity counts as a full run.
FULL_SHARE = 0.999


@dataclass(frozen=True)
class FidelityScale:
    """How the fidelity an observation reached places it for a model, and what a full run is.

    Two forms (the experiment's ``fidelity``):

    * ``parameter`` is None: fidelity is a coordinate of its own, the *share*
      of a full run, ``level / full`` (1 = a full run; ``full`` in ``attr``'s units).
    * ``parameter`` names a searched parameter that is the training length:
      a point's value of that parameter is the length it really trained
      (``min(level, its value)``), and a full run is one that reached its own value.
      ``power_of_two``: the parameter is a ``pow2`` one, whose model coding
      holds powers of two only, so a length trained is placed at the nearest
      power of two in log2 scale (never past the run's own value).

    Build it with :func:`scale_for`.
    """

    attr: str
    full: float | None = None
    parameter: str | None = None
    power_of_two: bool = False

    @property
    def completion_is_full(self) -> bool:
        """Whether a run that completed is a full run whatever fidelity it reached: with seconds
        (``time_total_s``) no two complete runs take the same time, so the most one took is no
        threshold the others fall short of; a completed run's curve is then placed by its own duration."""
        return self.parameter is None and self.attr == SECONDS

    def share(self, level: float) -> float:
        """``level`` as a share of a full run (dimension form only)."""
        assert self.full is not None
        return level / self.full

    def is_full(self, observation: Observation) -> bool:
        """Whether ``observation`` is a measurement at full fidelity.

        An observation whose fidelity is unknown counts as full when it completed,
        and so does every completed one when the fidelity is seconds
        (:attr:`completion_is_full`).
        """
        if observation.fidelity is None or (self.completion_is_full and observation.status is TrialStatus.COMPLETED):
            return observation.status is TrialStatus.COMPLETED
        if self.parameter is not None:
            length = observation.params.get(self.parameter)
            if observation.status is TrialStatus.COMPLETED or not isinstance(length, (int, float)):
                return observation.status is TrialStatus.COMPLETED
            return observation.fidelity >= FULL_SHARE * float(length)
        assert self.full is not None
        return observation.fidelity >= FULL_SHARE * self.full

    def points(self, observation: Observation) -> list[tuple[dict[str, Any], float | None, float, float]]:
        """The model's points for a usable observation: ``(params, share, value, cost share)`` each.

        One per learning-curve point (:attr:`Observation.curve`; the
        observation's own fidelity and objective when it has no curve), in
        rising fidelity; the last is the observation's objective. ``params``
        are the observation's, with the fidelity parameter set to the length
        trained (parameter form; a point at a length of 0 or less is left out:
        no length scale, a log one least of all, holds it); ``share`` is the share of a full run
        (dimension form; None in the parameter form); ``cost share`` the
        point's share of the observation's cost (its fidelity over the last
        point's). A completed run's last point counts as full; in the
        dimension form, a cut-short run with no known fidelity gives no point.
        """
        assert observation.objective is not None
        curve = list(observation.curve)
        if not curve or curve[-1][1] != observation.objective:
            if observation.fidelity is None:
                if observation.status is not TrialStatus.COMPLETED:
                    return []
                curve = [(math.nan, float(observation.objective))]
            else:
                curve = [(observation.fidelity, float(observation.objective))]
        last_level = curve[-1][0]
        completed = observation.status is TrialStatus.COMPLETED
        points = []
        for position, (level, value) in enumerate(curve):
            final = position == len(curve) - 1
            cost = 1.0 if final or not (last_level > 0) else level / last_level
            params = dict(observation.params)
            if self.parameter is not None:
                length = params.get(self.parameter)
                if not (final and completed) and isinstance(length, (int, float)) and level == level:
                    trained = self._trained(float(length), level)
                    if trained is None:
                        continue
                    params[self.parameter] = int(trained) if isinstance(length, int) else trained
                points.append((params, None, value, cost))
            else:
                share = self._share_at(level, last_level, completed=completed, final=final)
                if share is not None:
                    points.append((params, share, value, cost))
        return points

    def _share_at(self, level: float, last_level: float, *, completed: bool, final: bool) -> float | None:
        """The share of a full run of a curve point at ``level`` (NaN: not known), or None (no point)."""
        if math.isnan(level):  # a completed run whose fidelity is unknown: its one point is a full run
            return 1.0 if final and completed else None
        if completed and self.completion_is_full:
            return level / last_level if last_level > 0 else 1.0
        return self.share(level)

    def _trained(self, length: float, level: float) -> float | None:
        """The length a point at ``level`` trained, as the fidelity parameter can hold it, or None (no length)."""
        trained = min(length, level)
        if not trained > 0:
            return None
        if self.power_of_two:
            trained = min(length, 2.0 ** round(math.log2(trained)))
        return trained


def scale_for(
    attr: str,
    declared_max: float | None,
    parameter: str | None,
    history: Sequence[Observation],
    schedule_max: float | None = None,
    power_of_two: bool = False,
) -> FidelityScale | None:
    """The fidelity scale of a phase, or None when a full run's fidelity is not known yet.

    A full run's fidelity (dimension form) is, in order: ``declared_max`` (the
    experiment's ``fidelity.max``), the most any completed observation of
    ``history`` reached (a run that completed is a full run), ``schedule_max``
    (an ASHA ``max_t`` counted in ``attr``, when nothing completed yet).
    ``power_of_two``: ``parameter`` is a ``pow2`` one (:class:`FidelityScale`).
    """
    if parameter is not None:
        return FidelityScale(attr=attr, parameter=parameter, power_of_two=power_of_two)
    full = declared_max
    if full is None:
        reached_full = [o.fidelity for o in history if o.status is TrialStatus.COMPLETED and o.fidelity is not None]
        full = max(reached_full, default=schedule_max)
    if full is None or not full > 0:
        return None
    return FidelityScale(attr=attr, full=float(full))


def schedule_max(experiment: "Experiment") -> float | None:
    """The ``max_t`` of ASHA in ``experiment``'s phases that count in ``fidelity.attr``, or None.

    ASHA lets no trial train past its ``max_t``, so when it counts in the
    fidelity's units that is a full run's fidelity. Phases whose
    ``early_stopping`` counts in another attribute say nothing about it; when
    several phases give one, the largest counts (what the longest full run reaches).
    """
    attr = experiment.fidelity.attr
    limits = [
        float(phase.early_stopping.max_t)
        for phase in experiment.phases
        if phase.early_stopping is not None and phase.early_stopping.time_attr == attr
    ]
    return max(limits, default=None)


def experiment_scale(experiment: "Experiment", history: Sequence[Observation]) -> FidelityScale | None:
    """:func:`scale_for` with ``experiment``'s ``fidelity`` and :func:`schedule_max`, over ``history``."""
    fidelity = experiment.fidelity
    power_of_two = fidelity.parameter is not None and experiment.parameters[fidelity.parameter].distribution == "pow2"
    return scale_for(
        fidelity.attr, fidelity.max, fidelity.parameter, history,
        schedule_max=schedule_max(experiment), power_of_two=power_of_two,
    )
