"""raysweep's Ray Tune searcher on Ax's ``Client`` and BoTorch.

One :class:`AxSearcher` runs one Bayesian phase. What it guarantees, and how:

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

How parameters appear in Ax
    ``uniform`` / ``int_uniform`` are linear range parameters, ``log_uniform`` /
    ``int_log_uniform`` log-scaled ones; ``pow2`` is an ordered int choice of
    the powers of two (Ax encodes it by index, which is exactly log2 scale);
    ``choice`` is a choice (numeric values ordered, others unordered).
    ``logit_normal`` (internal scale ``log(1 - x)``) is given to Ax as
    ``<name>__one_minus`` = ``1 - x`` with log scaling: Ax's log of it *is* the
    internal scale, and the map is its own inverse (exact for x >= 0.5 by
    Sterbenz' lemma, within one ulp otherwise). The model sees every numeric
    parameter continuously relaxed in its own scale (Ax's ``Cont_X_trans``:
    ints and ordered choices become floats, rounded back on the way out), so
    candidates are always legal raw values; :meth:`Parameter.snap` checks again.
    Unordered choices are one-hot encoded. History values Ax cannot hold (a
    missing parameter, an undeclared choice, a non-integer for an int) are
    skipped with a warning; numbers outside the declared bounds are kept.

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
    ``COMPLETED``: completed with the last objective and the cost.
    ``EARLY_STOPPED`` (ASHA) and ``TIME_BUDGET``: marked early-stopped with
    their last objective *and their cost*, so the cost constraint learns which
    configs overrun; neither failed nor completed. ``FAILED`` (raised, NaN/inf,
    never reported): marked failed, no value. Nothing raises.

Speed
    Suggestions at a few hundred observations must stay well under a second on
    two CPU cores. The GP is a single-task ``SingleTaskGP`` per outcome (batched
    when objective and cost share inputs); its hyperparameters are re-optimised
    (warm-started from the previous ones) only when the data grew by
    :data:`REFIT_GROWTH` since the last fit, and otherwise the previous
    hyperparameters are reused with the new data (no optimisation at all). The
    acquisition function uses :data:`MC_SAMPLES` quasi-MC samples and is
    optimised from :data:`NUM_RESTARTS` starts picked among :data:`RAW_SAMPLES`,
    for at most :data:`ACQF_MAXITER` L-BFGS-B iterations of at most
    :data:`ACQF_MAXLS` line-search steps, without the retry on optimisation
    warnings (each acquisition evaluation costs ~8 ms of fixed overhead at any
    batch size, so the number of evaluations is what counts; at 250
    observations these settings reach an acquisition value within ~2% of Ax's
    defaults of 20 restarts / 1024 raw samples / 200 iterations at a fifth of the
    cost); Ax's in-sample "best point" (metadata we never read)
    is skipped; torch runs on one thread (two are slower at this size and
    compete with the trials). See ``benchmarks/suggestion_latency.py``.

Resume
    :meth:`save` writes one JSON document atomically: the Ax client snapshot
    (``Client.save_to_json_file``), the trial-id mapping, counters, resample
    bookkeeping, the history and the GP's hyperparameters (so the first
    suggestion after a restore starts from them instead of a cold fit). All
    randomness is derived from ``seed`` and the trial's position (seeds, Halton
    draws, acquisition samples), so counters are the whole RNG state.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import math
import os
import tempfile
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterator, Mapping, Sequence

import numpy as np
import torch
from ax import ChoiceParameterConfig, Client, RangeParameterConfig
from ax.adapter.registry import Cont_X_trans, Y_trans
from ax.adapter.torch import TorchAdapter
from ax.core.observation import ObservationFeatures
from ax.core.parameter import ChoiceParameter, RangeParameter
from ax.core.search_space import SearchSpace as AxSearchSpace
from ax.core.utils import get_pending_observation_features_based_on_trial_status
from ax.exceptions.core import DataRequiredError
from ax.generators.torch.botorch_modular.generator import BoTorchGenerator
from ax.generators.torch.botorch_modular.surrogate import Surrogate, SurrogateSpec
from ax.generators.torch.botorch_modular.utils import ModelConfig
from ax.utils.common.logger import set_stderr_log_level
from botorch.acquisition.logei import qLogNoisyExpectedImprovement
from botorch.sampling.normal import SobolQMCNormalSampler
from ray.tune.search import Searcher
from scipy.stats import qmc

from raysweep import outcomes, selection
from raysweep.narrowing import Box
from raysweep.records import Observation, TrialStatus
from raysweep.space import Parameter, RawValue, SearchSpace, config_key

if TYPE_CHECKING:  # only the runner's factory needs these
    from raysweep.planning import PhasePlan
    from raysweep.sinks.parquet import ParquetSink
    from raysweep.spec import Experiment

__all__ = ["AxSearcher", "make_ax_searcher"]

logger = logging.getLogger(__name__)

#: The Ax metric holding the sweep's objective (the user's metric name may hold
#: characters Ax's objective parser does not accept, such as ``/``).
AX_OBJECTIVE = "objective"
#: Suffix of the Ax parameter that stands for ``1 - x`` of a ``logit_normal`` one.
ONE_MINUS_SUFFIX = "__one_minus"
SEED_KEY = "seed"
COST_FIELDS = ("cost_s", "gpu_s")

MIN_RANDOM_WITHOUT_HISTORY = 3
MIN_OBSERVATIONS_FOR_MODEL = 2
#: Re-optimise GP hyperparameters when the data grew by this fraction since the
#: last optimisation (and by at least one point); otherwise reuse them.
REFIT_GROWTH = 0.1
MC_SAMPLES = 64
NUM_RESTARTS = 4
RAW_SAMPLES = 64
ACQF_MAXITER = 10
ACQF_MAXLS = 8
TORCH_THREADS = 1

STATE_FORMAT = "raysweep.AxSearcher/1"

# Libraries whose warnings are noise at a sweep's scale (optimiser restarts,
# jitter added to a Cholesky, Ax's notes on out-of-design history).
_QUIET_MODULES = r"(ax|botorch|gpytorch|linear_operator)(\.|$)"


class AxSearcher(Searcher):
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
        seed: root of every random choice of the phase.
        outcome_key: key of the phase's :class:`~raysweep.outcomes.OutcomeBook`;
            trial statuses are read there (and resample origins noted there).
        gpus_per_trial: GPUs each trial holds, for ``gpu_s``.
        phase: the phase index its trials are recorded under (default: the
            phase after the latest one in ``history``).
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
    ) -> None:
        _validate_settings(
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
        super().__init__(metric=metric, mode=mode)
        quiet_ax_logs()
        self._space = space
        self._num_trials = int(num_trials)
        self._random_samples = int(random_samples)
        self._resample_every = resample_every
        self._max_suggestion_cost = None if max_suggestion_cost is None else float(max_suggestion_cost)
        self._cost_field = cost_field
        self._box = box
        self._seed = int(seed)
        self._outcome_key = outcome_key
        self._gpus_per_trial = float(gpus_per_trial)
        self._codings = _codings_for(space)

        self._history: list[Observation] = []
        self._history_ax_index: dict[str, int] = {}
        self._absorbed: set[str] = set()  # staged trials of an interrupted attempt, taken in
        self._trials: dict[str, _TrialEntry] = {}  # Tune trial id -> what this phase did with it
        self._suggested = 0
        self._random_drawn = 0
        # The phase this searcher's trials belong to: given, or the one after its history.
        self._phase = int(phase) if phase is not None else 1 + max((o.phase for o in history), default=0)
        self._surrogate: _AmortizedSurrogate | None = None
        self._last_adapter: TorchAdapter | None = None

        self._client = self._new_client()
        self._gen_space, self._fixed, self._excluded = self._generation_space()
        with _quiet():
            for observation in history:
                self._attach_history(observation)
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
        self._absorb_staged()
        if self._suggested >= self._num_trials:
            return Searcher.FINISHED
        position = self._suggested
        with _quiet(), _torch_threads(TORCH_THREADS), torch.random.fork_rng(devices=[]):
            torch.random.default_generator.manual_seed(_derived_seed(self._seed, position, 1))  # CPU only
            proposal = self._propose(position)
            if proposal is None:
                return None
            ax_index = self._client.attach_trial(parameters=self._to_ax(proposal.params))
        entry = _TrialEntry(
            position=position,
            ax_index=ax_index,
            kind=proposal.kind,
            params=dict(proposal.params),
            seed=_derived_seed(self._seed, position, 0),
            resampled_from=proposal.resampled_from,
        )
        self._trials[trial_id] = entry
        self._suggested += 1
        if proposal.resampled_from is not None and self._outcome_key is not None:
            outcomes.lookup(self._outcome_key, self._metric).set_origin(trial_id, proposal.resampled_from)
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
            else outcomes.OutcomeBook("", self._metric)  # unregistered: judges the result alone
        )
        staged = book.staged.get(trial_id)
        if staged is not None:
            # Finished by an interrupted attempt after Tune's last save: report what was staged.
            entry.observation = staged
            try:
                with _quiet():
                    self._report_to_ax(entry.ax_index, staged, None if staged.usable else "failed before the restart")
            except Exception:
                logger.exception("could not report staged trial %s (Ax trial %d) to Ax", trial_id, entry.ax_index)
            return
        # The phase's scheduler read every earlier report; the final one is read here
        # too (idempotent), so an unregistered book judges the result alone.
        final = book.read(trial_id, result)
        status, reason = book.status_of(trial_id, error)
        result = result or {}
        wall_s = _float_or(result.get("time_total_s"), 0.0)
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
        )
        try:
            with _quiet():
                self._report_to_ax(entry.ax_index, entry.observation, reason)
        except Exception:  # a bookkeeping failure must not end the sweep; the trial stays pending in Ax
            logger.exception("could not report trial %s (Ax trial %d) to Ax", trial_id, entry.ax_index)

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
        return self._box

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

        Read from the fitted model's ``train_inputs`` and mapped back through
        Ax's transforms and the parameter coding, without snapping or clipping,
        so an out-of-box (or out-of-bounds) history point shows as it was given.
        Empty before the first model-based suggestion.
        """
        adapter = self._last_adapter
        if adapter is None:
            return []
        from ax.adapter.adapter_utils import parse_observation_features

        model = adapter.generator.surrogate.model
        inputs = model.train_inputs[0] if hasattr(model, "train_inputs") else model.models[0].train_inputs[0]
        if inputs.dim() == 3:  # a batched multi-output model repeats X per output
            inputs = inputs[0]
        features = parse_observation_features(X=inputs.detach().cpu().numpy(), param_names=list(adapter.parameters))
        for transform in reversed(list(adapter.transforms.values())):
            features = transform.untransform_observation_features(features)
        return [self._from_ax(f.parameters, snap=False) for f in features]

    # == Persistence =================================================================
    def save(self, checkpoint_path: str) -> None:
        """Write the searcher's full state to ``checkpoint_path`` (temp file, then ``os.replace``)."""
        state = self._state()
        directory = os.path.dirname(os.path.abspath(checkpoint_path))
        fd, tmp_path = tempfile.mkstemp(prefix=".axsearcher-", suffix=".tmp", dir=directory)
        try:
            with os.fdopen(fd, "w") as handle:
                json.dump(state, handle)
            os.replace(tmp_path, checkpoint_path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp_path)
            raise

    def restore(self, checkpoint_path: str) -> None:
        """Load the state :meth:`save` wrote; the space, metric and mode must match."""
        with open(checkpoint_path) as handle:
            state = json.load(handle)
        if state.get("format") != STATE_FORMAT:
            raise ValueError(f"{checkpoint_path} is not an AxSearcher checkpoint (format {state.get('format')!r})")
        saved = state["settings"]
        for key, ours in (("metric", self._metric), ("mode", self._mode)):
            if saved[key] != ours:
                raise ValueError(f"checkpoint {checkpoint_path} was saved for {key}={saved[key]!r}; this searcher has {ours!r}")
        saved_space = _space_from_json(saved["space"])
        if [_bounds_of(p) for p in saved_space] != [_bounds_of(p) for p in self._space]:
            raise ValueError(
                f"checkpoint {checkpoint_path} was saved for another search space "
                f"({[_bounds_of(p) for p in saved_space]}); this searcher has {[_bounds_of(p) for p in self._space]}"
            )
        self._load_state(state)

    def __getstate__(self) -> dict[str, Any]:
        # Ray pickles searchers (Tuner.restore); go through the same JSON state
        # so that nothing unpicklable (torch models, Ax internals) is involved.
        return {"state": self._state()}

    def __setstate__(self, pickled: dict[str, Any]) -> None:
        self._load_state(pickled["state"])

    # == Proposals ===================================================================
    def _propose(self, position: int) -> "_Proposal | None":
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

    def _random_proposal(self, kind: str) -> "_Proposal":
        sequence = qmc.Halton(d=len(self._space), scramble=True, seed=_derived_seed(self._seed, 0, 2))
        if self._random_drawn:
            sequence.fast_forward(self._random_drawn)
        point = sequence.random(1)[0]
        self._random_drawn += 1
        params = {p.name: _sample_in_box(p, float(u), self._box) for p, u in zip(self._space, point)}
        return _Proposal(params=params, kind=kind)

    def _pick_resample(self) -> "_Proposal | None":
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
        return _Proposal(params=params, kind="resample", resampled_from=chosen.first_trial_id)

    def _model_proposal(self, position: int) -> "_Proposal":
        if self._surrogate is None:
            self._surrogate = _AmortizedSurrogate.resumed(None)
        acquisition_options = {
            "sampler": SobolQMCNormalSampler(
                sample_shape=torch.Size([MC_SAMPLES]), seed=_derived_seed(self._seed, position, 3)
            )
        }
        generator = _LeanBoTorchGenerator(
            surrogate=self._surrogate,
            botorch_acqf_class=qLogNoisyExpectedImprovement,
            botorch_acqf_options=acquisition_options,
        )
        experiment = self._experiment
        adapter = TorchAdapter(
            experiment=experiment,
            generator=generator,
            search_space=experiment.search_space,  # the declared bounds: the model's space
            transforms=[*Cont_X_trans, *Y_trans],
            fit_tracking_metrics=False,
            expand_model_space=True,
        )
        self._last_adapter = adapter
        generator.excluded_columns = _one_hot_columns(adapter, self._excluded)
        generator_run = adapter.gen(
            n=1,
            search_space=self._gen_space,  # the box: only where candidates are generated
            pending_observations=get_pending_observation_features_based_on_trial_status(experiment),
            fixed_features=ObservationFeatures(parameters=dict(self._fixed)) if self._fixed else None,
            model_gen_options={
                "optimizer_kwargs": {
                    "num_restarts": NUM_RESTARTS,
                    "raw_samples": RAW_SAMPLES,
                    "retry_on_optimization_warning": False,
                    "options": {
                        "maxiter": ACQF_MAXITER,
                        "maxls": ACQF_MAXLS,
                        "init_batch_limit": RAW_SAMPLES,  # all raw samples in one batched evaluation
                    },
                }
            },
        )
        if not generator_run.arms:
            raise DataRequiredError("Ax generated no candidate")
        params = self._from_ax(generator_run.arms[0].parameters, snap=True)
        if self._box is not None and not self._box.contains(params):
            raise RuntimeError(f"the model proposed {params}, outside the box {self._box.describe()}")
        return _Proposal(params=params, kind="model")

    def _pending_count(self) -> int:
        return sum(1 for e in self._trials.values() if e.observation is None)

    # == Ax bookkeeping ======================================================
    @property
    def _experiment(self):  # noqa: ANN202 - Ax's Experiment
        # The Client exposes no public accessor; everything else goes through its API.
        return self._client._experiment

    def _new_client(self) -> Client:
        client = Client(random_seed=self._seed)
        with _quiet():
            client.configure_experiment(
                parameters=[c.ax_config() for c in self._codings.values()], name="raysweep_phase"
            )
            objective = AX_OBJECTIVE if self._mode == "max" else f"-{AX_OBJECTIVE}"
            constraints = None
            if self._max_suggestion_cost is not None:
                constraints = [f"{self._cost_field} <= {self._max_suggestion_cost!r}"]
            else:
                client.configure_tracking_metrics([self._cost_field])
            client.configure_optimization(objective=objective, outcome_constraints=constraints)
        return client

    def _generation_space(self) -> tuple[AxSearchSpace, dict[str, Any], dict[str, list[Any]]]:
        """The box in Ax's terms: the declared space with narrowed ranges and
        ordered choices, the parameters pinned to one value (fixed features),
        and the values an unordered choice may not take.

        Ax's torch adapter cannot generate from a subset of a one-hot encoded
        choice (its one-hot columns are fixed when the model is fit), so those
        exclusions are applied inside the acquisition optimisation instead:
        the excluded values' one-hot columns are held at 0
        (:class:`_LeanBoTorchGenerator`).
        """
        space = self._experiment.search_space.clone()
        fixed: dict[str, Any] = {}
        excluded: dict[str, list[Any]] = {}
        if self._box is None:
            return space, fixed, excluded
        for name, coding in self._codings.items():
            ax_parameter = space.parameters.get(coding.ax_name)
            parameter = coding.parameter
            if isinstance(ax_parameter, RangeParameter) and name in self._box.ranges:
                lo, hi = self._box.ranges[name]
                if parameter.is_int:
                    lo, hi = math.ceil(lo), math.floor(hi)
                    if lo > hi:
                        raise ValueError(f"box range of {name!r} holds no integer; got {self._box.ranges[name]!r}")
                ends = sorted((coding.to_ax(lo), coding.to_ax(hi)))
                if ends[0] >= ends[1]:
                    fixed[coding.ax_name] = ends[0]
                else:
                    ax_parameter.update_range(lower=ends[0], upper=ends[1])
            elif isinstance(ax_parameter, ChoiceParameter):
                if parameter.is_choice:
                    allowed = [coding.to_ax(v) for v in self._box.allowed_values(parameter)]
                else:  # pow2 as an ordered choice
                    lo, hi = self._box.ranges.get(name, (parameter.min, parameter.max))
                    allowed = [v for v in ax_parameter.values if lo <= v <= hi]  # type: ignore[operator]
                if not allowed:
                    raise ValueError(f"box range of {name!r} holds no power of two; got {self._box.ranges[name]!r}")
                values = list(ax_parameter.values)
                if ax_parameter.is_ordered:
                    # Ax encodes ordered choices by index and needs a contiguous run.
                    indices = [values.index(v) for v in allowed]
                    allowed = values[min(indices) : max(indices) + 1]
                else:
                    allowed = [v for v in values if v in allowed]
                if len(allowed) == 1:
                    fixed[coding.ax_name] = allowed[0]
                elif len(allowed) < len(values):
                    if ax_parameter.is_ordered:
                        ax_parameter.set_values(allowed)
                    else:
                        excluded[coding.ax_name] = [v for v in values if v not in allowed]
        return space, fixed, excluded

    def _absorb_staged(self) -> None:
        """Trials of this phase that an interrupted attempt finished after Tune's
        last save of its experiment state: a searcher restored from that state
        never suggested them. They join its data with their staged values and
        count against its plan, so the phase neither loses nor repeats them."""
        if self._outcome_key is None:
            return
        staged = outcomes.lookup(self._outcome_key, self._metric).staged
        for trial_id, observation in staged.items():
            if trial_id in self._absorbed or trial_id in self._trials or trial_id in self._history_ax_index:
                continue
            self._absorbed.add(trial_id)
            with _quiet():
                self._attach_history(observation)
            self._suggested += 1

    def _attach_history(self, observation: Observation) -> None:
        problem = self._incompatibility(observation.params)
        if problem is not None:
            logger.warning("history observation %s cannot be attached to Ax and is skipped: %s", observation.trial_id, problem)
            return
        self._history.append(observation)
        index = self._client.attach_trial(parameters=self._to_ax(observation.params))
        self._history_ax_index[observation.trial_id] = index
        self._report_to_ax(index, observation, "failed in an earlier phase")

    def _report_to_ax(self, index: int, observation: Observation, reason: str | None) -> None:
        if not observation.usable:
            self._client.mark_trial_failed(trial_index=index, failed_reason=reason or "no usable value")
            return
        data = {
            AX_OBJECTIVE: float(observation.objective),  # type: ignore[arg-type]
            self._cost_field: float(getattr(observation, self._cost_field)),
        }
        if observation.status is TrialStatus.COMPLETED:
            self._client.complete_trial(trial_index=index, raw_data=data)
        else:  # EARLY_STOPPED or TIME_BUDGET: a partial measurement with its real cost
            self._client.attach_data(trial_index=index, raw_data=data)
            self._client.mark_trial_early_stopped(trial_index=index)

    def _incompatibility(self, params: Mapping[str, Any]) -> str | None:
        for name, coding in self._codings.items():
            if name not in params:
                return f"it has no value for {name!r}"
            problem = coding.problem_with(params[name])
            if problem is not None:
                return problem
        return None

    def _to_ax(self, params: Mapping[str, Any]) -> dict[str, Any]:
        return {coding.ax_name: coding.to_ax(params[name]) for name, coding in self._codings.items()}

    def _from_ax(self, ax_params: Mapping[str, Any], *, snap: bool) -> dict[str, RawValue]:
        return {name: coding.from_ax(ax_params[coding.ax_name], snap=snap) for name, coding in self._codings.items()}

    # == State =================================================================
    def _state(self) -> dict[str, Any]:
        with tempfile.TemporaryDirectory(prefix="raysweep-ax-") as scratch:
            path = os.path.join(scratch, "client.json")
            with _quiet():
                self._client.save_to_json_file(path)
            with open(path) as handle:
                client_snapshot = json.load(handle)
        return {
            "format": STATE_FORMAT,
            "settings": {
                "space": _space_to_json(self._space),
                "metric": self._metric,
                "mode": self._mode,
                "num_trials": self._num_trials,
                "random_samples": self._random_samples,
                "resample_every": self._resample_every,
                "max_suggestion_cost": self._max_suggestion_cost,
                "cost_field": self._cost_field,
                "box": None if self._box is None else self._box.to_dict(),
                "seed": self._seed,
                "outcome_key": self._outcome_key,
                "gpus_per_trial": self._gpus_per_trial,
            },
            "ax_client": client_snapshot,
            "history": [_observation_to_json(o) for o in self._history],
            "history_ax_index": self._history_ax_index,
            "absorbed": sorted(self._absorbed),
            "trials": {trial_id: entry.to_json() for trial_id, entry in self._trials.items()},
            "suggested": self._suggested,
            "random_drawn": self._random_drawn,
            "n_random": self._n_random,
            "phase": self._phase,
            "surrogate": None if self._surrogate is None else self._surrogate.hyperparameters(),
        }

    def _load_state(self, state: dict[str, Any]) -> None:
        settings = state["settings"]
        space = _space_from_json(settings["space"])
        Searcher.__init__(self, metric=settings["metric"], mode=settings["mode"])
        quiet_ax_logs()
        self._space = space
        self._num_trials = settings["num_trials"]
        self._random_samples = settings["random_samples"]
        self._resample_every = settings["resample_every"]
        self._max_suggestion_cost = settings["max_suggestion_cost"]
        self._cost_field = settings["cost_field"]
        self._box = None if settings["box"] is None else Box.from_dict(settings["box"])
        self._seed = settings["seed"]
        self._outcome_key = settings["outcome_key"]
        self._gpus_per_trial = settings["gpus_per_trial"]
        self._codings = _codings_for(space)
        self._history = [_observation_from_json(o, space) for o in state["history"]]
        self._history_ax_index = {k: int(v) for k, v in state["history_ax_index"].items()}
        self._absorbed = set(state.get("absorbed", ()))
        self._trials = {k: _TrialEntry.from_json(v, space) for k, v in state["trials"].items()}
        self._suggested = int(state["suggested"])
        self._random_drawn = int(state["random_drawn"])
        self._n_random = int(state["n_random"])
        self._phase = int(state["phase"])
        self._surrogate = _AmortizedSurrogate.resumed(state["surrogate"]) if state.get("surrogate") else None
        self._last_adapter = None
        with tempfile.TemporaryDirectory(prefix="raysweep-ax-") as scratch:
            path = os.path.join(scratch, "client.json")
            with open(path, "w") as handle:
                json.dump(state["ax_client"], handle)
            with _quiet():
                self._client = Client.load_from_json_file(path)
        self._gen_space, self._fixed, self._excluded = self._generation_space()


