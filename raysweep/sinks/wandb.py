"""Weights & Biases: one W&B run per trial, one summary run per phase.

Each trial becomes a run in the sweep's group (``job_type`` = phase name) with
the trial's parameters and seed as its config, its metrics logged at each
report (step = Tune's ``training_iteration``, the same rows as
``results/progress``), and its final status from the TrialRecord the
recorder put in the phase's OutcomeBook: in the summary (``trial/status``),
as a tag, and as the run's exit code (failed trials show as failed in W&B).

Ray's ``WandbLoggerCallback`` starts two Ray actors (a queue and a logger
process, each importing wandb and starting its own wandb-core) for every
trial; on a 2-core machine a phase of 10 trivial trials took about 50 s with
it instead of about 6 s. This sink keeps Ray's ``LoggerCallback`` interface
but writes every run from one background thread of the driver, all runs
sharing one wandb-core process, so Tune's event loop only enqueues (about
25 ms of driver CPU per trial, measured the same way).

The sink's contract:

* it never fails or blocks the sweep: W&B errors become warnings and that
  trial's run is dropped; the end of a phase waits for the writes, bounded;
* one run per trial id and phase (W&B run id = Tune trial id); a trial that
  a resumed phase restarts is logged again under the same id, which W&B
  treats as the same run when the offline files are synced;
* configs hold only the declared parameters and the seed, never the
  environment, so an API key reaches neither W&B nor the run directory;
* offline runs are written under ``<run_dir>/wandb/`` (W&B's own
  append-only files) for ``wandb sync`` later. W&B appends to those files in
  place, which an object store cannot do: when the run directory is a cloud
  URI (``s3://...``), they stay on the driver's local disk, under
  ``runs/<experiment name>/wandb/`` in its working directory.
"""

from __future__ import annotations

import configparser
import logging
import math
import netrc
import os
import queue
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlsplit

from ray.tune.logger import LoggerCallback

from raysweep import metrics, outcomes
from raysweep.records import TrialRecord, TrialStatus
from raysweep.storage import is_remote
from raysweep.trainables import SEED_KEY

if TYPE_CHECKING:
    import pandas as pd
    from ray.tune import Callback
    from ray.tune.experiment import Trial

    from raysweep.spec import Experiment, WandbSpec
    from raysweep.state import PhaseState

__all__ = ["WandbTrialLogger", "log_phase_summary", "resolve_mode", "trial_callbacks"]

Mode = Literal["online", "offline", "disabled"]

log = logging.getLogger(__name__)

#: How many of a phase's best configs the summary run's table holds.
TOP_CONFIGS = 10
#: How long the end of a phase waits for the last runs to be written.
FLUSH_TIMEOUT_S = 120.0
_DEFAULT_BASE_URL = "https://api.wandb.ai"


# ----------------------------------------------------------------------------
# mode
# ----------------------------------------------------------------------------
def resolve_mode(spec: "WandbSpec") -> Mode:
    """The mode W&B runs in for an experiment's ``wandb`` section.

    ``auto`` is online when credentials exist on this machine (``WANDB_API_KEY``,
    an identity token file, a ``.netrc`` entry or an ``api_key`` in W&B's
    settings file from ``wandb login``), else offline. Nothing here touches
    the network. A ``WANDB_MODE`` of offline or disabled in the environment
    is honoured under ``auto``, as W&B itself does.
    """
    if spec.mode != "auto":
        return spec.mode
    env_mode = os.environ.get("WANDB_MODE", "").strip().lower()
    if env_mode == "disabled":
        return "disabled"
    if env_mode in ("offline", "dryrun"):
        return "offline"
    return "online" if has_credentials() else "offline"


def has_credentials() -> bool:
    """Whether W&B credentials are present on this machine (they are not checked)."""
    if os.environ.get("WANDB_API_KEY") or os.environ.get("WANDB_IDENTITY_TOKEN_FILE"):
        return True
    return _netrc_has_host() or _settings_have_api_key()


def _netrc_has_host() -> bool:
    host = urlsplit(os.environ.get("WANDB_BASE_URL") or _DEFAULT_BASE_URL).hostname
    if not host:
        return False
    candidates = [os.environ["NETRC"]] if os.environ.get("NETRC") else ["~/.netrc", "~/_netrc"]
    for candidate in candidates:
        path = Path(candidate).expanduser()
        if not path.is_file():
            continue
        try:
            entry = netrc.netrc(str(path)).authenticators(host)
        except (netrc.NetrcParseError, OSError):
            continue
        if entry is not None and entry[2]:
            return True
    return False


