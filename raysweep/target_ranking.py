"""Ranking at the target fidelity: every observation's value as a full run would measure it.

A run cut short (by the time budget, by ASHA) reports a value at a lower
fidelity than a full run; ranked by that raw value, a config that learns slowly
but ends best looks bad and drops out of the top configs a narrowed box is
built around. :func:`target_values` gives each usable observation its value
at the target fidelity instead (what a full run reaches):

* an observation at full fidelity (:meth:`FidelityScale.is_full`) keeps its
  measured objective;
* any other gets the posterior mean, at its own config run in full, of a GP
  fit on the learning-curve points (:meth:`FidelityScale.points`) of every
  usable observation.

The GP is BoTorch's, fit directly (no Ax), in float64 with a standardised
outcome:

* dimension form (fidelity as the share of a full run): a
  ``SingleTaskMultiFidelityGP`` over ``(unit vector of the params, share)`` whose
  share is an *iteration fidelity* under BoTorch's linear truncated fidelity
  kernel (Wu, Toscano-Palmerin, Frazier and Wilson, "Practical multi-fidelity
  Bayesian optimization for hyperparameter tuning", UAI 2019), the same model
  as the Ax searcher's (:class:`raysweep.searchers.ax.multi_fidelity.IterationFidelityGP`);
  predicted at share 1;
* parameter form (a searched parameter is the training length): a
  ``SingleTaskGP`` over the unit vector of the params, where a cut run's length
  is the length it trained; predicted at the observation's own params.

To stay cheap the fit sees at most :data:`MAX_POINTS` points: every full-run
point first, then the last point of each cut run, then the other curve points
(a seeded random choice within the group that does not fit whole). Whenever
the fit or the prediction fails, the raw values stand (a warning says so): a
ranking is never worse than the raw one for want of a model.

torch and BoTorch are imported inside :func:`target_values`, only when some
observation needs a prediction, so ``status`` and ``--help`` never load them.
"""

from __future__ import annotations

import logging
import math
import warnings
from typing import Any, Mapping, Sequence

import numpy as np

from raysweep.fidelity import FidelityScale
from raysweep.records import Observation
from raysweep.space import SearchSpace

__all__ = ["MAX_POINTS", "target_values"]

logger = logging.getLogger("raysweep.target_ranking")

#: Most points the GP is fit on (an exact GP costs O(n^3); 300 fit in about a second on one core).
MAX_POINTS = 300
#: Fewest points worth a fit: below this a GP says nothing the raw values do not.
MIN_POINTS = 3
#: Fit attempts (BoTorch restarts from sampled hyperparameters after a failed one).
FIT_ATTEMPTS = 2
#: L-BFGS-B iterations of a fit. Left to scipy's default a fit on 300 points ran on for
#: 15 CPU-s; 100 iterations cost 1-2 CPU-s, and a ranking needs no more precise hyperparameters.
FIT_MAXITER = 100
#: Seed of the subsample and of the fit's restarts, so one history always gives one ranking.
SUBSAMPLE_SEED = 0

# The three groups of points, kept in this order when the fit cannot see them all.
_FULL, _CUT_LAST, _CURVE = 0, 1, 2


def target_values(
    observations: Sequence[Observation],
    space: SearchSpace,
    mode: str,
    scale: FidelityScale,
    *,
    max_points: int = MAX_POINTS,
) -> dict[str, float]:
    """Each usable observation's value at the target (full) fidelity, by trial id.

    Args:
        observations: finished trials of any status; failed ones and those
            without a finite objective are left out of the result.
        space: the search space; params are encoded with
            :meth:`SearchSpace.to_unit_vector` (a choice as its index spread on
            [0, 1]); a point whose params do not encode (a parameter missing,
            a value not declared) is left out of the fit.
        mode: ``"max"`` or ``"min"``; values are in the objective's own units
            either way, to be ranked in that mode.
        scale: how fidelity places an observation (:func:`raysweep.fidelity.scale_for`).
        max_points: most points the GP is fit on (>= :data:`MIN_POINTS`).

    Returns:
        ``{trial_id: value}`` for every usable observation: the measured
        objective for full-fidelity ones, the GP's posterior mean at full
        fidelity for the others (their objective when it cannot be predicted).
        Training inputs are ``n x (d + 1)`` (dimension form: d unit coordinates
        and the share) or ``n x d`` (parameter form), ``n <= max_points``.

    Raises:
        ValueError: for a ``mode`` other than max / min or ``max_points`` below
        :data:`MIN_POINTS`. A failed fit never raises: it logs a warning and
        returns the raw values.
    """
    if mode not in ("max", "min"):
        raise ValueError(f"mode must be 'max' or 'min'; got {mode!r}")
    if isinstance(max_points, bool) or not isinstance(max_points, int) or max_points < MIN_POINTS:
        raise ValueError(f"max_points must be an int >= {MIN_POINTS}; got {max_points!r}")
    usable = [o for o in observations if o.usable]
    values = {o.trial_id: float(o.objective) for o in usable}  # type: ignore[arg-type]
    queries: dict[str, np.ndarray] = {}
    for observation in usable:
        if not scale.is_full(observation):
            row = _encode(space, observation.params, 1.0 if scale.parameter is None else None)
            if row is not None:
                queries[observation.trial_id] = row
    if not queries:
        return values  # every value is already a full-run measurement
    inputs, outputs = _training_points(usable, space, scale, max_points)
    if len(outputs) < MIN_POINTS:
        return values
    try:
        means = _fit_and_predict(inputs, outputs, np.stack(list(queries.values())), dimension_form=scale.parameter is None)
    except Exception as exc:  # noqa: BLE001 - any failure of the model leaves the raw ranking, never a crashed phase
        logger.warning(
            "ranking at the target fidelity: the GP fit on %d points failed (%s: %s); ranking by the raw values",
            len(outputs), type(exc).__name__, exc,
        )
        return values
    for trial_id, mean in zip(queries, means):
        values[trial_id] = float(mean)
    return values