# == Pieces ==================================================================


@dataclass
class _Proposal:
    params: dict[str, RawValue]
    kind: str  # random | model | resample | random_fallback
    resampled_from: str | None = None


@dataclass
class _TrialEntry:
    """What the searcher did with one Tune trial."""

    position: int  # 0-based order of suggestion within the phase
    ax_index: int
    kind: str
    params: dict[str, RawValue]
    seed: int
    resampled_from: str | None = None
    observation: Observation | None = None  # set when the trial ended

    def trial_config(self) -> dict[str, Any]:
        return {**self.params, SEED_KEY: self.seed}

    def to_json(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["observation"] = None if self.observation is None else _observation_to_json(self.observation)
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any], space: SearchSpace) -> "_TrialEntry":
        data = dict(data)
        observation = data.pop("observation")
        entry = cls(**data)
        entry.params = _restore_params(entry.params, space)
        entry.observation = None if observation is None else _observation_from_json(observation, space)
        return entry


@dataclass(frozen=True)
class _Coding:
    """How one raysweep parameter is declared to Ax, and how values cross over."""

    parameter: Parameter
    ax_name: str

    @property
    def one_minus(self) -> bool:
        return self.parameter.distribution == "logit_normal"

    def ax_config(self) -> RangeParameterConfig | ChoiceParameterConfig:
        p = self.parameter
        if p.is_choice:
            values = list(p.values)
            kind = _choice_type(p)
            ordered = kind in ("int", "float") or len(values) <= 2
            if kind in ("int", "float"):
                values = sorted(values)  # type: ignore[type-var]
            return ChoiceParameterConfig(
                name=self.ax_name, values=values, parameter_type=kind, is_ordered=ordered  # type: ignore[arg-type]
            )
        assert p.min is not None and p.max is not None
        if p.distribution == "pow2":
            lo, hi = p.pow2_exponents
            return ChoiceParameterConfig(
                name=self.ax_name, values=[2**k for k in range(lo, hi + 1)], parameter_type="int", is_ordered=True
            )
        if self.one_minus:
            return RangeParameterConfig(
                name=self.ax_name, bounds=(1.0 - p.max, 1.0 - p.min), parameter_type="float", scaling="log"
            )
        if p.is_int:
            return RangeParameterConfig(
                name=self.ax_name,
                bounds=(int(math.ceil(p.min)), int(math.floor(p.max))),
                parameter_type="int",
                scaling="log" if p.is_log else "linear",
            )
        return RangeParameterConfig(
            name=self.ax_name, bounds=(float(p.min), float(p.max)), parameter_type="float", scaling="log" if p.is_log else "linear"
        )

    def problem_with(self, raw_value: Any) -> str | None:
        """Why ``raw_value`` cannot be attached to Ax, or None."""
        p = self.parameter
        if p.is_choice:
            return None if raw_value in p.values else f"{p.name}={raw_value!r} is not one of the declared values {list(p.values)!r}"
        if isinstance(raw_value, bool) or not isinstance(raw_value, (int, float, np.integer, np.floating)):
            return f"{p.name}={raw_value!r} is not a number"
        value = float(raw_value)
        if not math.isfinite(value):
            return f"{p.name}={raw_value!r} is not finite"
        if p.is_int and value != round(value):
            return f"{p.name}={raw_value!r} is not an integer"
        if p.distribution == "pow2" and (value <= 0 or 2 ** round(math.log2(value)) != value):
            return f"{p.name}={raw_value!r} is not a power of two"
        if p.is_log and value <= 0:
            return f"{p.name}={raw_value!r} must be > 0 on a log scale"
        if self.one_minus and value >= 1:
            return f"{p.name}={raw_value!r} must be < 1 (logit_normal)"
        return None

    def to_ax(self, raw_value: Any) -> Any:
        p = self.parameter
        if p.is_choice:
            kind = _choice_type(p)
            if kind == "float":
                return float(raw_value)
            if kind == "int":
                return int(raw_value)
            return raw_value
        if self.one_minus:
            return 1.0 - float(raw_value)
        if p.is_int:
            return int(round(float(raw_value)))
        return float(raw_value)

    def from_ax(self, ax_value: Any, *, snap: bool) -> RawValue:
        p = self.parameter
        if p.is_choice:
            return next((value for value in p.values if value == ax_value), ax_value)
        raw = 1.0 - float(ax_value) if self.one_minus else ax_value
        if snap:
            return p.snap(float(raw))
        if p.is_int and float(raw) == round(float(raw)):
            return int(round(float(raw)))
        return float(raw)