def _settings_have_api_key() -> bool:
    config_dir = os.environ.get("WANDB_CONFIG_DIR") or os.path.join(
        os.environ.get("XDG_CONFIG_HOME") or "~/.config", "wandb"
    )
    path = Path(config_dir).expanduser() / "settings"
    if not path.is_file():
        return False
    parser = configparser.ConfigParser()
    try:
        parser.read(path)
    except (configparser.Error, OSError, UnicodeDecodeError):
        return False
    return parser.has_option("default", "api_key") and bool(parser.get("default", "api_key").strip())


# ----------------------------------------------------------------------------
# where runs go
# ----------------------------------------------------------------------------
@dataclass(frozen=True)
class RunTarget:
    """Where and how W&B runs of a sweep are written. Holds no credentials."""

    mode: Mode
    project: str
    group: str
    entity: str | None
    run_dir: str

    @classmethod
    def of(cls, experiment: "Experiment", run_dir: Path | str) -> "RunTarget":
        spec = experiment.wandb
        mode = resolve_mode(spec)
        if mode == "online" and not server_reachable(local_run_dir(experiment, run_dir)):
            mode = "offline"
        return cls(
            mode=mode,
            project=spec.project or experiment.name,
            group=spec.group or experiment.name,
            entity=spec.entity,
            run_dir=str(local_run_dir(experiment, run_dir)),
        )

    def init(self, **kwargs: Any):
        """Start one W&B run (a new one even if others are active in this process)."""
        import wandb

        Path(self.run_dir).mkdir(parents=True, exist_ok=True)
        settings = wandb.Settings(
            console="off",  # the driver's stdout is raysweep's progress, not the trial's
            silent=True,
            x_disable_stats=True,  # no system-metrics sampler per run
            x_disable_machine_info=True,
            disable_git=True,
            save_code=False,
            x_save_requirements=False,
        )
        options: dict[str, Any] = dict(
            project=self.project,
            group=self.group,
            dir=self.run_dir,
            mode=self.mode,
            reinit="create_new",
            settings=settings,
        )
        if self.entity:
            options["entity"] = self.entity
        options.update(kwargs)
        return wandb.init(**options)


#: Seconds the reachability probe waits for W&B's server to answer.
PROBE_TIMEOUT_S = 5.0
_reachable: dict[str, bool] = {}  # W&B base URL -> answered the probe (once per driver process)


def server_reachable(offline_dir: Path, timeout: float = PROBE_TIMEOUT_S) -> bool:
    """Whether W&B's server (``WANDB_BASE_URL``, else W&B's cloud) answers an HTTP request.

    Asked once per driver process and URL, with a ``timeout`` of a few seconds:
    wandb itself retries an unreachable server for minutes per run (a 2-trial
    phase once took 278 s instead of about 40 s), so an online sweep whose server
    cannot be reached writes offline runs instead, with one warning naming
    ``offline_dir`` and how to upload them. Any HTTP answer, even an error
    status, counts as reachable (credentials are W&B's business); proxies in the
    environment are used as wandb would.
    """
    url = (os.environ.get("WANDB_BASE_URL") or _DEFAULT_BASE_URL).rstrip("/")
    if url not in _reachable:
        import urllib.error
        import urllib.request

        try:
            urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=timeout).close()
            _reachable[url] = True
        except urllib.error.HTTPError:
            _reachable[url] = True
        except (OSError, ValueError) as exc:  # refused, no route, DNS, timeout, a malformed URL
            _reachable[url] = False
            reason = getattr(exc, "reason", exc)
            log.warning(
                "W&B: %s is unreachable (%s); writing offline runs to %s instead (upload them later with "
                "`wandb sync %s/wandb/offline-run-*`)",
                url, reason, offline_dir, offline_dir,
            )
    return _reachable[url]


def local_run_dir(experiment: "Experiment", run_dir: Any) -> Path:
    """The local directory W&B writes into: the run directory, or ``runs/<name>`` when that is a cloud URI."""
    if is_remote(run_dir):
        return Path("runs", experiment.name).resolve()
    return Path(run_dir).resolve()


