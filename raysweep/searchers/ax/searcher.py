"""raysweep's Ray Tune searcher on Ax's ``Client``: one Bayesian phase.

What it guarantees, and how (the parameter coding is in
:mod:`raysweep.searchers.ax.coding`, the GP and the acquisition in
:mod:`~raysweep.searchers.ax.model`, the saved state in
:mod:`~raysweep.searchers.ax.state`):

Warm start without corruption
    Every earlier observation is attached to the Ax experiment with its raw
    values (``Client.attach_trial`` + data), and the experiment's search space
    is always the sweep's *declared* bounds, the same in every phase. Narrowing
    (a :class:`~raysweep.narrowing.Box`) never touches the experiment: it is
    passed only as the ``search_space`` argument of ``Adapter.gen`` (plus fixed
    features for parameters the box pins to one value, and held-at-zero one-hot
    columns for unordered choice values it excludes), which restricts where the
    acquisition function is optimised. The adapter itself is built on the
    declared space (``search_space=experiment.search_space``;
    ``expand_model_space`` even widens it to cover out-of-bounds history), so
    no observation is filtered as out of design and a 300M-timesteps point of
    phase 1 reaches the phase-3 model as 300M while phase 3 generates only in
    [500M, 1.5B]. :meth:`AxSearcher.model_training_configs` shows the rows the
    BoTorch model was fit on, mapped back to raw values.

Suggestions, in order of precedence for the phase's n-th trial (1-based)
    1. ``n > num_trials``: :attr:`Searcher.FINISHED`.
    2. ``resample_every`` divides n: re-run a config of the current Pareto front
       of (mean objective, mean cost) with a new seed (see :meth:`_pick_resample`).
    3. The first ``random_samples`` others: quasi-random (scrambled Halton)
       points pushed through each parameter's biased law
       (:meth:`Parameter.unit_quantile`), truncated to the box. Without any
       usable history at least :data:`MIN_RANDOM_WITHOUT_HISTORY` are drawn.
    4. Otherwise BoTorch (qLogNoisyExpectedImprovement over the pending trials,
       with the cost constraint as an Ax outcome constraint). While fewer than
       :data:`MIN_OBSERVATIONS_FOR_MODEL` usable observations exist, ``suggest``
       returns None if trials are still running (Tune waits) and another
       quasi-random point otherwise (so a phase whose first trials all failed
       cannot stall). A modelling failure costs one quasi-random trial, logged.
    Every suggestion is attached to Ax as a RUNNING trial, so Ax treats it as
    pending until it ends.

How trials end in Ax
    Single-fidelity GP (no ``fidelity_scale``): ``COMPLETED``: completed with
    the last objective and the cost. ``EARLY_STOPPED`` (ASHA) and
    ``TIME_BUDGET``: marked early-stopped with their last objective *and their
    cost*, so the cost constraint learns which configs overrun; neither failed
    nor completed. Multi-fidelity GP: a usable trial's learning-curve points
    (:meth:`raysweep.fidelity.FidelityScale.points`) are attached as Ax trials
    of their own at the fidelity each was measured, with the value there and
    that share of the cost; the suggestion's own Ax trial (pending at full
    fidelity) carries a completed run's last point, or is marked abandoned
    when the run was cut short. ``FAILED`` (raised, NaN/inf, never reported):
    marked failed, no value. Nothing raises.
"""

from __future__ import annotations

import json
import logging
import math
from typing import Any, Mapping, Sequence

import torch
from ax import Client
from ax.adapter.torch import TorchAdapter
from ax.core.data import Data, DataRow
from ax.core.search_space import SearchSpace as AxSearchSpace
from ax.exceptions.core import DataRequiredError
from botorch.acquisition.logei import qLogNoisyExpectedImprovement
from ray.tune.search import Searcher
from scipy.stats import qmc

from raysweep import fidelity, outcomes, selection
from raysweep.fidelity import FidelityScale
from raysweep.narrowing import Box
from raysweep.records import Observation, TrialStatus
from raysweep.searchers.ax import model, multi_fidelity, subset
from raysweep.searchers.ax.coding import codings_for, generation_space
from raysweep.searchers.ax.model import TORCH_THREADS, AmortizedSurrogate, quiet, quiet_ax_logs, torch_threads
from raysweep.searchers.ax.starts import sample_in_box
from raysweep.searchers.ax.settings import float_or, validate_settings
from raysweep.searchers.ax.state import SavedState
from raysweep.searchers.ax.trials import Proposal, TrialEntry, derived_seed
from raysweep.space import RawValue, SearchSpace, config_key
from raysweep.trust_region import TrustRegion