class _AmortizedSurrogate(Surrogate):
    """Ax's ``Surrogate``, re-optimising GP hyperparameters only when the data
    grew by :data:`REFIT_GROWTH` since the last optimisation.

    In between, a new model is built on all current data and the previous
    hyperparameters are loaded into it (``refit=False``): conditioning on the
    new points without optimising. Each re-optimisation starts from the
    previous hyperparameters (Ax's ``warm_start_refit``), which converges in a
    fraction of the iterations of a cold fit. Ax's transforms (``UnitX``,
    ``StandardizeY``) run before the model, so the BoTorch model has no input or
    outcome transform whose statistics a loaded state could stale.

    ``resume_state`` / ``rows_at_last_optimisation`` carry the hyperparameters
    across a save and restore.
    """

    resume_state: dict[str, torch.Tensor] | None = None
    rows_at_last_optimisation: int | None = None

    def fit(self, datasets, search_space_digest, candidate_metadata=None, state_dict=None, refit=True, **kwargs):  # noqa: ANN001, ANN201
        rows = int(datasets[0].X.shape[0]) if datasets else 0
        previous = self._model.state_dict() if self._model is not None else self.resume_state
        last = self.rows_at_last_optimisation
        if previous is not None and last is not None and rows < last + max(1, math.ceil(REFIT_GROWTH * last)):
            try:
                super().fit(datasets, search_space_digest, candidate_metadata, previous, False, **kwargs)
                return
            except (RuntimeError, KeyError):  # the model's structure changed (e.g. a metric appeared)
                previous = None
        try:
            super().fit(datasets, search_space_digest, candidate_metadata, previous, True, **kwargs)
        except (RuntimeError, KeyError):
            if previous is None:
                raise
            super().fit(datasets, search_space_digest, candidate_metadata, None, True, **kwargs)
        self.rows_at_last_optimisation = rows

    def hyperparameters(self) -> dict[str, Any] | None:
        """The current model's state as JSON-friendly data, or None before the first fit."""
        state = self._model.state_dict() if self._model is not None else self.resume_state
        if state is None:
            return None
        return {
            "rows": self.rows_at_last_optimisation,
            "tensors": {k: {"dtype": str(v.dtype).removeprefix("torch."), "value": v.tolist()} for k, v in state.items()},
        }

    @classmethod
    def resumed(cls, saved: dict[str, Any] | None) -> "_AmortizedSurrogate":
        surrogate = cls(surrogate_spec=SurrogateSpec(model_configs=[ModelConfig()]))
        if saved is not None:
            surrogate.resume_state = {
                k: torch.tensor(v["value"], dtype=getattr(torch, v["dtype"])) for k, v in saved["tensors"].items()
            }
            surrogate.rows_at_last_optimisation = saved["rows"]
        return surrogate