# ----------------------------------------------------------------------------
# one run per trial
# ----------------------------------------------------------------------------
def trial_callbacks(
    experiment: "Experiment", *, phase: int, phase_name: str, run_dir: Path, outcome_key: str
) -> list["Callback"]:
    """Tune callbacks that log a phase's trials to W&B; none when W&B is disabled.

    Place them after the TrialRecorder: a trial's final status is read from
    the record the recorder adds to the phase's OutcomeBook.
    """
    target = RunTarget.of(experiment, run_dir)
    if target.mode == "disabled":
        return []
    return [
        WandbTrialLogger(
            target=target,
            phase=phase,
            phase_name=phase_name,
            param_names=tuple(experiment.space.names),
            metric=experiment.metric,
            outcome_key=outcome_key,
        )
    ]


class WandbTrialLogger(LoggerCallback):
    """Logs each trial of one phase as a W&B run, written off Tune's event loop.

    Picklable (Tune stores its callbacks in ``tuner.pkl``): the writer thread
    starts on first use and is not part of the pickled state.
    """

    def __init__(
        self,
        *,
        target: RunTarget,
        phase: int,
        phase_name: str,
        param_names: tuple[str, ...],
        metric: str,
        outcome_key: str,
    ) -> None:
        self.target = target
        self.phase = phase
        self.phase_name = phase_name
        self.param_names = param_names
        self.metric = metric
        self.outcome_key = outcome_key
        self._writer: _RunWriter | None = None
        self._open: set[str] = set()

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_writer"] = None
        state["_open"] = set()
        return state

    @property
    def writer(self) -> "_RunWriter":
        if self._writer is None or not self._writer.is_alive():
            self._writer = _RunWriter(self.target)
            self._writer.start()
        return self._writer

    # -- LoggerCallback's hooks -----------------------------------------------------
    def log_trial_start(self, trial: "Trial") -> None:
        trial_id = trial.trial_id
        if trial_id in self._open:
            return
        self._open.add(trial_id)
        config = {name: _plain(trial.config.get(name)) for name in self.param_names if name in trial.config}
        if SEED_KEY in trial.config:
            config[SEED_KEY] = _plain(trial.config[SEED_KEY])
        self.writer.send(
            _Start(
                trial_id=trial_id,
                options=dict(
                    id=trial_id,
                    name=f"{self.phase_name}-{trial_id}",
                    job_type=self.phase_name,
                    tags=[f"phase-{self.phase}"],
                    config=config,
                ),
            )
        )

    def log_trial_result(self, iteration: int, trial: "Trial", result: dict) -> None:
        if trial.trial_id not in self._open:
            self.log_trial_start(trial)
        # The same names and numbers as the trial's progress rows in Parquet.
        report = metrics.read(result, self.metric)
        values: dict[str, Any] = dict(report.values)
        if "time_total_s" in result:
            values["trial/time_s"] = report.time_s
        step = report.iteration if "training_iteration" in result else None
        self.writer.send(_Log(trial.trial_id, values, step))

    def log_trial_end(self, trial: "Trial", failed: bool = False) -> None:
        if trial.trial_id in outcomes.lookup(self.outcome_key, self.metric).staged:
            return  # finished and logged by an interrupted attempt of the phase
        if trial.trial_id not in self._open:
            self.log_trial_start(trial)
        self._open.discard(trial.trial_id)
        record = self._record_of(trial.trial_id)
        if record is not None:
            status, summary = record.status, _record_summary(record)
        else:  # not recorded (callback placed before the recorder): decide the same way it would
            book = outcomes.lookup(self.outcome_key, self.metric)
            book.read(trial.trial_id, trial.last_result)
            status, reason = book.status_of(trial.trial_id, failed)
            summary = {"trial/status": status.value, "trial/phase": self.phase}
            if reason:
                summary["trial/error"] = reason
        self.writer.send(_End(trial.trial_id, status, summary))

    def on_experiment_end(self, trials: list["Trial"], **info: Any) -> None:
        self.flush()

    def flush(self, timeout: float = FLUSH_TIMEOUT_S) -> None:
        """Finish every open run and wait (up to ``timeout``) until all are written."""
        if self._writer is not None:
            self._writer.close(timeout)
            self._writer = None
        self._open.clear()

    def _record_of(self, trial_id: str) -> TrialRecord | None:
        book = outcomes.lookup(self.outcome_key, self.metric)
        for record in reversed(book.records):
            if record.trial_id == trial_id:
                return record
        return None


