"""The searcher of one Bayesian phase, built from the run directory."""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING, Any, Sequence

from raysweep.searchers.ax.searcher import AxSearcher

if TYPE_CHECKING:
    from raysweep.fidelity import FidelityScale
    from raysweep.planning import PhasePlan
    from raysweep.records import Observation
    from raysweep.sinks.parquet import ParquetSink
    from raysweep.spec import Experiment
    from raysweep.storage import StoragePath

logger = logging.getLogger("raysweep.searchers.ax")

#: Folder of the run directory holding each Bayesian phase's GP hyperparameters.
MODEL_DIR = "model"


def hyperparameters_file(phase: int) -> str:
    """The file name of phase ``phase``'s GP hyperparameters in :data:`MODEL_DIR`."""
    return f"phase{phase}-gp.json"


def make_ax_searcher(
    experiment: "Experiment", phase_plan: "PhasePlan", sink: "ParquetSink", outcome_key: str
) -> tuple[AxSearcher, dict[str, Any]]:
    """The searcher of a Bayesian phase, and the extra columns its trial rows carry.

    History: the finished trials of every earlier committed phase, the most
    recent ``max_observations_to_load`` of them, or none with ``warm_start:
    false`` (the multi-stage guide's cold start per stage). The box (when the
    phase narrows) is computed from *all* earlier observations, so the top
    configs of phase 1 still count in phase 3. With ``model: multi_fidelity``
    those configs are ranked by their values at the target fidelity (a run cut
    short by what a full run of its config is predicted to reach,
    :mod:`raysweep.target_ranking`); with ``single_fidelity`` by their raw values. Trials of this phase already
    staged by an interrupted attempt count against its plan and join the
    history whatever ``warm_start`` says: they are this phase's own data.
    The cost is wall seconds (``cost_s``), the unit of ``max_suggestion_cost``.

    The GP's first fit starts from the hyperparameters the most recent
    earlier Bayesian phase left in ``<run_dir>/model/`` (not with
    ``warm_start: false``), and this phase leaves its own there.

    A narrowed phase's box follows the optimum (:mod:`raysweep.trust_region`,
    with the narrowing's ``min_width``). Trials of this phase an interrupted
    attempt already finished are replayed through the rule in the order they
    were staged, so a phase continued in a fresh Tune run starts from the box
    and counters the attempt had reached (a run restored from Tune's saved
    state brings the searcher's own).

    The extra columns: ``box`` (:meth:`Box.to_dict`, the phase's initial box)
    when the phase is narrowed, and ``narrow_note`` when narrowing had fewer
    than ``min_top`` usable observations to work with
    (:func:`raysweep.narrowing.phase_box`).
    """
    from raysweep.narrowing import phase_box
    from raysweep.trust_region import TrustRegion

    spec = phase_plan.spec
    earlier = list(range(1, phase_plan.index))
    every_earlier = sink.read_observations(earlier) if earlier else []
    limit = spec.max_observations_to_load
    history = every_earlier if limit is None else every_earlier[-limit:]
    if not spec.warm_start:
        history = []
    own = sink.read_observations([phase_plan.index], include_staged=True)
    box, note = None, None
    if spec.narrow is not None:
        box, note = phase_box(
            phase_plan.space,
            every_earlier,
            experiment.mode,
            top_fraction=spec.narrow.top_fraction,
            min_top=spec.narrow.min_top,
            std_multiplier=spec.narrow.std_multiplier,
            min_width=spec.narrow.min_width,
            values=_target_values(experiment, phase_plan, every_earlier),
        )
    region = None
    if box is not None:
        region = TrustRegion(phase_plan.space, box, min_width=spec.narrow.min_width)  # type: ignore[union-attr]
        for position, observation in enumerate(own):
            region.observe(observation, [*history, *own[:position]], experiment.mode)
    scale = phase_fidelity_scale(experiment, [*every_earlier, *own])
    already = len(sink.staged_trial_ids(phase_plan.index))
    model_dir = sink.root.parent / MODEL_DIR
    searcher = AxSearcher(
        phase_plan.space,
        metric=experiment.metric,
        mode=experiment.mode,
        num_trials=max(0, phase_plan.trials - already),
        history=history + own,
        random_samples=spec.random_samples,
        resample_every=spec.resample_every,
        max_suggestion_cost=spec.max_suggestion_cost,
        cost_field="cost_s",
        box=None if region is None else region.box,
        trust_region=region,
        # A restarted attempt draws new random points, not the first attempt's again.
        seed=phase_plan.seed + 7919 * already,
        outcome_key=outcome_key,
        gpus_per_trial=experiment.resources.gpu,
        phase=phase_plan.index,
        warm_hyperparameters=_latest_hyperparameters(model_dir, phase_plan.index) if spec.warm_start else None,
        hyperparameters_path=str(model_dir / hyperparameters_file(phase_plan.index)),
        history_source=str(sink.root.parent),
        fidelity_scale=scale,
    )
    extra: dict[str, Any] = {}
    if box is not None:
        extra["box"] = box.to_dict()
    if note is not None:
        extra["narrow_note"] = note
    extra["model_note"] = model_note(experiment, scale, [*every_earlier, *own])
    return searcher, extra