class _LeanBoTorchGenerator(BoTorchGenerator):
    """Ax's modular BoTorch generator, with two changes.

    * No in-sample best point after every candidate (GeneratorRun metadata
      raysweep never reads; about 0.15 s at 250 observations).
    * ``excluded_columns``: one-hot columns (transformed feature names) of
      choice values the box excludes. They are held at 0 during acquisition
      optimisation (extra fixed features), and set to -1 before Ax rounds a
      candidate back to one-hot, so that rounding (an argmax with random ties)
      can only pick an allowed value.
    """

    excluded_columns: tuple[str, ...] = ()

    def gen(self, n, search_space_digest, torch_opt_config):  # noqa: ANN001, ANN201
        names = list(search_space_digest.feature_names)
        indices = [names.index(name) for name in self.excluded_columns if name in names]
        if indices:
            fixed = dict(torch_opt_config.fixed_features or {})
            fixed.update({index: 0.0 for index in indices})
            rounding = torch_opt_config.rounding_func

            def round_to_allowed(X: torch.Tensor) -> torch.Tensor:
                X = X.clone()
                X[..., indices] = -1.0
                return rounding(X) if rounding is not None else X

            torch_opt_config = dataclasses.replace(torch_opt_config, fixed_features=fixed, rounding_func=round_to_allowed)
        return super().gen(n, search_space_digest, torch_opt_config)

    def best_point(self, *args: Any, **kwargs: Any) -> None:
        raise NotImplementedError