def _record_summary(record: TrialRecord) -> dict[str, Any]:
    summary: dict[str, Any] = {
        "trial/status": TrialStatus(record.status).value,
        "trial/phase": record.phase,
        "trial/objective": record.objective,
        "trial/best_objective": record.best_objective,
        "trial/cost_s": record.cost_s,
        "trial/gpu_s": record.gpu_s,
        "trial/iterations": record.iterations,
        "trial/fidelity": record.fidelity,
    }
    if record.error:
        summary["trial/error"] = record.error
    if record.resampled_from:
        summary["trial/resampled_from"] = record.resampled_from
    return {key: value for key, value in summary.items() if value is not None}


# -- the writer thread ------------------------------------------------------------------
@dataclass(frozen=True)
class _Start:
    trial_id: str
    options: dict[str, Any]


@dataclass(frozen=True)
class _Log:
    trial_id: str
    metrics: dict[str, Any]
    step: int | None


@dataclass(frozen=True)
class _End:
    trial_id: str
    status: TrialStatus
    summary: dict[str, Any] = field(default_factory=dict)


_CLOSE = object()


class _RunWriter(threading.Thread):
    """Owns the W&B runs of one phase; the only thread that calls into wandb for them."""

    def __init__(self, target: RunTarget) -> None:
        super().__init__(name="raysweep-wandb", daemon=True)
        self.target = target
        self._inbox: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._runs: dict[str, Any] = {}
        self._broken: set[str] = set()

    def send(self, message: _Start | _Log | _End) -> None:
        self._inbox.put(message)

    def close(self, timeout: float) -> None:
        self._inbox.put(_CLOSE)
        self.join(timeout)
        if self.is_alive():
            log.warning("W&B: runs still being written after %.0f s; continuing without waiting", timeout)

    def run(self) -> None:
        while True:
            message = self._inbox.get()
            if message is _CLOSE:
                break
            try:
                self._handle(message)
            except Exception as exc:  # W&B trouble must never stop the sweep
                self._broken.add(message.trial_id)
                self._runs.pop(message.trial_id, None)
                # The first one in full; the rest (often the same cause, e.g. no login) only counted.
                report = log.warning if len(self._broken) == 1 else log.debug
                report("W&B: dropped the run of trial %s (%s: %s)", message.trial_id, type(exc).__name__, exc)
        for trial_id, run in list(self._runs.items()):  # trials Tune never ended
            try:
                self._finish(trial_id, run, exit_code=1)
            except Exception as exc:
                self._broken.add(trial_id)
                log.debug("W&B: could not finish the run of trial %s (%s)", trial_id, exc)
        if len(self._broken) > 1:
            log.warning("W&B: dropped the runs of %d trials of this phase", len(self._broken))

    def _handle(self, message: _Start | _Log | _End) -> None:
        trial_id = message.trial_id
        if trial_id in self._broken:
            return
        if isinstance(message, _Start):
            if trial_id not in self._runs:
                self._runs[trial_id] = self.target.init(**message.options)
            return
        run = self._runs.get(trial_id)
        if run is None:
            return
        if isinstance(message, _Log):
            run.log(message.metrics, step=message.step)
            return
        run.summary.update(message.summary)
        run.tags = tuple(run.tags or ()) + (message.status.value,)
        self._finish(trial_id, run, exit_code=1 if message.status is TrialStatus.FAILED else 0)

    def _finish(self, trial_id: str, run: Any, exit_code: int) -> None:
        self._runs.pop(trial_id, None)
        run.finish(exit_code=exit_code)


