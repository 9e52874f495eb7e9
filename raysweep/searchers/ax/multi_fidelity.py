"""The multi-fidelity model of a Bayesian phase: a GP over (parameters, fidelity).

A run cut short (phase 1's time budget, ASHA) measured its config at a lower
fidelity; a multi-fidelity GP learns how values grow with training and ranks
configs at the fidelity of a full run. Fidelity enters the model in one of two
ways (:class:`raysweep.fidelity.FidelityScale`):

* as a coordinate of its own, :data:`FIDELITY_PARAMETER`, the share of a full
  run reached (an Ax range parameter marked ``is_fidelity`` with target value 1).
  Ax then fits BoTorch's ``SingleTaskMultiFidelityGP``; :class:`IterationFidelityGP`
  makes the share an iteration fidelity under BoTorch's linear truncated
  fidelity kernel (Wu et al. 2019, "Practical Multi-fidelity Bayesian
  Optimization for Hyperparameter Tuning", UAI): a value at share s is the
  full-fidelity value plus a bias that vanishes at s = 1. Candidates are
  generated with the share fixed at 1 and the acquisition function
  (:class:`TargetFidelityLogNEI`) compares them with what every observed config
  is predicted to reach at full fidelity, pending trials counted at full fidelity.
* through a searched parameter that is the training length
  (``fidelity.parameter``): a cut run is a point at the length it really
  trained, in the ordinary single-task GP; nothing here is needed for it.

Every observation reaches the model as its learning-curve points
(:attr:`raysweep.records.Observation.curve`), each an Ax trial of its own.
"""

from __future__ import annotations

from typing import Any

import torch
from ax.core.parameter import ParameterType, RangeParameter
from ax.generators.torch.botorch_modular.utils import ModelConfig, fit_botorch_model
from botorch.acquisition.input_constructors import acqf_input_constructor, construct_inputs_qLogNEI
from botorch.acquisition.logei import qLogNoisyExpectedImprovement
from botorch.acquisition.utils import project_to_target_fidelity
from botorch.models.gp_regression_fidelity import SingleTaskMultiFidelityGP
from botorch.fit import fit_gpytorch_mll

__all__ = ["FIDELITY_PARAMETER", "IterationFidelityGP", "TargetFidelityLogNEI", "declare_fidelity", "model_config"]

#: The Ax parameter holding an observation's share of a full run (1 = full).
FIDELITY_PARAMETER = "fidelity__share"
#: The share candidates are generated at: a full run.
TARGET_SHARE = 1.0
#: L-BFGS-B iterations of a hyperparameter fit. BoTorch's default runs to
#: convergence; the cost outcome's GP alone took ~800 iterations (24 CPU-s at
#: 250 runs' curve points, ``benchmarks/results/latency_multi_fidelity.md``);
#: capped at 150 its marginal log likelihood was within 2% and the objective's
#: fit unchanged.
MAX_FIT_ITERATIONS = 200


def declare_fidelity(experiment: Any) -> None:
    """Add :data:`FIDELITY_PARAMETER` to an Ax experiment's search space: a float
    in [0, 1], marked as a fidelity with target value :data:`TARGET_SHARE`.

    Shares above 1 (a run longer than the declared full run) are kept: Ax widens
    the model's space to hold them.
    """
    experiment.search_space.add_parameter(
        RangeParameter(
            name=FIDELITY_PARAMETER,
            parameter_type=ParameterType.FLOAT,
            lower=0.0,
            upper=1.0,
            is_fidelity=True,
            target_value=TARGET_SHARE,
        )
    )


class IterationFidelityGP(SingleTaskMultiFidelityGP):
    """BoTorch's ``SingleTaskMultiFidelityGP`` with the share of a full run as its
    training-iteration fidelity, under the linear truncated fidelity kernel:
    ``k0(x, x') + (1 - s)(1 - s')(1 + s s')^p k1(x, x')`` with Matern kernels
    ``k0``, ``k1`` over the parameters, so what is learnt at full fidelity is
    ``k0``'s part and a cut-short run adds a bias that shrinks as it trains.

    Ax would pass the fidelity as a data (downsampling) fidelity. Chosen by
    measurement over the exponential-decay kernel (Swersky et al. 2014's
    freeze-thaw kernel, BoTorch's other option): predicting full-fidelity
    values of Hartmann-6 from runs cut at 1/9 and 1/3, Spearman's rank
    correlation 0.59 against 0.41 (0.66 against 0.54 with ten full runs
    added; 5 seeds, 38 cut runs), and on a smooth learning curve the
    exponential-decay fit flattened the parameters' effect.
    """

    @classmethod
    def construct_inputs(cls, training_data, fidelity_features: list[int]) -> dict[str, Any]:  # noqa: ANN001
        inputs = super().construct_inputs(training_data=training_data, fidelity_features=fidelity_features)
        inputs.pop("data_fidelities", None)
        inputs["iteration_fidelity"] = fidelity_features[0]
        inputs["linear_truncated"] = True
        return inputs


@fit_botorch_model.register(IterationFidelityGP)
def _fit_iteration_fidelity_gp(model: IterationFidelityGP, mll_class: type, mll_options: dict[str, Any] | None = None) -> None:
    # Ax's fit of a GPyTorch model (BoTorch's fit_gpytorch_mll, its retries included),
    # with the hyperparameter optimisation capped at MAX_FIT_ITERATIONS.
    mll = mll_class(likelihood=model.likelihood, model=model, **(mll_options or {}))
    fit_gpytorch_mll(mll, optimizer_kwargs={"options": {"maxiter": MAX_FIT_ITERATIONS}})


def model_config() -> ModelConfig:
    """Ax's model configuration of the multi-fidelity GP."""
    return ModelConfig(botorch_model_class=IterationFidelityGP)


class TargetFidelityLogNEI(qLogNoisyExpectedImprovement):
    """qLogNoisyExpectedImprovement (BoTorch) of a candidate at full fidelity over
    the observed configs *at full fidelity*.

    The baseline (the configs already measured, at whatever fidelity) is
    projected to the target fidelity before the incumbent is inferred, so a
    config seen only cut short competes with what it is predicted to reach, not
    with its cut-short value. Built by Ax through the input constructor below.
    """


@acqf_input_constructor(TargetFidelityLogNEI)
def _construct_target_fidelity_log_nei(
    model: Any,
    training_data: Any,
    objective: Any = None,
    posterior_transform: Any = None,
    X_pending: torch.Tensor | None = None,
    sampler: Any = None,
    X_baseline: torch.Tensor | None = None,
    constraints: Any = None,
    target_fidelities: dict[int, float] | None = None,
) -> dict[str, Any]:
    # BoTorch passes only the keywords a constructor names (and refuses unknown ones).
    if target_fidelities and X_baseline is not None:
        projected = project_to_target_fidelity(X=X_baseline, target_fidelities=target_fidelities, d=X_baseline.shape[-1])
        X_baseline = torch.unique(projected, dim=-2)
    return construct_inputs_qLogNEI(
        model=model,
        training_data=training_data,
        objective=objective,
        posterior_transform=posterior_transform,
        X_pending=X_pending,
        sampler=sampler,
        X_baseline=X_baseline,
        constraints=constraints,
    )