def model_note(
    experiment: "Experiment", scale: "FidelityScale | None", observations: "Sequence[Observation]" = ()
) -> str:
    """One line on the phase's GP, for the console, ``state.json`` and ``status``.

    ``observations`` (the trials the phase's scale was built from) tell a
    ``fidelity.attr`` that trials never report (a typo, another name) from one
    whose full run is not known yet.
    """
    if experiment.model == "single_fidelity":
        return "model: single-fidelity GP (model: single_fidelity); every observation counts as a full run"
    attr = experiment.fidelity.attr
    finished = [o for o in observations if o.usable]
    unreported = (
        f"none of the {len(finished)} earlier trials with a value reported fidelity.attr {attr!r} "
        "(name a value the trainable reports, as metric names one)"
        if finished and all(o.fidelity is None for o in finished)
        else None
    )
    if scale is not None and scale.parameter is not None:
        note = f"model: a cut-short run counts at the {scale.parameter} it trained (fidelity.parameter)"
    elif scale is not None:
        note = f"model: multi-fidelity GP; candidates sought at a full run, {scale.full:g} {scale.attr}"
    elif unreported is not None:
        return f"model: single-fidelity GP: {unreported}"
    else:
        return (
            f"model: single-fidelity GP for now: no full run's {attr} is known yet "
            "(give fidelity.max, or let a trial complete)"
        )
    return note if unreported is None else f"{note}; but {unreported}"


def phase_fidelity_scale(experiment: "Experiment", observations: "list[Observation]") -> "FidelityScale | None":
    """The fidelity scale of a Bayesian phase's multi-fidelity model, or None for the single-fidelity GP.

    None with ``model: single_fidelity``, and when a full run's fidelity is not
    known yet (no ``fidelity.max``, no completed trial, no ASHA ``max_t``
    counted in ``fidelity.attr``): the phase then counts every observation at
    its last value (:func:`model_note` says which).
    """
    from raysweep.fidelity import experiment_scale

    if experiment.model != "multi_fidelity":
        return None
    return experiment_scale(experiment, observations)


def _target_values(
    experiment: "Experiment", phase_plan: "PhasePlan", observations: "list[Observation]"
) -> dict[str, float] | None:
    """What the box ranks the earlier trials by: their values at the target fidelity
    (:func:`raysweep.target_ranking.target_values`) with ``model: multi_fidelity``
    once a full run's fidelity is known; None (the raw ranking) otherwise."""
    from raysweep.target_ranking import target_values

    scale = phase_fidelity_scale(experiment, observations) if observations else None
    if scale is None:
        return None
    return target_values(observations, phase_plan.space, experiment.mode, scale)


def _latest_hyperparameters(model_dir: "StoragePath", phase: int) -> dict[str, Any] | None:
    """The GP hyperparameters the most recent earlier Bayesian phase left, or None."""
    for earlier in range(phase - 1, 0, -1):
        path = model_dir / hyperparameters_file(earlier)
        try:
            if path.exists():
                return json.loads(path.read_bytes())
        except (OSError, ValueError) as exc:
            logger.warning("ignoring the GP hyperparameters in %s (%s); the first fit starts cold", path, exc)
            return None
    return None
