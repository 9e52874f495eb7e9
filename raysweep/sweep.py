"""Running a sweep: phases in order on Ray Tune, results into the run directory."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from raysweep import outcomes, planning, storage
from raysweep.errors import UserError
from raysweep.interrupts import SignalGuard
from raysweep.resuming import one_line, plan_changes, reconcile_phases, unrestorable_reason
from raysweep.planning import PhasePlan
from raysweep.records import TrialStatus
from raysweep.sinks.parquet import ParquetSink
from raysweep.space import config_key
from raysweep.spec import Experiment
from raysweep.state import PhaseState, RunDirLock, SweepState, read_state, write_state
from raysweep.trainables import SEED_KEY

TUNE_DIR = "tune"


@dataclass(frozen=True)
class Best:
    phase: int
    phase_name: str
    trial_id: str
    objective: float  # the mean over the config's pooled measurements
    params: dict[str, Any]
    measurements: int = 1  # how many trials measured this config (resampling re-runs winners)


@dataclass(frozen=True)
class SweepResult:
    run_dir: Path
    state: SweepState
    total_trials: int
    best: Best | None


def run_dir_of(experiment: Experiment) -> storage.StoragePath:
    return storage.run_dir(experiment.storage_path)  # an absolute Path, or a RemotePath for a cloud URI


def new_state(experiment: Experiment, plans: list[PhasePlan]) -> SweepState:
    return SweepState(
        sweep=experiment.name,
        metric=experiment.metric,
        mode=experiment.mode,
        parameters=declared_parameters(experiment),
        phases=[PhaseState(index=p.index, name=p.name, searcher=p.spec.searcher) for p in plans],
        fidelity_attr=experiment.fidelity.attr,
    )


def declared_parameters(experiment: Experiment) -> dict[str, Any]:
    return {name: spec.model_dump(mode="json", exclude_none=True) for name, spec in experiment.parameters.items()}


def check_compatible(state: SweepState, experiment: Experiment, run_dir: Path) -> None:
    """A run directory belongs to one sweep: same metric, mode and declared space."""
    if state.metric != experiment.metric or state.mode != experiment.mode:
        raise UserError(
            f"{run_dir} holds a sweep on {state.mode} {state.metric!r}, but the experiment now says "
            f"{experiment.mode} {experiment.metric!r}; use another storage directory for a new sweep"
        )
    declared = declared_parameters(experiment)
    if declared != state.parameters:
        changed = sorted(set(declared) ^ set(state.parameters) | {k for k in declared if k in state.parameters and declared[k] != state.parameters[k]})
        raise UserError(
            f"parameters {', '.join(changed)} differ from those {run_dir} was started with; the search space is "
            "declared once per sweep (observations keep their raw values across phases), so start a new storage "
            "directory for a different space"
        )
    for phase_state, spec in zip(state.phases, experiment.phases):
        if phase_state.status == "done" and phase_state.name != spec.name:
            raise UserError(
                f"phase {phase_state.index} is done as {phase_state.name!r} in {run_dir}, but the experiment now names it {spec.name!r}"
            )
    if len(experiment.phases) < sum(1 for p in state.phases if p.status != "pending"):
        raise UserError(f"{run_dir} has more started phases than the experiment declares")


def select_phases(state: SweepState, plans: list[PhasePlan], phase: int | None, resume: bool, command_hint: str) -> list[PhasePlan]:
    """The phases this invocation runs, or a UserError saying what to run instead."""
    if phase is not None:
        if not 1 <= phase <= len(plans):
            raise UserError(f"--phase must be between 1 and {len(plans)}; got {phase}")
        for earlier in state.phases[: phase - 1]:
            if earlier.status != "done":
                raise UserError(
                    f"phase {phase} ({plans[phase - 1].name}) needs the results of phase {earlier.index} ({earlier.name}), "
                    f"which is not done; run first: {command_hint} --phase {earlier.index}"
                )
        target = state.phases[phase - 1]
        if target.status == "done":
            raise UserError(
                f"phase {phase} ({target.name}) is already done with {target.trials_done} trials; "
                "its results stay as they are (use another storage directory to run it again)"
            )
        if target.status == "running" and not resume:
            raise UserError(f"phase {phase} ({target.name}) was interrupted; continue it with: {command_hint} --phase {phase} --resume")
        return [plans[phase - 1]]
    todo = []
    for phase_state, phase_plan in zip(state.phases, plans):
        if phase_state.status == "done":
            continue
        if phase_state.status == "running" and not resume:
            raise UserError(
                f"phase {phase_state.index} ({phase_state.name}) was interrupted; continue it with: {command_hint} --resume"
            )
        todo.append(phase_plan)
    return todo


def run(
    experiment: Experiment,
    *,
    phase: int | None = None,
    resume: bool = False,
    address: str | None = None,
    num_cpus: int | None = None,
    verbose: bool = False,
    command_hint: str = "python -m raysweep run EXPERIMENT.yaml",
    stream: TextIO | None = None,
) -> SweepResult:
    out = stream or sys.stdout
    plans = planning.plan(experiment)
    run_dir = run_dir_of(experiment)
    earlier = read_state(run_dir)
    if earlier is None:
        # A new run directory: refuse a phase out of order before Ray starts or anything is written.
        select_phases(new_state(experiment, plans), plans, phase, resume, command_hint)
    may_run = earlier is None or phase is not None or len(earlier.phases) < len(plans)
    if may_run or any(p.status != "done" for p in earlier.phases):
        # Before anything is written: a trial no node could hold would leave the phase waiting forever.
        from raysweep import resources

        connect(address=address, num_cpus=num_cpus, verbose=verbose)
        resources.check_feasible(experiment.resources, resources.node_capacities())
    with RunDirLock(run_dir):
        state = read_state(run_dir)
        notes: list[str] = []
        if state is None:
            state = new_state(experiment, plans)
        else:
            check_compatible(state, experiment, run_dir)
            notes = reconcile_phases(state, plans, ParquetSink(run_dir, experiment.space))
        todo = select_phases(state, plans, phase, resume, command_hint)
        for note in notes:
            print(note, file=out, flush=True)
        if todo:
            connect(address=address, num_cpus=num_cpus, verbose=verbose)
        continue_with = f"{command_hint}{f' --phase {phase}' if phase is not None else ''} --resume"
        with SignalGuard(continue_with) as guard:
            for phase_plan in todo:
                run_phase(experiment, phase_plan, state, run_dir, resume=resume, verbose=verbose, stream=out, guard=guard)
        return summarize(experiment, state, run_dir)


def connect(*, address: str | None, num_cpus: int | None, verbose: bool) -> None:
    """Start a local Ray, or join the cluster at ``address`` / ``RAY_ADDRESS``."""
    import ray

    # raysweep judges each report itself (raysweep.metrics): a trial that never reports
    # the metric, or reports it only every N iterations, must not end the sweep in
    # Tune's strict metric check. Tune reads this in the driver, at every result.
    os.environ["TUNE_DISABLE_STRICT_METRIC_CHECKING"] = "1"
    if ray.is_initialized():
        return
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    # Tune waits this long for a stopped trial's thread before reusing its actor, and
    # fails the next trial if it is still alive then. raysweep reuses only actors whose
    # thread is parked in a report or done (silent trials and commands lose their actor,
    # see raysweep.scheduling), so the wait is short in practice; a long limit keeps a
    # slow exit from costing the next trial.
    os.environ.setdefault("TUNE_FUNCTION_THREAD_TIMEOUT_S", "600")
    # raysweep writes its own records (Parquet, W&B); Tune's per-trial JSON/CSV/TensorBoard
    # loggers would only add files and event-loop work per result.
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
    # Trainables named as module:function resolve from the working directory.
    cwd = os.getcwd()
    python_path = os.environ.get("PYTHONPATH", "")
    if cwd not in python_path.split(os.pathsep):
        os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [cwd, python_path]))
    address = address or os.environ.get("RAY_ADDRESS")
    kwargs: dict[str, Any] = {
        "log_to_driver": verbose,
        "include_dashboard": False if address is None else None,
        # Ray's own start-up lines ("Started a local Ray instance", the token notice) would come
        # before raysweep's one line on stderr; only Ray's errors without --verbose.
        "logging_level": logging.INFO if verbose else logging.ERROR,
    }
    if address is None:
        kwargs["num_cpus"] = num_cpus or os.cpu_count() or 1
    else:
        kwargs["address"] = address
    kwargs = {k: v for k, v in kwargs.items() if v is not None}
    if address is not None:
        _check_reachable(address)
    try:
        ray.init(**kwargs)
    except ConnectionError as exc:
        if address is None:
            raise
        raise UserError(
            f"could not join the Ray cluster at address={address!r}: {exc}. Ray clusters started with token "
            "authentication (the default for Ray 2.60) need the cluster's token on this machine: set "
            "RAY_AUTH_MODE=token and RAY_AUTH_TOKEN_PATH to the token file (or RAY_AUTH_TOKEN), or submit with "
            "`ray job submit`, which runs the driver on the head node"
        ) from exc
    if not verbose:
        # Failed trials are recorded with their error; Tune's tracebacks would bury the progress lines.
        # This also mutes Tune's "insufficient resources" warning: the live view says instead what
        # pending trials wait for, with the cluster's free resources (raysweep.progress).
        logging.getLogger("ray.tune").setLevel(logging.CRITICAL)


def _check_reachable(address: str, timeout_s: float = 5.0) -> None:
    """Refuse a ``host:port`` Ray address nothing listens on, before ``ray.init`` waits minutes for it.

    Other forms (``auto``, ``ray://...``, ``http://...``) are left to Ray.
    """
    import socket

    host, _, port = address.rpartition(":")
    if not host or "/" in address or not port.isdigit():
        return
    try:
        with socket.create_connection((host, int(port)), timeout=timeout_s):
            return
    except OSError as exc:
        raise UserError(
            f"--address: no Ray cluster answers at {address} ({exc.strerror or exc}); start one with `ray start --head` "
            "or give the head node's address (RAY_ADDRESS)"
        ) from None


def run_phase(
    experiment: Experiment,
    phase_plan: PhasePlan,
    state: SweepState,
    run_dir: Path,
    *,
    resume: bool,
    verbose: bool,
    stream: TextIO,
    guard: SignalGuard | None = None,
) -> None:
    """Run one phase on Ray Tune and commit it; ``state.json`` says ``running`` until it is committed.

    The phase's record is raysweep's own: the rows its trials staged in Parquet.
    Whatever Tune's ``fit`` does after its loop (building its result grid can
    raise for a trial restored from an old save and never started), the phase
    is committed when its rows cover the plan. An interrupted phase continues
    from Tune's saved experiment state when that state is whole and the plan
    unchanged; otherwise a fresh Tune run executes only the trials still
    missing (a Bayesian phase's searcher rebuilt from the Parquet rows).

    Raises:
        Interrupted: SIGINT or SIGTERM came (``guard``); the phase stays ``running``.
        storage.WriteFailed: the run directory refused a write; the phase stays ``running``.
    """
    from raysweep.sinks import wandb as wandb_sink

    guard = guard or SignalGuard()  # not entered: signals keep their usual effect
    index = phase_plan.index
    spec = phase_plan.spec
    sink = ParquetSink(run_dir, experiment.space)
    phase_state = state.phase(index)
    was_running = phase_state.status == "running"
    changes = plan_changes(phase_state, phase_plan) if was_running else []
    earlier_tune_path = phase_state.tune_path
    tune_path = run_dir / TUNE_DIR / f"phase{index}-{spec.name}"
    outcome_key = f"{run_dir}#{index}"
    book = outcomes.register(outcomes.OutcomeBook(outcome_key, experiment.metric, experiment.fidelity.attr))

    if was_running and sink.has_committed(index):
        # The previous driver decided the phase was complete and was cut off while committing it.
        print(f"== phase {index} ({spec.name}): completing its commit, which was cut short", file=stream, flush=True)
        _commit_phase(experiment, phase_state, state, run_dir, sink, guard)
        return

    if spec.searcher == "ax":
        _import_ax(verbose)
    finished = sink.recorded_trial_ids(index) if was_running else set()
    book.staged = {o.trial_id: o for o in sink.read_observations([index], include_staged=True)} if finished else {}
    searcher, extra = build_searcher(experiment, phase_plan, sink, outcome_key, skip_done=finished)

    phase_state.name = spec.name
    phase_state.searcher = spec.searcher
    phase_state.status = "running"
    phase_state.trials_planned = phase_plan.trials
    phase_state.settings = spec.fields_set_in_file()
    phase_state.plan = phase_plan.describe()
    phase_state.box = extra.get("box")
    phase_state.narrow_note = extra.get("narrow_note")
    phase_state.model_note = extra.get("model_note")
    phase_state.tune_path = str(tune_path)
    phase_state.started_at = phase_state.started_at or time.time()
    write_state(run_dir, state)
    print(f"== {phase_plan.describe()}", file=stream, flush=True)
    for note in (phase_state.narrow_note, phase_state.model_note):
        if note:
            print(f"   {note}", file=stream, flush=True)

    restore = resume and was_running and not changes
    if restore:
        reason = unrestorable_reason(tune_path)
        if reason is not None:
            restore = False
            if storage.as_path(tune_path).exists():
                print(
                    f"note: Tune's saved state of phase {index} cannot be restored ({reason}); the "
                    f"{phase_plan.trials - len(finished)} trials still missing run in a fresh Tune run",
                    file=stream, flush=True,
                )
    if earlier_tune_path and earlier_tune_path != str(tune_path) and storage.as_path(earlier_tune_path).exists():
        storage.rmtree(storage.as_path(earlier_tune_path))  # the phase was renamed while interrupted

    attempt = _PhaseAttempt(experiment, phase_plan, run_dir, tune_path, outcome_key, extra, verbose, stream)
    if phase_plan.trials - len(finished) > 0:
        failure = attempt.fit(searcher, restore=restore, already_done=len(finished), guard=guard)
        if restore and len(recorded := sink.recorded_trial_ids(index)) < phase_plan.trials:
            # Tune's saved state looked whole but did not restore: the staged rows are the record. Tune
            # itself may end such a run without an error: when the searcher's state does not load, it
            # logs the failure and restarts the experiment, which then runs only the trials it restored.
            finished = recorded
            why = one_line(failure) if failure is not None else f"it ended with {len(finished)} of {phase_plan.trials} trials"
            print(
                f"note: continuing phase {index} from Tune's saved state failed ({why}); the "
                f"{phase_plan.trials - len(finished)} trials still missing run in a fresh Tune run",
                file=stream, flush=True,
            )
            book.staged = {o.trial_id: o for o in sink.read_observations([index], include_staged=True)}
            searcher, _ = build_searcher(experiment, phase_plan, sink, outcome_key, skip_done=finished)
            failure = attempt.fit(searcher, restore=False, already_done=len(finished), guard=guard)
        if failure is not None and len(sink.recorded_trial_ids(index)) < phase_plan.trials:
            raise failure
    if book.region is not None:  # a narrowed Bayesian phase's box moved with its trials
        phase_state.final_box = book.region["box"]
        phase_state.box_moves = {"growths": book.region["growths"], "shrinks": book.region["shrinks"]}
    del book
    _commit_phase(experiment, phase_state, state, run_dir, sink, guard)
    wandb_sink.log_phase_summary(experiment, phase_state=phase_state, trials=sink.read_trials([index]), run_dir=run_dir)


class _PhaseAttempt:
    """One Tune run of a phase: a fresh ``Tuner`` or one restored from Tune's saved state."""

    def __init__(
        self,
        experiment: Experiment,
        phase_plan: PhasePlan,
        run_dir: Path,
        tune_path: Path,
        outcome_key: str,
        extra: dict[str, Any],
        verbose: bool,
        stream: TextIO,
    ) -> None:
        self.experiment = experiment
        self.phase_plan = phase_plan
        self.run_dir = run_dir
        self.tune_path = tune_path
        self.outcome_key = outcome_key
        self.extra = extra
        self.verbose = verbose
        self.stream = stream

    def fit(self, searcher: Any, *, restore: bool, already_done: int, guard: SignalGuard) -> BaseException | None:
        """Run Tune; return the exception ``fit`` ended with, if any.

        Raises :class:`~raysweep.interrupts.Interrupted` after Tune stopped on a
        signal and :class:`~raysweep.storage.WriteFailed` when a write of the
        run directory failed; any other exception is returned, for the caller
        to judge against the staged rows.
        """
        tuner = self._tuner(searcher, restore=restore, already_done=already_done)
        failure: BaseException | None = None
        with guard.tune_loop(), _tune_output(self.verbose):
            try:
                tuner.fit()
            except Exception as exc:  # judged below, against raysweep's own record
                failure = exc
        guard.check()
        if failure is not None:
            written = storage.write_failure_in(failure)
            if written is not None:
                raise written from None
        return failure

    def _tuner(self, searcher: Any, *, restore: bool, already_done: int) -> Any:
        """A ``tune.Tuner``: restored from ``tune_path``, or new for the trials still missing."""
        from ray import tune

        from raysweep.progress import PhaseProgress, TuneTrialPrinterOff
        from raysweep.recording import TrialRecorder
        from raysweep.scheduling import PhaseScheduler
        from raysweep.sinks import wandb as wandb_sink
        from raysweep.trainables import build_trainable

        experiment, phase_plan = self.experiment, self.phase_plan
        spec, index = phase_plan.spec, phase_plan.index
        trainable = build_trainable(experiment)
        if restore:
            # Tune restores the scheduler, searcher and callbacks it saved with the run.
            return tune.Tuner.restore(
                str(self.tune_path), trainable=trainable, resume_unfinished=True, resume_errored=False, restart_errored=False
            )
        if storage.as_path(self.tune_path).exists():
            storage.rmtree(storage.as_path(self.tune_path))  # what an earlier attempt left cannot be continued
        scheduler = PhaseScheduler(
            outcome_key=self.outcome_key,
            metric=experiment.metric,
            mode=experiment.mode,
            max_trial_time=spec.max_trial_time,
            early_stopping=spec.early_stopping,
            external_process=experiment.command is not None,
        )
        callbacks = [
            TrialRecorder(
                run_dir=str(self.run_dir),
                space=experiment.space,
                sweep=experiment.name,
                phase=index,
                phase_name=spec.name,
                metric=experiment.metric,
                mode=experiment.mode,
                outcome_key=self.outcome_key,
                gpus_per_trial=experiment.resources.gpu,
                extra=_record_columns(self.extra),
                fidelity_attr=experiment.fidelity.attr,
            ),
            PhaseProgress(
                phase_name=spec.name,
                planned=phase_plan.trials,
                metric=experiment.metric,
                mode=experiment.mode,
                outcome_key=self.outcome_key,
                cost_limit_s=spec.max_trial_time,
                gpus_per_trial=experiment.resources.gpu,
                already_done=already_done,
                stream=self.stream,
            ),
        ]
        # After the recorder: W&B reads each trial's final status from the record it adds.
        callbacks += wandb_sink.trial_callbacks(
            experiment, phase=index, phase_name=spec.name, run_dir=self.run_dir, outcome_key=self.outcome_key
        )
        if not self.verbose:  # Tune's own per-trial printer leaks one line even at verbosity 0
            callbacks.append(TuneTrialPrinterOff())
        remaining = phase_plan.trials - already_done
        max_concurrent = spec.max_concurrent or experiment.max_concurrent or 0
        return tune.Tuner(
            trainable,
            param_space=param_space(phase_plan),
            tune_config=tune.TuneConfig(
                metric=experiment.metric,
                mode=experiment.mode,
                search_alg=searcher,
                scheduler=scheduler,
                num_samples=max(remaining, 0) if spec.searcher != "ax" else -1,
                max_concurrent_trials=max_concurrent or None,
                reuse_actors=True,
            ),
            run_config=tune.RunConfig(
                name=storage.as_path(self.tune_path).name,
                storage_path=str(self.run_dir / TUNE_DIR),
                callbacks=callbacks,
                verbose=1 if self.verbose else 0,
                failure_config=tune.FailureConfig(
                    max_failures=spec.max_failures if spec.max_failures is not None else experiment.max_failures
                ),
                checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
            ),
        )


def _commit_phase(
    experiment: Experiment, phase_state: PhaseState, state: SweepState, run_dir: Path, sink: ParquetSink, guard: SignalGuard
) -> None:
    """Merge the phase's staged rows and mark it done; a signal waits until both are written."""
    index = phase_state.index
    with guard.deferred():
        rows = sink.commit_phase(index)
        frame = sink.read_trials([index])
        phase_state.status = "done"
        phase_state.trials_done = rows
        phase_state.status_counts = {k: int(v) for k, v in frame["status"].value_counts().items()} if rows else {}
        phase_state.best = _best_row(frame, experiment.mode)
        phase_state.cost_s = float(frame["cost_s"].sum()) if rows else 0.0
        phase_state.gpu_s = float(frame["gpu_s"].sum()) if rows else 0.0
        phase_state.ended_at = time.time()
        write_state(run_dir, state)


def _import_ax(verbose: bool) -> None:
    """Import Ax; without ``--verbose`` its INFO lines stay off the console.

    Ax logs at INFO through one stream handler on its root logger, starting
    during its own import, so the import runs with INFO records disabled and
    the handler is then raised to WARNING.
    """
    if verbose:
        import ax  # noqa: F401

        return
    previous = logging.root.manager.disable
    logging.disable(logging.INFO)
    try:
        from ax.utils.common import logger as ax_logger
    finally:
        logging.disable(previous)
    ax_logger.ROOT_STREAM_HANDLER.setLevel(logging.WARNING)


@contextlib.contextmanager
def _tune_output(verbose: bool):
    """Tune's own console output only with ``--verbose``.

    Tune's default output engine prints its banner, a results path and every
    errored trial's traceback location even at ``verbose=0``; its legacy engine
    at verbosity 0 prints nothing, which leaves the console to
    :class:`~raysweep.progress.PhaseProgress`. The switch is Tune's
    ``RAY_AIR_NEW_OUTPUT`` variable, set around one ``fit`` and restored after.
    The legacy engine's per-trial printer still prints one line at verbosity 0;
    a new phase's Tune run gets :class:`~raysweep.progress.TuneTrialPrinterOff`
    in its place.
    """
    if verbose or "RAY_AIR_NEW_OUTPUT" in os.environ:
        yield
        return
    os.environ["RAY_AIR_NEW_OUTPUT"] = "0"
    try:
        yield
    finally:
        os.environ.pop("RAY_AIR_NEW_OUTPUT", None)


def build_searcher(experiment: Experiment, phase_plan: PhasePlan, sink: ParquetSink, outcome_key: str, skip_done: set[str]):
    """The phase's Tune searcher and the extra columns its trial rows carry.

    ``skip_done``: ids of the phase's trials that already have rows; a grid or
    random phase leaves their configs out and runs only as many of the rest as
    the plan still misses (Tune runs every point it is given).
    """
    spec = phase_plan.spec
    if phase_plan.design is not None:
        from ray.tune.search.basic_variant import BasicVariantGenerator

        points = seeded_points(phase_plan)
        if skip_done:
            done_keys = _staged_keys(sink, phase_plan.index, experiment)
            points = [p for p in points if _point_key(p, experiment) not in done_keys]
            points = points[: max(phase_plan.trials - len(skip_done), 0)]
        max_concurrent = spec.max_concurrent or experiment.max_concurrent or 0
        generator = BasicVariantGenerator(
            points_to_evaluate=points, max_concurrent=max_concurrent, random_state=phase_plan.seed
        )
        return generator, {}
    from raysweep.searchers.ax import make_ax_searcher

    return make_ax_searcher(experiment, phase_plan, sink, outcome_key)


def seeded_points(phase_plan: PhasePlan) -> list[dict[str, Any]]:
    assert phase_plan.design is not None
    return [
        {**config, SEED_KEY: planning.trial_seed(phase_plan.seed, position)}
        for position, config in enumerate(phase_plan.design.configs)
    ]


def _point_key(point: dict[str, Any], experiment: Experiment) -> tuple:
    return config_key(point, [*experiment.space.names, SEED_KEY])


def _staged_keys(sink: ParquetSink, phase: int, experiment: Experiment) -> set[tuple]:
    frame = sink.read_trials([phase], include_staged=True)
    keys = set()
    for row in frame.to_dict("records"):
        point = {name: row.get(f"param.{name}") for name in experiment.space.names}
        point[SEED_KEY] = row.get("seed")
        keys.add(_point_key(point, experiment))
    return keys


def param_space(phase_plan: PhasePlan) -> dict[str, Any]:
    """Tune domains for every key a trial config holds.

    Grid and random phases hand Tune complete configs (``points_to_evaluate``);
    Tune still wants each key declared in the search space.
    """
    from ray import tune

    space: dict[str, Any] = {}
    for parameter in phase_plan.space:
        if parameter.is_choice:
            space[parameter.name] = tune.choice(list(parameter.values))
        elif parameter.is_int:
            space[parameter.name] = tune.randint(int(parameter.min), int(parameter.max) + 1)  # type: ignore[arg-type]
        else:
            space[parameter.name] = tune.uniform(parameter.min, parameter.max)
    space[SEED_KEY] = tune.randint(0, 2**31 - 1)
    return space if phase_plan.design is not None else {}


def _record_columns(extra: dict[str, Any]) -> dict[str, Any]:
    columns: dict[str, Any] = {}
    box = extra.get("box")
    if box is not None:
        columns["narrow_box"] = box
    return columns


def _best_row(frame, mode: str) -> dict[str, Any] | None:
    if frame.empty:
        return None
    usable = frame[frame["status"] != TrialStatus.FAILED.value].dropna(subset=["objective"])
    if usable.empty:
        return None
    row = usable.loc[usable["objective"].idxmax() if mode == "max" else usable["objective"].idxmin()]
    params = {c[len("param."):]: _plain(row[c]) for c in usable.columns if c.startswith("param.")}
    return {"trial_id": row["trial_id"], "objective": float(row["objective"]), "status": row["status"], "params": params}


def _plain(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value


def summarize(experiment: Experiment, state: SweepState, run_dir: Path) -> SweepResult:
    """The sweep so far. The best config pools repeated measurements of one config
    (:func:`raysweep.selection.best_config`), so a lucky single seed that a
    resample did not confirm does not stay on top, and is one measured at full
    fidelity when the sweep has any (a run cut short never wins)."""
    from raysweep.fidelity import experiment_scale
    from raysweep.selection import best_config

    sink = ParquetSink(run_dir, experiment.space)
    observations = sink.read_observations()
    best = None
    winner = best_config(observations, experiment.mode, scale=experiment_scale(experiment, observations))
    if winner is not None:
        first = next(o for o in observations if o.trial_id == winner.first_trial_id)
        best = Best(
            first.phase,
            state.phase(first.phase).name,
            winner.first_trial_id,
            winner.objective,
            {k: _plain(v) for k, v in winner.params.items()},
            winner.count,
        )
    return SweepResult(run_dir=run_dir, state=state, total_trials=len(observations), best=best)
