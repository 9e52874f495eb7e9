"""Selection: the best configs of a sweep once repeated measurements are pooled.

RL results are noisy; one lucky seed can put a mediocre config on top. raysweep
re-runs promising configs with new seeds (``resample_every``), so one config
may hold several measurements. Everything here works on *configs*, not trials:

* observations are grouped by their parameters (the trial's ``seed`` is not a
  parameter and never splits a group); floats are compared at 12 significant
  digits, as :func:`raysweep.space.config_key` does;
* a config's objective is the **mean** of its measurements, and its cost the
  mean cost, so a second, worse measurement pulls a lucky winner back down;
* only full-fidelity measurements are pooled when the sweep has any: an
  early-stopped or time-budget trial reports a partial value that is not
  comparable with a finished run. Given the sweep's fidelity scale
  (:func:`raysweep.fidelity.experiment_scale`), a full-fidelity measurement is
  one that reached a full run's fidelity (:meth:`FidelityScale.is_full`: a
  trial that completed short of it is left out too); without one, a
  ``COMPLETED`` one. A sweep without a single such measurement falls back to
  all usable ones. Failed trials never count.

Pure logic: no Ray, no Ax.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterable, Sequence

from raysweep.records import Observation, TrialStatus
from raysweep.space import RawValue, config_key

if TYPE_CHECKING:
    from raysweep.fidelity import FidelityScale

__all__ = ["ConfigSummary", "best_config", "measured", "pareto_front", "summarize"]

COST_FIELDS = ("cost_s", "gpu_s")
#: Keys of a trial config that are not parameters of the search space.
NON_PARAMETER_KEYS = frozenset({"seed", "resampled_from"})


@dataclass(frozen=True)
class ConfigSummary:
    """One config and its pooled measurements."""

    params: dict[str, RawValue]
    objective: float  # mean of the measurements
    objective_std: float | None  # sample std of the measurements; None when measured once
    cost: float  # mean cost of the measurements, in the chosen cost field
    count: int  # number of measurements pooled
    trial_ids: tuple[str, ...]  # the measuring trials, in the order given

    @property
    def first_trial_id(self) -> str:
        """The trial that measured this config first (what a resample re-runs)."""
        return self.trial_ids[0]


def measured(observations: Iterable[Observation], scale: "FidelityScale | None" = None) -> list[Observation]:
    """The observations selection pools: the full-fidelity ones, or all usable ones when there are none.

    Full fidelity: ``scale.is_full`` when ``scale`` is given, else ``COMPLETED``.
    """
    usable = [o for o in observations if o.usable]
    if scale is None:
        full = [o for o in usable if o.status is TrialStatus.COMPLETED]
    else:
        full = [o for o in usable if scale.is_full(o)]
    return full if full else usable


def summarize(observations: Iterable[Observation], *, cost_field: str = "cost_s") -> list[ConfigSummary]:
    """Group the usable observations given by config (all of them: no status filter
    beyond :attr:`Observation.usable`), in order of first appearance."""
    _check_cost_field(cost_field)
    groups: dict[tuple, list[Observation]] = {}
    for observation in observations:
        if not observation.usable:
            continue
        groups.setdefault(_group_key(observation.params), []).append(observation)
    summaries = []
    for members in groups.values():
        values = [float(o.objective) for o in members]  # type: ignore[arg-type]
        costs = [float(getattr(o, cost_field)) for o in members]
        mean = math.fsum(values) / len(values)
        std = None
        if len(values) > 1:
            std = math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (len(values) - 1))
        summaries.append(
            ConfigSummary(
                params={k: v for k, v in members[0].params.items() if k not in NON_PARAMETER_KEYS},
                objective=mean,
                objective_std=std,
                cost=math.fsum(costs) / len(costs),
                count=len(members),
                trial_ids=tuple(o.trial_id for o in members),
            )
        )
    return summaries


def pareto_front(observations: Sequence[Observation], mode: str, *, cost_field: str = "cost_s") -> list[ConfigSummary]:
    """Configs no other config beats on both objective and cost, cheapest first.

    Works on the pooled measurements (:func:`measured`, then :func:`summarize`). A
    config is on the front unless another one is at least as good and at most as
    costly, and strictly better in one of the two; two configs with equal
    objective and cost are both kept.
    """
    _check_mode(mode)
    summaries = summarize(measured(observations), cost_field=cost_field)
    sign = 1.0 if mode == "max" else -1.0
    ordered = sorted(summaries, key=lambda s: (s.cost, -sign * s.objective))
    front: list[ConfigSummary] = []
    for summary in ordered:
        if not front:
            front.append(summary)
            continue
        best = front[-1]
        if sign * summary.objective > sign * best.objective:
            front.append(summary)
        elif summary.objective == best.objective and summary.cost == best.cost:
            front.append(summary)
    return front


def best_config(
    observations: Sequence[Observation],
    mode: str,
    *,
    cost_field: str = "cost_s",
    min_repeats: int = 1,
    scale: "FidelityScale | None" = None,
) -> ConfigSummary | None:
    """The config with the best mean objective over its pooled measurements.

    The measurements pooled are :func:`measured`'s: at full fidelity by
    ``scale`` when given (a run cut short never wins over full runs). With ``min_repeats > 1`` only configs measured at least that often compete
    (when none is, every config does). Ties go to the config with more
    measurements, then to the cheaper one. None when nothing is usable.
    """
    _check_mode(mode)
    if isinstance(min_repeats, bool) or not isinstance(min_repeats, int) or min_repeats < 1:
        raise ValueError(f"min_repeats must be an int >= 1; got {min_repeats!r}")
    summaries = summarize(measured(observations, scale), cost_field=cost_field)
    if not summaries:
        return None
    repeated = [s for s in summaries if s.count >= min_repeats]
    candidates = repeated or summaries
    sign = 1.0 if mode == "max" else -1.0
    return max(candidates, key=lambda s: (sign * s.objective, s.count, -s.cost))


def _group_key(params: dict[str, RawValue]) -> tuple:
    names = sorted(k for k in params if k not in NON_PARAMETER_KEYS)
    return (tuple(names), config_key(params, names))


def _check_mode(mode: str) -> None:
    if mode not in ("max", "min"):
        raise ValueError(f"mode must be 'max' or 'min'; got {mode!r}")


def _check_cost_field(cost_field: str) -> None:
    if cost_field not in COST_FIELDS:
        raise ValueError(f"cost_field must be one of {COST_FIELDS}; got {cost_field!r}")