def _one_hot_columns(adapter: TorchAdapter, excluded: Mapping[str, Sequence[Any]]) -> tuple[str, ...]:
    """The one-hot columns (transformed feature names) of excluded choice values."""
    one_hot = adapter.transforms.get("OneHot")
    if not excluded or one_hot is None:
        return ()
    columns = []
    for ax_name, values in excluded.items():
        encoded_values = one_hot.encoded_values[ax_name]
        columns += [one_hot.encoded_parameters[ax_name][encoded_values.index(value)] for value in values]
    return tuple(columns)


# == Helpers ===================================================================


def quiet_ax_logs(level: int = logging.WARNING) -> None:
    """Show only Ax's warnings and errors (Ax logs every trial at INFO)."""
    set_stderr_log_level(level)


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", module=_QUIET_MODULES)
        yield


@contextlib.contextmanager
def _torch_threads(count: int) -> Iterator[None]:
    previous = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _derived_seed(seed: int, position: int, stream: int) -> int:
    """A 31-bit seed for ``stream`` (trial seed, torch, Halton, MC samples) of one position."""
    return int(np.random.SeedSequence([seed & 0xFFFFFFFF, position, stream]).generate_state(1)[0] >> 1)


def _sample_in_box(parameter: Parameter, unit_draw: float, box: Box | None) -> RawValue:
    """Map a uniform draw to a raw value of the parameter's biased law, truncated to the box."""
    if parameter.is_choice:
        allowed = box.allowed_values(parameter) if box is not None else tuple(parameter.values)
        return allowed[min(int(unit_draw * len(allowed)), len(allowed) - 1)]
    lo_unit, hi_unit = box.unit_interval(parameter) if box is not None else (0.0, 1.0)
    lo_mass, hi_mass = _unit_cdf(parameter, lo_unit), _unit_cdf(parameter, hi_unit)
    unit = float(parameter.unit_quantile(np.array([lo_mass + unit_draw * (hi_mass - lo_mass)]))[0])
    raw = parameter.from_unit(min(hi_unit, max(lo_unit, unit)))
    if box is not None and parameter.name in box.ranges:
        lo, hi = box.ranges[parameter.name]
        if not parameter.is_int:
            raw = min(hi, max(lo, float(raw)))  # type: ignore[arg-type]
    return raw