def _training_points(
    usable: Sequence[Observation], space: SearchSpace, scale: FidelityScale, max_points: int
) -> tuple[np.ndarray, np.ndarray]:
    """The fit's inputs (``n x (d + 1)`` or ``n x d``) and outputs (``n``), at most ``max_points`` rows."""
    groups: dict[int, list[tuple[np.ndarray, float]]] = {_FULL: [], _CUT_LAST: [], _CURVE: []}
    for observation in usable:
        full = scale.is_full(observation)
        points = scale.points(observation)
        for position, (params, share, value, _cost) in enumerate(points):
            if not math.isfinite(value):
                continue
            # a point past a full run's fidelity was measured at (at least) full fidelity
            row = _encode(space, params, None if share is None else min(1.0, max(0.0, share)))
            if row is None:
                continue
            last = position == len(points) - 1
            group = _CURVE if not last else (_FULL if full else _CUT_LAST)
            groups[group].append((row, float(value)))
    chosen: list[tuple[np.ndarray, float]] = []
    rng = np.random.default_rng(SUBSAMPLE_SEED)
    for group in (_FULL, _CUT_LAST, _CURVE):
        room = max_points - len(chosen)
        members = groups[group]
        if len(members) <= room:
            chosen += members
        else:
            picks = sorted(rng.choice(len(members), size=room, replace=False))
            chosen += [members[i] for i in picks]
            break
    if not chosen:
        return np.empty((0, 0)), np.empty(0)
    return np.stack([row for row, _ in chosen]), np.array([value for _, value in chosen])


def _encode(space: SearchSpace, params: Mapping[str, Any], share: float | None) -> np.ndarray | None:
    """The unit vector of ``params`` (with ``share`` appended when given), or None when it does not encode."""
    try:
        unit = space.to_unit_vector(params)  # type: ignore[arg-type]
    except (KeyError, ValueError, TypeError, OverflowError):
        return None  # a parameter an earlier phase did not record, or a value no longer declared
    if share is not None:
        unit = np.append(unit, share)
    return unit if np.all(np.isfinite(unit)) else None


def _fit_and_predict(inputs: np.ndarray, outputs: np.ndarray, queries: np.ndarray, *, dimension_form: bool) -> np.ndarray:
    """Fit the GP on ``inputs`` (``n x k``) / ``outputs`` (``n``); its posterior mean at ``queries`` (``q x k``)."""
    import torch
    from botorch.fit import fit_gpytorch_mll
    from botorch.models import SingleTaskGP, SingleTaskMultiFidelityGP
    from botorch.models.transforms.outcome import Standardize
    from botorch.utils.sampling import manual_seed
    from gpytorch.mlls import ExactMarginalLogLikelihood

    train_x = torch.tensor(inputs, dtype=torch.float64)
    train_y = torch.tensor(outputs, dtype=torch.float64).unsqueeze(-1)
    threads = torch.get_num_threads()
    # one thread: at a few hundred points two are slower, and the trials need the cores
    torch.set_num_threads(1)
    try:
        # seeded (a retried fit samples its start): a resumed phase rebuilds the same box
        with warnings.catch_warnings(), manual_seed(SUBSAMPLE_SEED):
            warnings.filterwarnings("ignore", module=r"(botorch|gpytorch|linear_operator)(\.|$)")
            if dimension_form:
                model = SingleTaskMultiFidelityGP(
                    train_x, train_y, iteration_fidelity=train_x.shape[-1] - 1, linear_truncated=True,
                    outcome_transform=Standardize(m=1),
                )
            else:
                model = SingleTaskGP(train_x, train_y, outcome_transform=Standardize(m=1))
            fit_gpytorch_mll(
                ExactMarginalLogLikelihood(model.likelihood, model),
                max_attempts=FIT_ATTEMPTS,
                optimizer_kwargs={"options": {"maxiter": FIT_MAXITER}},
            )
            model.eval()
            with torch.no_grad():
                mean = model.posterior(torch.tensor(queries, dtype=torch.float64)).mean
    finally:
        torch.set_num_threads(threads)
    means = mean.squeeze(-1).numpy()
    if not np.all(np.isfinite(means)):
        raise ValueError("the posterior mean is not finite at every config")
    return means
