"""The plan: how many trials each phase runs, under what limit, with which configs.

Pure logic: no Ray, no files. ``validate`` prints it; ``run`` executes it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from raysweep.durations import format_duration
from raysweep.errors import SpecError
from raysweep.grid import Design, grid_design, random_design
from raysweep.space import SearchSpace
from raysweep.spec import Experiment, PhaseSpec


@dataclass(frozen=True)
class PhasePlan:
    index: int  # 1-based
    spec: PhaseSpec
    trials: int  # what the phase will run
    space: SearchSpace  # the sweep's bounds with this phase's sampling bias
    seed: int
    design: Design | None  # the configs of a grid or random phase
    requested: int | None = None  # trials asked for, when the space has fewer distinct configs

    @property
    def name(self) -> str:
        return self.spec.name

    def describe(self) -> str:
        spec = self.spec
        parts = [f"phase {self.index} {spec.name!r}: {spec.searcher}, {self.trials} trials"]
        parts.append(
            "per-trial time budget " + (format_duration(spec.max_trial_time) if spec.max_trial_time else "none")
        )
        if self.design is not None:
            parts.append(self.design.describe(self.trials_requested))
        if spec.searcher == "ax":
            ax = f"{spec.random_samples} quasi-random starts, then BoTorch"
            if spec.resample_every:
                ax += f"; one trial in {spec.resample_every} re-runs a Pareto-front config"
            if spec.max_suggestion_cost:
                ax += f"; cost constraint {format_duration(spec.max_suggestion_cost)}"
            parts.append(ax)
            if spec.narrow is not None:
                n = spec.narrow
                parts.append(
                    f"narrowed to mean +- {n.std_multiplier:g} std of the top {n.top_fraction:.0%} (at least {n.min_top}) configs so far"
                )
        if spec.early_stopping is not None:
            e = spec.early_stopping
            parts.append(
                f"ASHA on {e.time_attr} (grace {e.grace_period:g}, reduction {e.reduction_factor:g}, max_t {e.max_t:g})"
            )
        return "; ".join(parts)

    @property
    def trials_requested(self) -> int:
        return self.requested if self.requested is not None else self.trials


def phase_trials(experiment: Experiment, budget: int | None = None) -> list[int]:
    """Trials per phase: fixed ones as given, shares split the rest of the budget.

    Shares are rounded by largest remainder so that they add up exactly, so a
    small budget can leave a phase with 0 trials (:func:`plan` refuses that).
    ``budget`` replaces the experiment's own (to search for the smallest one).
    """
    fixed = sum(p.trials or 0 for p in experiment.phases)
    total = experiment.budget if budget is None else budget
    remaining = (total or 0) - fixed
    shares = [(i, p.share) for i, p in enumerate(experiment.phases) if p.share is not None]
    counts = [p.trials or 0 for p in experiment.phases]
    if shares:
        exact = [(i, s * remaining) for i, s in shares]  # type: ignore[operator]
        floors = {i: math.floor(x) for i, x in exact}
        left = remaining - sum(floors.values())
        order = sorted(exact, key=lambda item: (-(item[1] - math.floor(item[1])), item[0]))
        for i, _ in order[:left]:
            floors[i] += 1
        for i, n in floors.items():
            counts[i] = n
    return counts


def phase_seed(experiment: Experiment, index: int) -> int:
    """A seed per phase, stable across runs of the same experiment."""
    return (experiment.seed * 1_000_003 + index * 7919) % (2**31 - 1)


def smallest_budget(experiment: Experiment) -> int:
    """The smallest budget that gives every phase at least one trial."""
    budget = sum(p.trials or 0 for p in experiment.phases) + 1
    while min(phase_trials(experiment, budget)) < 1:
        budget += 1
    return budget


def check_budget(experiment: Experiment) -> None:
    """Refuse a budget whose shares leave a phase without a trial.

    Raises SpecError naming ``budget``, the phase that gets 0 trials and the
    smallest budget that gives every phase one (``--budget`` in quick mode).
    """
    counts = phase_trials(experiment)
    empty = [i for i, count in enumerate(counts) if count < 1]
    if not empty or experiment.budget is None:
        return
    i = empty[0]
    phase = experiment.phases[i]
    raise SpecError(
        "budget",
        f"phases[{i}] ({phase.name}) gets 0 trials from its share {phase.share:g}; "
        f"every phase needs at least one, so the smallest budget for these phases is {smallest_budget(experiment)}",
        experiment.budget,
    )


def plan(experiment: Experiment) -> list[PhasePlan]:
    """The phases of ``experiment``, sized and with their designs.

    Raises SpecError when the budget leaves a phase without trials.
    """
    check_budget(experiment)
    plans = []
    for i, (spec, trials) in enumerate(zip(experiment.phases, phase_trials(experiment))):
        index = i + 1
        space = experiment.phase_space(i)
        seed = phase_seed(experiment, index)
        design = None
        if spec.searcher == "grid":
            design = grid_design(space, spec.grid_resolution, trials, seed)
        elif spec.searcher == "random":
            design = random_design(space, trials, seed)
        runnable = trials if design is None else len(design.configs)
        plans.append(
            PhasePlan(index=index, spec=spec, trials=runnable, space=space, seed=seed, design=design, requested=trials)
        )
    return plans


def trial_seed(phase_seed_value: int, position: int) -> int:
    """The seed handed to a phase's ``position``-th trial (0-based)."""
    return (phase_seed_value * 31 + position * 104_729 + 1) % (2**31 - 1)