def _unit_cdf(parameter: Parameter, unit_value: float) -> float:
    """The inverse of :meth:`Parameter.unit_quantile` at one point (bisection)."""
    if unit_value <= 0.0:
        return 0.0
    if unit_value >= 1.0:
        return 1.0
    lo, hi = 0.0, 1.0
    for _ in range(60):
        mid = (lo + hi) / 2
        if parameter.unit_quantile(np.array([mid]))[0] < unit_value:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def _choice_type(parameter: Parameter) -> str:
    values = parameter.values
    if all(isinstance(v, bool) for v in values):
        return "bool"
    if all(isinstance(v, str) for v in values):
        return "str"
    if all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        return "int"
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        return "float"
    raise ValueError(f"choice parameter {parameter.name!r} mixes value types, which Ax cannot hold: {list(values)!r}")


def _codings_for(space: SearchSpace) -> dict[str, _Coding]:
    codings = {}
    names = set(space.names)
    for parameter in space:
        ax_name = parameter.name + ONE_MINUS_SUFFIX if parameter.distribution == "logit_normal" else parameter.name
        if ax_name != parameter.name and ax_name in names:
            raise ValueError(f"parameter name {ax_name!r} is reserved for the Ax coding of {parameter.name!r} (logit_normal)")
        if parameter.distribution == "logit_normal" and (parameter.max is None or parameter.max >= 1):
            raise ValueError(f"logit_normal parameter {parameter.name!r} needs max < 1; got {parameter.max!r}")
        if parameter.is_choice:
            _choice_type(parameter)
        codings[parameter.name] = _Coding(parameter, ax_name)
    return codings


