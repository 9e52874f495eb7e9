"""The model of a Bayesian phase: BoTorch's GP fit through Ax, and the acquisition.

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
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import warnings
from typing import Any, Iterator, Mapping, Sequence

import torch
from ax.adapter.registry import Cont_X_trans, Y_trans
from ax.adapter.torch import TorchAdapter
from ax.core.data import Data
from ax.core.observation import ObservationFeatures
from ax.core.search_space import SearchSpace as AxSearchSpace
from ax.core.utils import get_pending_observation_features_based_on_trial_status
from ax.exceptions.core import DataRequiredError
from ax.generators.torch.botorch_modular.generator import BoTorchGenerator
from ax.generators.torch.botorch_modular.surrogate import Surrogate, SurrogateSpec
from ax.generators.torch.botorch_modular.utils import ModelConfig
from ax.utils.common.logger import set_stderr_log_level
from botorch.acquisition.logei import qLogNoisyExpectedImprovement
from botorch.sampling.normal import SobolQMCNormalSampler

#: Re-optimise GP hyperparameters when the data grew by this fraction since the
#: last optimisation (and by at least one point); otherwise reuse them.
REFIT_GROWTH = 0.1
MC_SAMPLES = 64
NUM_RESTARTS = 4
RAW_SAMPLES = 64
ACQF_MAXITER = 10
ACQF_MAXLS = 8
TORCH_THREADS = 1

# Libraries whose warnings are noise at a sweep's scale (optimiser restarts,
# jitter added to a Cholesky, Ax's notes on out-of-design history).
_QUIET_MODULES = r"(ax|botorch|gpytorch|linear_operator)(\.|$)"


def candidate(
    experiment: Any,
    surrogate: "AmortizedSurrogate",
    generation_space: AxSearchSpace,
    fixed: Mapping[str, Any],
    excluded: Mapping[str, Sequence[Any]],
    sampler_seed: int,
    data: Data | None = None,
    acquisition_class: type = qLogNoisyExpectedImprovement,
) -> tuple[dict[str, Any], TorchAdapter]:
    """One candidate from the GP fit on ``experiment``'s data, and the adapter that made it.

    The model's space is the experiment's declared search space (widened by
    Ax to cover out-of-bounds history); ``generation_space``, ``fixed`` (Ax
    parameter -> value) and ``excluded`` (unordered choice -> values it may not
    take) only restrict where the acquisition function
    (qLogNoisyExpectedImprovement, pending trials included) is optimised.
    ``data`` is what the GP is fit on (default: all of the experiment's data;
    :mod:`~raysweep.searchers.ax.subset` picks a subset past a size).
    ``acquisition_class``: BoTorch's qLogNEI, or the multi-fidelity model's
    :class:`~raysweep.searchers.ax.multi_fidelity.TargetFidelityLogNEI`. Returns
    the candidate's Ax parameters. Raises DataRequiredError when Ax cannot
    generate.
    """
    acquisition_options = {
        "sampler": SobolQMCNormalSampler(sample_shape=torch.Size([MC_SAMPLES]), seed=sampler_seed)
    }
    generator = LeanBoTorchGenerator(
        surrogate=surrogate,
        botorch_acqf_class=acquisition_class,
        botorch_acqf_options=acquisition_options,
    )
    adapter = TorchAdapter(
        experiment=experiment,
        generator=generator,
        search_space=experiment.search_space,  # the declared bounds: the model's space
        transforms=[*Cont_X_trans, *Y_trans],
        fit_tracking_metrics=False,
        expand_model_space=True,
        data=data,
    )
    generator.excluded_columns = one_hot_columns(adapter, excluded)
    generator_run = adapter.gen(
        n=1,
        search_space=generation_space,  # the box: only where candidates are generated
        pending_observations=get_pending_observation_features_based_on_trial_status(experiment),
        fixed_features=ObservationFeatures(parameters=dict(fixed)) if fixed else None,
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
    return dict(generator_run.arms[0].parameters), adapter


def training_inputs(adapter: TorchAdapter) -> list[dict[str, Any]]:
    """The rows the adapter's fitted BoTorch model was trained on, as Ax parameters.

    Read from the model's ``train_inputs`` and mapped back through Ax's
    transforms, so an out-of-box (or out-of-bounds) point shows as it was given.
    """
    from ax.adapter.adapter_utils import parse_observation_features

    model = adapter.generator.surrogate.model
    inputs = model.train_inputs[0] if hasattr(model, "train_inputs") else model.models[0].train_inputs[0]
    if inputs.dim() == 3:  # a batched multi-output model repeats X per output
        inputs = inputs[0]
    features = parse_observation_features(X=inputs.detach().cpu().numpy(), param_names=list(adapter.parameters))
    for transform in reversed(list(adapter.transforms.values())):
        features = transform.untransform_observation_features(features)
    return [dict(f.parameters) for f in features]


class AmortizedSurrogate(Surrogate):
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
    across a save and restore, and from one phase to the next.
    ``observed_rows``, when set, is the number of observations the data stand
    for (more than the rows when the GP is fit on a subset); the refit rule
    counts it, so the hyperparameters still follow a growing history.
    """

    resume_state: dict[str, torch.Tensor] | None = None
    rows_at_last_optimisation: int | None = None
    observed_rows: int | None = None

    def fit(self, datasets, search_space_digest, candidate_metadata=None, state_dict=None, refit=True, **kwargs):  # noqa: ANN001, ANN201
        rows = self.observed_rows if self.observed_rows is not None else (int(datasets[0].X.shape[0]) if datasets else 0)
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
    def warm_started(cls, saved: dict[str, Any], model_config: ModelConfig | None = None) -> "AmortizedSurrogate":
        """A surrogate whose first fit optimises from ``saved`` (another phase's
        :meth:`hyperparameters`) rather than from Ax's defaults."""
        surrogate = cls.resumed(saved, model_config)
        surrogate.rows_at_last_optimisation = None  # optimise on the first fit, starting from saved
        return surrogate

    @classmethod
    def resumed(cls, saved: dict[str, Any] | None, model_config: ModelConfig | None = None) -> "AmortizedSurrogate":
        """A surrogate of ``model_config`` (default: Ax's choice, a ``SingleTaskGP``)
        holding ``saved`` hyperparameters (:meth:`hyperparameters`), or none."""
        surrogate = cls(surrogate_spec=SurrogateSpec(model_configs=[model_config or ModelConfig()]))
        if saved is not None:
            surrogate.resume_state = {
                k: torch.tensor(v["value"], dtype=getattr(torch, v["dtype"])) for k, v in saved["tensors"].items()
            }
            surrogate.rows_at_last_optimisation = saved["rows"]
        return surrogate


class LeanBoTorchGenerator(BoTorchGenerator):
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


def one_hot_columns(adapter: TorchAdapter, excluded: Mapping[str, Sequence[Any]]) -> tuple[str, ...]:
    """The one-hot columns (transformed feature names) of excluded choice values."""
    one_hot = adapter.transforms.get("OneHot")
    if not excluded or one_hot is None:
        return ()
    columns = []
    for ax_name, values in excluded.items():
        encoded_values = one_hot.encoded_values[ax_name]
        columns += [one_hot.encoded_parameters[ax_name][encoded_values.index(value)] for value in values]
    return tuple(columns)


def quiet_ax_logs(level: int = logging.WARNING) -> None:
    """Show only Ax's warnings and errors (Ax logs every trial at INFO)."""
    set_stderr_log_level(level)


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", module=_QUIET_MODULES)
        yield


@contextlib.contextmanager
def torch_threads(count: int) -> Iterator[None]:
    previous = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)