__all__ = ["AX_OBJECTIVE", "AxSearcher"]

logger = logging.getLogger("raysweep.searchers.ax")

#: The Ax metric holding the sweep's objective (the user's metric name may hold
#: characters Ax's objective parser does not accept, such as ``/``).
AX_OBJECTIVE = "objective"

MIN_RANDOM_WITHOUT_HISTORY = 3
MIN_OBSERVATIONS_FOR_MODEL = 2


class AxSearcher(SavedState, Searcher):
    """A Ray Tune ``Searcher`` for one Bayesian phase of a raysweep sweep.

    Args:
        space: the sweep's declared search space (with this phase's ``mean`` bias).
        metric, mode: what to optimise (``mode`` is ``"max"`` or ``"min"``).
        num_trials: how many trials this phase runs; then ``suggest`` returns FINISHED.
        history: observations of earlier phases (and of an interrupted attempt of
            this one), raw values; attached to Ax as they are.
        random_samples: quasi-random starts of this phase (0 allowed with history).
        resample_every: every N-th trial re-runs a Pareto-front config (N >= 2).
        max_suggestion_cost: constraint ``cost <= X`` (seconds of ``cost_field``) for the model.
        cost_field: ``"cost_s"`` (wall seconds) or ``"gpu_s"`` (x ``gpus_per_trial``).
        box: where candidates are generated; None for the declared bounds.
        trust_region: the rule that moves ``box`` after each trial of the phase
            ends (:class:`~raysweep.trust_region.TrustRegion`, starting from
            ``box``); None keeps the box fixed.
        seed: root of every random choice of the phase.
        outcome_key: key of the phase's :class:`~raysweep.outcomes.OutcomeBook`;
            trial statuses are read there (and resample origins noted there).
        gpus_per_trial: GPUs each trial holds, for ``gpu_s``.
        phase: the phase index its trials are recorded under (default: the
            phase after the latest one in ``history``).
        warm_hyperparameters: GP hyperparameters the first fit starts its
            optimisation from (the previous phase's, as ``hyperparameters_path``
            wrote them); a fit of another structure falls back to a cold start.
        hyperparameters_path: where the GP's hyperparameters are written (JSON,
            a local path or a cloud URI) after each re-optimisation, for the next
            phase to start from.
        history_source: the run directory whose Parquet results hold every
            history observation. With it, the saved state keeps the history's
            trial ids, not the observations, and a restore reads them back from
            there; without it, the observations themselves are saved.
        fidelity_scale: with it, the multi-fidelity model
            (:mod:`~raysweep.searchers.ax.multi_fidelity`): every usable
            observation reaches the GP as its learning-curve points at the
            fidelity each was measured, and candidates are sought at full
            fidelity. None: the single-fidelity GP, every observation counted
            at its last value as if it were a full run.
    """

    def __init__(
        self,
        space: SearchSpace,
        *,
        metric: str,
        mode: str,
        num_trials: int,
        history: Sequence[Observation] = (),
        random_samples: int = 5,
        resample_every: int | None = None,
        max_suggestion_cost: float | None = None,
        cost_field: str = "cost_s",
        box: Box | None = None,
        seed: int = 0,
        outcome_key: str | None = None,
        gpus_per_trial: float = 0.0,
        phase: int | None = None,
        warm_hyperparameters: dict[str, Any] | None = None,
        hyperparameters_path: str | None = None,
        history_source: str | None = None,
        trust_region: TrustRegion | None = None,
        fidelity_scale: FidelityScale | None = None,
    ) -> None:
        validate_settings(
            space=space,
            metric=metric,
            mode=mode,
            num_trials=num_trials,
            random_samples=random_samples,
            resample_every=resample_every,
            max_suggestion_cost=max_suggestion_cost,
            cost_field=cost_field,
            box=box,
            seed=seed,
            gpus_per_trial=gpus_per_trial,
        )
        if trust_region is not None and trust_region.box != box:
            raise ValueError(f"trust_region must start from the box; it holds {trust_region.box.describe()}")
        super().__init__(metric=metric, mode=mode)
        quiet_ax_logs()
        self._space = space
        self._num_trials = int(num_trials)
        self._random_samples = int(random_samples)
        self._resample_every = resample_every
        self._max_suggestion_cost = None if max_suggestion_cost is None else float(max_suggestion_cost)
        self._cost_field = cost_field
        self._box = box
        self._region = trust_region
        self._seed = int(seed)
        self._outcome_key = outcome_key
        self._gpus_per_trial = float(gpus_per_trial)
        self._codings = codings_for(space)
        self._scale = fidelity_scale
        self._restore_failed = False  # set by a restore that did not load (SavedState.restore)

        self._history: list[Observation] = []
        # observation trial id -> its model points: (Ax trial index, raw params, value), rising fidelity
        self._points: dict[str, list[tuple[int, dict[str, RawValue], float]]] = {}
        self._events = 0  # a counter ordering suggestions and reports, so a restore replays them in order
        self._history_ax_index: dict[str, int] = {}
        self._absorbed: set[str] = set()  # staged trials of an interrupted attempt, taken in
        self._trials: dict[str, TrialEntry] = {}  # Tune trial id -> what this phase did with it
        self._suggested = 0
        self._random_drawn = 0
        # The phase this searcher's trials belong to: given, or the one after its history.
        self._phase = int(phase) if phase is not None else 1 + max((o.phase for o in history), default=0)
        self._surrogate: AmortizedSurrogate | None = None
        if warm_hyperparameters is not None:
            try:
                self._surrogate = AmortizedSurrogate.warm_started(warm_hyperparameters, self._model_config())
            except (KeyError, TypeError, ValueError, AttributeError) as exc:
                logger.warning("ignoring unreadable warm-start hyperparameters (%s); the first fit starts cold", exc)
        self._hyperparameters_path = hyperparameters_path
        self._history_source = history_source
        self._last_adapter: TorchAdapter | None = None

        self._client = self._new_client()
        self._gen_space, self._fixed, self._excluded = self._generation_space()
        with quiet():
            self._attach_history(history)
        outside = [
            o.trial_id for o in self._history if not all(p.contains(o.params[p.name]) for p in self._space)
        ]
        if outside:
            logger.warning(
                "%d history observation(s) lie outside the declared bounds (e.g. %s); they are attached with their "
                "raw values and Ax widens the model's space to cover them",
                len(outside),
                outside[0],
            )
        self._n_random = self._random_samples
        if not any(o.usable for o in self._history):
            self._n_random = max(self._random_samples, MIN_RANDOM_WITHOUT_HISTORY)
        self._note_boxes([])

    # == Ray Tune's Searcher interface =========================================
    def set_search_properties(self, metric: str | None, mode: str | None, config: dict, **spec: Any) -> bool:
        """Accept Tune's metric/mode when they agree with ours; the space is ours."""
        if metric is not None and metric != self._metric:
            return False
        if mode is not None and mode != self._mode:
            return False
        return True

    def suggest(self, trial_id: str) -> dict[str, Any] | str | None:
        """The next config (every parameter's raw value plus ``seed``), None to
        make Tune wait, or FINISHED once ``num_trials`` were suggested."""
        if trial_id in self._trials:
            return self._trials[trial_id].trial_config()
        if self._restore_failed:
            return Searcher.FINISHED  # a restart of a phase whose state did not load (see restore)
        self._absorb_staged()
        if self._suggested >= self._num_trials:
            return Searcher.FINISHED
        position = self._suggested
        with quiet(), torch_threads(TORCH_THREADS), torch.random.fork_rng(devices=[]):
            torch.random.default_generator.manual_seed(derived_seed(self._seed, position, 1))  # CPU only
            proposal = self._propose(position)
            if proposal is None:
                return None
            ax_index = self._client.attach_trial(parameters=self._to_ax(proposal.params))
        entry = TrialEntry(
            position=position,
            ax_index=ax_index,
            kind=proposal.kind,
            params=dict(proposal.params),
            seed=derived_seed(self._seed, position, 0),
            resampled_from=proposal.resampled_from,
            suggested_at=self._next_event(),
        )
        self._trials[trial_id] = entry
        self._suggested += 1
        if proposal.resampled_from is not None and self._outcome_key is not None:
            outcomes.lookup(self._outcome_key, self._metric).set_origin(trial_id, proposal.resampled_from)
        if self._box is not None:
            entry.box = self._box.to_dict()  # the box this config was generated in, for its row
            self._note_boxes([trial_id])
        return entry.trial_config()

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        """Intermediate results are not attached: a running trial stays pending
        for the model until it ends, and then counts with its last value."""

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        """Tell Ax how the trial ended (see the module docstring); never raises
        for a bad result."""
        entry = self._trials.get(trial_id)
        if entry is None:
            logger.debug("on_trial_complete for %s, which this searcher did not suggest; ignored", trial_id)
            return
        if entry.observation is not None:
            return  # already reported
        book = (
            outcomes.lookup(self._outcome_key, self._metric)
            if self._outcome_key is not None
            # unregistered: judges the result alone
            else outcomes.OutcomeBook("", self._metric, self._scale.attr if self._scale else fidelity.ITERATION)
        )
        staged = book.staged.get(trial_id)
        if staged is not None:
            # Finished by an interrupted attempt after Tune's last save: report what was staged.
            entry.observation = staged
            entry.reported_at = self._next_event()
            try:
                with quiet():
                    self._report_to_ax([(entry.ax_index, staged, None if staged.usable else "failed before the restart")])
            except Exception:
                logger.exception("could not report staged trial %s (Ax trial %d) to Ax", trial_id, entry.ax_index)
            self._follow_optimum(staged)
            return
        # The phase's scheduler read every earlier report; the final one is read here
        # too (idempotent), so an unregistered book judges the result alone.
        final = book.read(trial_id, result)
        status, reason = book.status_of(trial_id, error)
        result = result or {}
        wall_s = float_or(result.get("time_total_s"), 0.0)
        objective = book.objective(trial_id) if status.has_value else None  # its last reported value
        entry.observation = Observation(
            trial_id=trial_id,
            phase=self._phase,
            params=dict(entry.params),
            status=status,
            objective=objective,
            cost_s=wall_s,
            gpu_s=wall_s * self._gpus_per_trial,
            iterations=final.iteration,
            seed=entry.seed,
            resampled_from=entry.resampled_from,
            fidelity=book.reached(trial_id),
            curve=book.curve(trial_id) if status.has_value else (),
        )
        entry.reported_at = self._next_event()
        try:
            with quiet():
                self._report_to_ax([(entry.ax_index, entry.observation, reason)])
        except Exception:  # a bookkeeping failure must not end the sweep; the trial stays pending in Ax
            logger.exception("could not report trial %s (Ax trial %d) to Ax", trial_id, entry.ax_index)
        self._follow_optimum(entry.observation)

    # == Public extras ===========================================================
    def resampled_from(self, trial_id: str) -> str | None:
        """The trial whose config ``trial_id`` re-runs, or None when it is not a resample."""
        entry = self._trials.get(trial_id)
        return None if entry is None else entry.resampled_from

    def generated_by(self, trial_id: str) -> str | None:
        """How the trial's config was chosen: ``"random"``, ``"model"``, ``"resample"``
        or ``"random_fallback"`` (the model failed); None for an unknown trial."""
        entry = self._trials.get(trial_id)
        return None if entry is None else entry.kind

    def observations(self) -> list[Observation]:
        """The history given at construction, then this phase's finished trials."""
        finished = [e.observation for e in sorted(self._trials.values(), key=lambda e: e.position) if e.observation]
        return [*self._history, *finished]

    def best_config(self, *, min_repeats: int = 1) -> selection.ConfigSummary | None:
        """The best config of the history and this phase, repeats pooled
        (see :func:`raysweep.selection.best_config`)."""
        return selection.best_config(self.observations(), self._mode, cost_field=self._cost_field, min_repeats=min_repeats)

    @property
    def box(self) -> Box | None:
        """Where the next candidate is generated (moved by the trust region, when there is one)."""
        return self._box

    @property
    def trust_region(self) -> TrustRegion | None:
        return self._region

    @property
    def num_suggested(self) -> int:
        return self._suggested

    def ax_trial_index(self, trial_id: str) -> int | None:
        """The Ax trial index of a Tune trial or a history observation."""
        entry = self._trials.get(trial_id)
        if entry is not None:
            return entry.ax_index
        return self._history_ax_index.get(trial_id)

    def ax_trial_statuses(self) -> dict[int, str]:
        """Ax's status of every trial of its experiment, by Ax trial index."""
        return {index: trial.status.name for index, trial in self._experiment.trials.items()}

    def model_training_configs(self) -> list[dict[str, RawValue]]:
        """The rows the current BoTorch model was fit on, as raw configs.

        Mapped back through Ax's transforms and the parameter coding without
        snapping or clipping (:func:`model.training_inputs`), so an out-of-box
        (or out-of-bounds) history point shows as it was given. Empty before
        the first model-based suggestion. With the multi-fidelity model's
        fidelity coordinate, each row also holds ``"fidelity"``: the point's
        fidelity in the units of ``fidelity.attr`` (its share of a full run
        times the full run's); with ``fidelity.parameter``, that parameter's
        value is the length the point trained.
        """
        if self._last_adapter is None:
            return []
        rows = []
        for ax_row in model.training_inputs(self._last_adapter):
            row = self._from_ax(ax_row, snap=False)
            if self._share_dimension:
                row["fidelity"] = float(ax_row[multi_fidelity.FIDELITY_PARAMETER]) * self._scale.full  # type: ignore[union-attr,operator]
            rows.append(row)
        return rows

    # == Proposals ===================================================================
    def _propose(self, position: int) -> "Proposal | None":
        number = position + 1
        if self._resample_every and number % self._resample_every == 0:
            picked = self._pick_resample()
            if picked is not None:
                return picked
        if self._random_drawn < self._n_random:
            return self._random_proposal("random")
        usable = sum(1 for o in self.observations() if o.usable)
        if usable < MIN_OBSERVATIONS_FOR_MODEL:
            if self._pending_count() > 0:
                return None
            return self._random_proposal("random")
        try:
            return self._model_proposal(position)
        except DataRequiredError as exc:
            if self._pending_count() > 0:
                logger.debug("Ax needs more data before it can suggest (%s); waiting", exc)
                return None
            logger.warning("Ax cannot suggest yet (%s); drawing a quasi-random point instead", exc)
            return self._random_proposal("random_fallback")
        except Exception as exc:  # a numerical failure must not end a long sweep
            logger.warning(
                "model-based suggestion failed (%s: %s); drawing a quasi-random point instead",
                type(exc).__name__,
                exc,
                exc_info=logger.isEnabledFor(logging.DEBUG),
            )
            return self._random_proposal("random_fallback")

    def _random_proposal(self, kind: str) -> "Proposal":
        sequence = qmc.Halton(d=len(self._space), scramble=True, seed=derived_seed(self._seed, 0, 2))
        if self._random_drawn:
            sequence.fast_forward(self._random_drawn)
        point = sequence.random(1)[0]
        self._random_drawn += 1
        params = {p.name: sample_in_box(p, float(u), self._box) for p, u in zip(self._space, point)}
        return Proposal(params=params, kind=kind)

    def _pick_resample(self) -> "Proposal | None":
        """A config of the current Pareto front of (objective, cost).

        Candidates are front configs with a value for every parameter that the
        phase could generate itself: inside the box and, with a cost limit, not
        costlier on average than ``max_suggestion_cost`` (when no front config
        qualifies, the whole front does). Among them the least-measured config
        wins, counting resamples still running; ties go to the better objective.
        None when nothing was measured yet.
        """
        front = selection.pareto_front(self.observations(), self._mode, cost_field=self._cost_field)
        front = [s for s in front if all(name in s.params for name in self._space.names)]
        if not front:
            return None
        eligible = [
            s
            for s in front
            if (self._box is None or self._box.contains(s.params))
            and (self._max_suggestion_cost is None or s.cost <= self._max_suggestion_cost)
        ]
        candidates = eligible or front
        running = {}
        for entry in self._trials.values():
            if entry.observation is None:
                key = config_key(entry.params, self._space.names)
                running[key] = running.get(key, 0) + 1
        sign = 1.0 if self._mode == "max" else -1.0

        def rank(summary: selection.ConfigSummary) -> tuple[int, float]:
            measurements = summary.count + running.get(config_key(summary.params, self._space.names), 0)
            return measurements, -sign * summary.objective

        chosen = min(candidates, key=rank)
        params = {name: chosen.params[name] for name in self._space.names}
        return Proposal(params=params, kind="resample", resampled_from=chosen.first_trial_id)

    def _model_proposal(self, position: int) -> "Proposal":
        if self._surrogate is None:
            self._surrogate = AmortizedSurrogate.resumed(None, self._model_config())
        data, observed = self._model_data()
        self._surrogate.observed_rows = observed
        optimised_before = self._surrogate.rows_at_last_optimisation
        ax_params, self._last_adapter = model.candidate(
            self._experiment,
            self._surrogate,
            self._gen_space,
            self._fixed,
            self._excluded,
            sampler_seed=derived_seed(self._seed, position, 3),
            data=data,
            acquisition_class=multi_fidelity.TargetFidelityLogNEI if self._share_dimension else qLogNoisyExpectedImprovement,
        )
        if self._surrogate.rows_at_last_optimisation != optimised_before:
            self._write_hyperparameters()
        params = self._from_ax(ax_params, snap=True)
        if self._box is not None and not self._box.contains(params):
            raise RuntimeError(f"the model proposed {params}, outside the box {self._box.describe()}")
        return Proposal(params=params, kind="model")

    def _write_hyperparameters(self) -> None:
        """Leave the GP's hyperparameters for the next phase (a failure only costs it a cold fit)."""
        if self._hyperparameters_path is None or self._surrogate is None:
            return
        hyperparameters = self._surrogate.hyperparameters()
        if hyperparameters is None:
            return
        from raysweep.storage import as_path, write_bytes_atomically

        try:
            write_bytes_atomically(as_path(self._hyperparameters_path), json.dumps(hyperparameters).encode())
        except OSError as exc:
            logger.warning("could not write the GP's hyperparameters to %s: %s", self._hyperparameters_path, exc)

    def _model_data(self) -> tuple[Data | None, int]:
        """The data the GP is fit on (None: all of it) and how many model points
        (usable observations, or their learning-curve points) exist; a subset
        once they exceed :data:`subset.MAX_MODEL_ROWS`."""
        own_ids = {e.observation.trial_id for e in self._trials.values() if e.observation is not None}
        # Each observation's points last first: where the subset's rules tie (a run's points
        # share a config), the point its objective was measured at is the one kept.
        points = [
            (index, params, value, trial_id in own_ids)
            for trial_id, indices in self._points.items()
            for index, params, value in reversed(indices)
        ]
        if len(points) <= subset.MAX_MODEL_ROWS:
            return None, len(points)
        sign = 1.0 if self._mode == "max" else -1.0
        candidates = [
            subset.Candidate(
                key=index,
                unit=self._space.to_unit_vector(params),
                objective=sign * value,
                own=own,
                in_box=self._box is None or self._box.contains(params),
                order=index,
            )
            for index, params, value, own in points
        ]
        keep = subset.training_subset(candidates, subset.MAX_MODEL_ROWS)
        return self._experiment.lookup_data(trial_indices=keep), len(points)

    def _pending_count(self) -> int:
        return sum(1 for e in self._trials.values() if e.observation is None)

    # == The box ============================================================
    def _follow_optimum(self, observation: Observation, later: set[str] = frozenset()) -> None:  # type: ignore[assignment]
        """Move the box by the trust-region rule once a trial of the phase ended,
        and generate in the new box from the next suggestion on. ``later``: trials
        taken in together with this one that ended after it (not yet known then)."""
        if self._region is None:
            return
        known = [o for o in self.observations() if o.trial_id not in later]
        move = self._region.observe(observation, known, self._mode)
        if self._region.box != self._box:
            self._box = self._region.box
            self._gen_space, self._fixed, self._excluded = self._generation_space()
            logger.info("box %s after trial %s: %s", move.describe(), observation.trial_id, self._box.describe())
        self._note_boxes([])

    def _note_boxes(self, trial_ids: Sequence[str]) -> None:
        """Tell the phase's OutcomeBook the box each of ``trial_ids`` was generated
        in (its row's ``narrow_box``), the trial each resample re-runs (its row's
        ``resampled_from``; a restored searcher's pending trials end in a new
        driver's book) and where the trust region stands."""
        if self._outcome_key is None:
            return
        book = outcomes.lookup(self._outcome_key, self._metric)
        for trial_id in trial_ids:
            entry = self._trials[trial_id]
            if entry.box is not None:
                book.set_box(trial_id, entry.box)
            if entry.resampled_from is not None:
                book.set_origin(trial_id, entry.resampled_from)
        if self._region is not None:
            book.region = {"box": self._region.box.to_dict(), **self._region.moves()}

    # == Ax bookkeeping ======================================================
    @property
    def _experiment(self):  # noqa: ANN202 - Ax's Experiment
        # The Client exposes no public accessor; everything else goes through its API.
        return self._client._experiment

    def _new_client(self) -> Client:
        client = Client(random_seed=self._seed)
        with quiet():
            client.configure_experiment(
                parameters=[c.ax_config() for c in self._codings.values()], name="raysweep_phase"
            )
            if self._share_dimension:
                multi_fidelity.declare_fidelity(client._experiment)
            objective = AX_OBJECTIVE if self._mode == "max" else f"-{AX_OBJECTIVE}"
            constraints = None
            if self._max_suggestion_cost is not None:
                constraints = [f"{self._cost_field} <= {self._max_suggestion_cost!r}"]
            else:
                client.configure_tracking_metrics([self._cost_field])
            client.configure_optimization(objective=objective, outcome_constraints=constraints)
        return client

    def _generation_space(self) -> tuple[AxSearchSpace, dict[str, Any], dict[str, list[Any]]]:
        space, fixed, excluded = generation_space(self._experiment.search_space, self._codings, self._box)
        if self._share_dimension:
            fixed[multi_fidelity.FIDELITY_PARAMETER] = multi_fidelity.TARGET_SHARE  # candidates are full runs
        return space, fixed, excluded

    def _absorb_staged(self) -> None:
        """Trials of this phase that an interrupted attempt finished after Tune's
        last save of its experiment state: a searcher restored from that state
        never suggested them. They join its data with their staged values and
        count against its plan, so the phase neither loses nor repeats them."""
        if self._outcome_key is None:
            return
        staged = outcomes.lookup(self._outcome_key, self._metric).staged
        new = [
            observation
            for trial_id, observation in staged.items()
            if trial_id not in self._absorbed and trial_id not in self._trials and trial_id not in self._history_ax_index
        ]
        if not new:
            return
        self._absorbed.update(o.trial_id for o in new)
        with quiet():
            self._attach_history(new)
        self._suggested += len(new)
        for position, observation in enumerate(new):  # in the order they ended, as the box would have moved
            self._follow_optimum(observation, later={o.trial_id for o in new[position + 1 :]})

    def _attach_history(self, observations: Sequence[Observation]) -> None:
        """Attach finished trials of earlier phases (or of an interrupted attempt) to Ax, all at once.

        One Ax trial per observation Ax can hold, their data attached in one
        call and their statuses set after it (see :meth:`_report_to_ax`); an
        observation Ax cannot hold is skipped with a warning.
        """
        finished = []
        for observation in observations:
            problem = self._incompatibility(observation.params)
            if problem is not None:
                logger.warning(
                    "history observation %s cannot be attached to Ax and is skipped: %s", observation.trial_id, problem
                )
                continue
            self._history.append(observation)
            index = self._client.attach_trial(parameters=self._anchor(observation))
            self._history_ax_index[observation.trial_id] = index
            finished.append((index, observation, "failed in an earlier phase"))
        self._report_to_ax(finished)

    def _report_to_ax(self, finished: Sequence[tuple[int, Observation, str | None]]) -> None:
        """Tell Ax how trials ended: ``(Ax trial index, observation, failure reason)`` each.

        A usable observation brings its model points (:meth:`_model_points`),
        each with its value and its share of the observation's cost. A point
        at the Ax trial's own parameters (the single-fidelity model's only
        point; a completed run's last one) is data of that trial, marked as the
        trial ended; every other point is an Ax trial of its own, and a trial
        none of whose points sits at its parameters (a run cut short, seen at
        the fidelity it reached) is marked abandoned. The data go to the
        experiment in one ``attach_data`` call; statuses are then set on Ax's
        trials directly (``Client.complete_trial`` would look up the whole
        experiment's data once per trial, which grows with the history).
        """
        rows: list[DataRow] = []
        statuses: list[tuple[int, str, str | None]] = []
        for index, observation, reason in finished:
            if not observation.usable:
                statuses.append((index, "failed", reason or "no usable value"))
                continue
            own_params = self._experiment.trials[index].arm.parameters
            cost = float(getattr(observation, self._cost_field))
            indices = []
            used_own = False
            points = self._model_points(observation)
            for position, (params, share, value, cost_share) in enumerate(points):
                ax_params = self._to_ax(params, share)
                if position == len(points) - 1 and ax_params == own_params:
                    point_index, used_own = index, True
                else:
                    point_index = self._client.attach_trial(parameters=ax_params)
                    statuses.append((point_index, "completed", None))
                indices.append((point_index, params, value))
                rows += self._data_rows(point_index, {AX_OBJECTIVE: value, self._cost_field: cost * cost_share})
            self._points[observation.trial_id] = indices
            if not used_own:
                statuses.append((index, "abandoned", "measured at the fidelity it reached"))
            elif observation.status is TrialStatus.COMPLETED:
                statuses.append((index, "completed", None))
            else:
                statuses.append((index, "early_stopped", None))
        if rows:
            self._experiment.attach_data(Data(data_rows=rows))
        for index, status, reason in statuses:
            trial = self._experiment.trials[index]
            if status == "failed":
                trial.mark_failed(reason=reason)
            elif status == "abandoned":
                trial.mark_abandoned(reason=reason)
            elif status == "completed":
                trial.mark_completed()
            else:  # its data were attached above; Ax's own check would look them up again
                trial.mark_early_stopped(unsafe=True)

    def _data_rows(self, index: int, values: Mapping[str, float]) -> list[DataRow]:
        arm_name = self._experiment.trials[index].arm.name
        return [
            DataRow(
                trial_index=index,
                arm_name=arm_name,
                metric_name=name,
                metric_signature=self._experiment.metrics[name].signature,
                mean=float(value),
                se=math.nan,  # unknown: the model infers the noise
                step=math.nan,  # not one of Ax's map-data points (as Client.attach_data records it)
            )
            for name, value in values.items()
        ]

    def _model_points(self, observation: Observation) -> list[tuple[dict[str, RawValue], float | None, float, float]]:
        """A usable observation's points for the model: ``(params, share, value, cost share)``
        (:meth:`raysweep.fidelity.FidelityScale.points`); the single-fidelity model's one
        point is the observation's last value at its own parameters."""
        if self._scale is None:
            return [(dict(observation.params), None, float(observation.objective), 1.0)]  # type: ignore[arg-type]
        return self._scale.points(observation)

    def _anchor(self, observation: Observation) -> dict[str, Any]:
        """The Ax parameters of a history observation's own Ax trial: its last model point's."""
        if observation.usable:
            points = self._model_points(observation)
            if points:
                params, share, _, _ = points[-1]
                return self._to_ax(params, share)
        return self._to_ax(observation.params)

    @property
    def _share_dimension(self) -> bool:
        """Whether fidelity is a model coordinate of its own (:data:`multi_fidelity.FIDELITY_PARAMETER`)."""
        return self._scale is not None and self._scale.parameter is None

    def _model_config(self):  # noqa: ANN202 - Ax's ModelConfig, or None for Ax's default GP
        return multi_fidelity.model_config() if self._share_dimension else None

    def _next_event(self) -> int:
        self._events += 1
        return self._events

    def _incompatibility(self, params: Mapping[str, Any]) -> str | None:
        for name, coding in self._codings.items():
            if name not in params:
                return f"it has no value for {name!r}"
            problem = coding.problem_with(params[name])
            if problem is not None:
                return problem
        return None

    def _to_ax(self, params: Mapping[str, Any], share: float | None = None) -> dict[str, Any]:
        """Ax parameters of a config; with the fidelity coordinate, at ``share``
        of a full run (default: a full run, where candidates are generated)."""
        ax_params = {coding.ax_name: coding.to_ax(params[name]) for name, coding in self._codings.items()}
        if self._share_dimension:
            ax_params[multi_fidelity.FIDELITY_PARAMETER] = float(multi_fidelity.TARGET_SHARE if share is None else share)
        return ax_params

    def _from_ax(self, ax_params: Mapping[str, Any], *, snap: bool) -> dict[str, RawValue]:
        return {name: coding.from_ax(ax_params[coding.ax_name], snap=snap) for name, coding in self._codings.items()}