def _validate_settings(
    *,
    space: SearchSpace,
    metric: str,
    mode: str,
    num_trials: int,
    random_samples: int,
    resample_every: int | None,
    max_suggestion_cost: float | None,
    cost_field: str,
    box: Box | None,
    seed: int,
    gpus_per_trial: float,
) -> None:
    if not isinstance(space, SearchSpace) or len(space) == 0:
        raise ValueError(f"space must be a non-empty raysweep SearchSpace; got {space!r}")
    if not isinstance(metric, str) or not metric:
        raise ValueError(f"metric must be a non-empty string; got {metric!r}")
    if mode not in ("max", "min"):
        raise ValueError(f"mode must be 'max' or 'min'; got {mode!r}")
    if not _is_int(num_trials) or num_trials < 0:
        raise ValueError(f"num_trials must be an int >= 0; got {num_trials!r}")
    if not _is_int(random_samples) or random_samples < 0:
        raise ValueError(f"random_samples must be an int >= 0; got {random_samples!r}")
    if resample_every is not None and (not _is_int(resample_every) or resample_every < 2):
        raise ValueError(f"resample_every must be None or an int >= 2; got {resample_every!r}")
    if max_suggestion_cost is not None and (
        isinstance(max_suggestion_cost, bool) or not isinstance(max_suggestion_cost, (int, float))
        or not math.isfinite(max_suggestion_cost) or max_suggestion_cost <= 0
    ):
        raise ValueError(f"max_suggestion_cost must be None or a positive number of seconds; got {max_suggestion_cost!r}")
    if cost_field not in COST_FIELDS:
        raise ValueError(f"cost_field must be one of {COST_FIELDS}; got {cost_field!r}")
    if isinstance(gpus_per_trial, bool) or not isinstance(gpus_per_trial, (int, float)) or not gpus_per_trial >= 0:
        raise ValueError(f"gpus_per_trial must be a number >= 0; got {gpus_per_trial!r}")
    if cost_field == "gpu_s" and not gpus_per_trial > 0:
        raise ValueError(f"cost_field='gpu_s' needs gpus_per_trial > 0; got {gpus_per_trial!r}")
    if not _is_int(seed):
        raise ValueError(f"seed must be an int; got {seed!r}")
    if box is not None:
        if not isinstance(box, Box):
            raise ValueError(f"box must be a raysweep Box or None; got {box!r}")
        box.check_within(space)
    if SEED_KEY in space.names:
        raise ValueError(f"{SEED_KEY!r} is the trial seed raysweep adds to every config; rename that parameter")


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _float_or(value: Any, default: Any) -> Any:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return default
    return number if math.isfinite(number) else default