# ----------------------------------------------------------------------------
# one summary run per phase
# ----------------------------------------------------------------------------
def log_phase_summary(experiment: "Experiment", *, phase_state: "PhaseState", trials: "pd.DataFrame", run_dir: Path) -> None:
    """Log a finished phase as one W&B run (``job_type`` ``<phase>-summary``).

    Its summary holds the trial count, status counts, best objective and
    config, cost used and the narrowed box (if any); its history one
    ``wandb.Table`` of the top configs. Does nothing when W&B is disabled;
    W&B errors are logged as warnings, never raised.
    """
    target = RunTarget.of(experiment, run_dir)
    if target.mode == "disabled":
        return
    try:
        _log_phase_summary(target, experiment, phase_state, trials)
    except Exception as exc:  # W&B trouble must never stop the sweep
        log.warning("W&B: could not log the summary of phase %s (%s: %s)", phase_state.index, type(exc).__name__, exc)


def _log_phase_summary(target: RunTarget, experiment: "Experiment", phase_state: "PhaseState", trials: "pd.DataFrame") -> None:
    import wandb

    mode = experiment.mode
    params = [c for c in trials.columns if c.startswith("param.")]
    statuses = trials["status"].astype(str) if "status" in trials else None
    summary: dict[str, Any] = {
        "phase": phase_state.index,
        "trials": int(len(trials)),
        "cost_s": _column_sum(trials, "cost_s"),
        "gpu_s": _column_sum(trials, "gpu_s"),
    }
    summary["cost_hours"] = summary["cost_s"] / 3600.0
    summary["gpu_hours"] = summary["gpu_s"] / 3600.0
    counts = {status.value: 0 for status in TrialStatus}
    if statuses is not None:
        for status, count in statuses.value_counts().items():
            counts[str(status)] = int(count)
    summary.update({f"status/{status}": count for status, count in counts.items()})
    if statuses is not None and "error" in trials:
        failed = trials.loc[statuses == TrialStatus.FAILED.value, "error"]
        for rank, (count, error) in enumerate(outcomes.failure_counts(failed.tolist()), start=1):
            summary[f"failures/{rank}"] = f"{count} x {error}"

    ranked = _ranked(trials, mode)
    if not ranked.empty:
        best = ranked.iloc[0]
        summary["best/objective"] = float(best["objective"])
        summary["best/trial_id"] = str(best["trial_id"])
        summary["best/config"] = {c[len("param."):]: _plain(best[c]) for c in params}
    if phase_state.box:
        summary["narrow_box"] = phase_state.box

    run = target.init(
        name=f"phase{phase_state.index}-{phase_state.name}-summary",
        job_type=f"{phase_state.name}-summary",
        tags=[f"phase-{phase_state.index}", "summary"],
        config={
            "phase": phase_state.index,
            "phase_name": phase_state.name,
            "searcher": phase_state.searcher,
            "metric": experiment.metric,
            "mode": mode,
            "narrow_box": phase_state.box,
        },
    )
    try:
        columns = ["rank", "trial_id", "status", "objective", "cost_s", *[c[len("param."):] for c in params]]
        rows = []
        for rank, (_, row) in enumerate(ranked.head(TOP_CONFIGS).iterrows(), start=1):
            rows.append(
                [rank, str(row["trial_id"]), str(row["status"]), float(row["objective"]), _float(row.get("cost_s"))]
                + [_plain(row[c]) for c in params]
            )
        run.log({"top_configs": wandb.Table(columns=columns, data=rows)})
        run.summary.update(summary)
    finally:
        run.finish()


def _ranked(trials: "pd.DataFrame", mode: str) -> "pd.DataFrame":
    """Trials with a usable objective (never failed ones), best first."""
    import numpy as np
    import pandas as pd

    if trials.empty or "objective" not in trials:
        return trials.iloc[0:0]
    usable = trials[trials["status"].astype(str) != TrialStatus.FAILED.value].copy()
    usable["objective"] = pd.to_numeric(usable["objective"], errors="coerce").astype(float)
    # A boolean mask, also when no trial is usable (an empty object Series would select columns).
    usable = usable[np.isfinite(usable["objective"].to_numpy(dtype=float))]
    return usable.sort_values("objective", ascending=(mode == "min"), kind="stable")


def _column_sum(trials: "pd.DataFrame", column: str) -> float:
    return float(trials[column].fillna(0).sum()) if column in trials else 0.0


def _float(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _plain(value: Any) -> Any:
    """A JSON-friendly scalar: numpy scalars as Python ones, missing as None."""
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        try:
            value = value.item()
        except (ValueError, AttributeError):
            pass
    if isinstance(value, float) and math.isnan(value):
        return None
    return value