def _bounds_of(parameter: Parameter) -> tuple:
    return (parameter.name, parameter.distribution, parameter.min, parameter.max, tuple(parameter.values))


def _space_to_json(space: SearchSpace) -> list[dict[str, Any]]:
    return [{**dataclasses.asdict(p), "values": list(p.values)} for p in space]


def _space_from_json(data: list[dict[str, Any]]) -> SearchSpace:
    return SearchSpace(tuple(Parameter(**{**item, "values": tuple(item["values"])}) for item in data))


def _restore_params(params: Mapping[str, Any], space: SearchSpace) -> dict[str, RawValue]:
    """Numeric values back to their declared kind (JSON may write 3e8 as a float)."""
    restored: dict[str, RawValue] = {}
    for name, value in params.items():
        if name in space.names and not space[name].is_choice and isinstance(value, (int, float)):
            parameter = space[name]
            restored[name] = int(value) if parameter.is_int and float(value).is_integer() else value
        else:
            restored[name] = value
    return restored


def _observation_to_json(observation: Observation) -> dict[str, Any]:
    data = dataclasses.asdict(observation)
    data["status"] = observation.status.value
    return data


def _observation_from_json(data: dict[str, Any], space: SearchSpace) -> Observation:
    data = dict(data)
    data["status"] = TrialStatus(data["status"])
    data["params"] = _restore_params(data["params"], space)
    return Observation(**data)


# == The runner's factory ==========================================================


def make_ax_searcher(
    experiment: "Experiment", phase_plan: "PhasePlan", sink: "ParquetSink", outcome_key: str
) -> tuple[AxSearcher, dict[str, Any]]:
    """The searcher of a Bayesian phase, and the extra columns its trial rows carry.

    History: the finished trials of every earlier committed phase, the most
    recent ``max_observations_to_load`` of them, or none with ``warm_start:
    false`` (the multi-stage guide's cold start per stage). The box (when the
    phase narrows) is computed from *all* earlier observations, so the top
    configs of phase 1 still count in phase 3. Trials of this phase already
    staged by an interrupted attempt count against its plan and join the
    history whatever ``warm_start`` says: they are this phase's own data.
    The cost is wall seconds (``cost_s``), the unit of ``max_suggestion_cost``.
    """
    from raysweep.narrowing import narrow

    spec = phase_plan.spec
    earlier = list(range(1, phase_plan.index))
    every_earlier = sink.read_observations(earlier) if earlier else []
    limit = spec.max_observations_to_load
    history = every_earlier if limit is None else every_earlier[-limit:]
    if not spec.warm_start:
        history = []
    own = sink.read_observations([phase_plan.index], include_staged=True)
    box = None
    if spec.narrow is not None:
        box = narrow(
            phase_plan.space,
            every_earlier,
            experiment.mode,
            top_fraction=spec.narrow.top_fraction,
            min_top=spec.narrow.min_top,
            std_multiplier=spec.narrow.std_multiplier,
            min_width=spec.narrow.min_width,
        )
    already = len(sink.staged_trial_ids(phase_plan.index))
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
        box=box,
        # A restarted attempt draws new random points, not the first attempt's again.
        seed=phase_plan.seed + 7919 * already,
        outcome_key=outcome_key,
        gpus_per_trial=experiment.resources.gpu,
        phase=phase_plan.index,
    )
    return searcher, ({"box": box.to_dict()} if box is not None else {})
