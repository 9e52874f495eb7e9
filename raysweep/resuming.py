"""Continuing a run directory: its ``state.json`` against the experiment file, Tune's saved state.

* :func:`reconcile_phases` brings the state's phase list in line with the
  file (appended phases join it) and says, for people, how the file's plan of
  a started phase changed since it ran (:func:`plan_changes`).
* :func:`unrestorable_reason` says whether Tune's saved experiment state of an
  interrupted phase can be restored, or why not; when not, the phase's
  missing trials run in a fresh Tune run (:func:`raysweep.sweep.run_phase`).
"""

from __future__ import annotations

import json
from typing import Any

from raysweep import storage
from raysweep.errors import UserError
from raysweep.planning import PhasePlan
from raysweep.sinks.parquet import ParquetSink
from raysweep.state import PhaseState, SweepState


def reconcile_phases(state: SweepState, plans: list[PhasePlan], sink: ParquetSink) -> list[str]:
    """Bring ``state``'s phase list in line with the experiment file; return notes for the user.

    * A phase appended to the file joins the state as ``pending`` (so it runs
      next, with ``run`` or ``--phase N``); pending phases take the file's name
      and searcher, and pending phases the file no longer declares are dropped.
    * A done phase whose plan changed stays as it ran; a note says so.
    * An interrupted (``running``) phase whose plan changed follows the file on
      ``--resume`` (see :func:`run_phase`); a note says what changed. If the
      file now plans fewer trials than the phase already finished, that is
      refused with a UserError (nothing a user ran is dropped).

    Only the in-memory ``state`` changes; it is written when a phase starts.
    """
    notes = []
    for phase_plan in plans[len(state.phases):]:
        state.phases.append(PhaseState(index=phase_plan.index, name=phase_plan.name, searcher=phase_plan.spec.searcher))
        notes.append(f"note: phase {phase_plan.index} ({phase_plan.name}) was added to the experiment; it runs after the phases before it")
    while len(state.phases) > len(plans) and state.phases[-1].status == "pending":
        state.phases.pop()
    for phase_state, phase_plan in zip(state.phases, plans):
        if phase_state.status == "pending":
            phase_state.name, phase_state.searcher = phase_plan.name, phase_plan.spec.searcher
            continue
        changes = plan_changes(phase_state, phase_plan)
        if not changes:
            continue
        what = f"phase {phase_state.index} ({phase_state.name})"
        if phase_state.status == "done":
            notes.append(
                f"note: {what} is done with {phase_state.trials_done} trials; the experiment changed it since "
                f"({'; '.join(changes)}): it stays as it ran"
            )
            continue
        finished = len(sink.recorded_trial_ids(phase_state.index))
        if phase_plan.trials < finished:
            field = "share" if "share" in phase_plan.spec.fields_set_in_file() else "trials"
            raise UserError(
                f"phases[{phase_state.index - 1}].{field}: {what} has already finished {finished} trials, so it "
                f"needs at least {finished} (they are kept; or use another storage directory); got {phase_plan.trials} trials"
            )
        notes.append(
            f"note: {what} was interrupted with {finished} of its {phase_state.trials_planned} trials finished; the "
            f"experiment changed it since ({'; '.join(changes)}): --resume follows the file, runs the "
            f"{phase_plan.trials - finished} trials still missing afresh and keeps the {finished} finished ones"
        )
    return notes


def plan_changes(phase_state: PhaseState, phase_plan: PhasePlan) -> list[str]:
    """How the file's plan of a started phase differs from the one it was started with, for people."""
    changes = []
    if phase_state.trials_planned and phase_state.trials_planned != phase_plan.trials:
        changes.append(f"trials {phase_state.trials_planned} -> {phase_plan.trials}")
    if phase_state.name != phase_plan.name:
        changes.append(f"name {phase_state.name!r} -> {phase_plan.name!r}")
    before, now = _plain_json(phase_state.settings), _plain_json(phase_plan.spec.fields_set_in_file())
    if before:  # states written before settings were recorded compare on trials alone
        for key in sorted(set(before) | set(now)):
            if key in ("trials", "share", "name") or before.get(key) == now.get(key):
                continue
            changes.append(f"{key} {_shown(before.get(key))} -> {_shown(now.get(key))}")
    return changes


def _plain_json(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


def _shown(value: Any) -> str:
    return "unset" if value is None else json.dumps(value)


#: Tune's files that ``Tuner.restore`` reads, newest first by name, and how each is decoded.
_TUNE_STATE_FILES = (
    ("experiment_state-*.json", "json"),
    ("basic-variant-state-*.json", "pickle"),
    ("searcher-state-*.pkl", "searcher"),
    ("callback-states-*.pkl", "pickle"),
    ("tuner.pkl", "pickle"),
)


def unrestorable_reason(tune_path: "storage.StoragePath | str") -> str | None:
    """Why Tune's saved experiment state under ``tune_path`` cannot be restored, or None if it can.

    Tune writes its experiment state in place, so a killed driver or a full disk
    can leave it cut short; ``Tuner.restore`` then quietly starts the experiment
    over from the original search space (which raysweep does not hand it) and
    fails or repeats finished trials. Every file it would read is decoded here
    first, so such a state is never restored.
    """
    import ray.cloudpickle as cloudpickle

    path = storage.as_path(str(tune_path))
    try:
        if not path.is_dir():
            return "Tune saved no experiment state"
        for pattern, kind in _TUNE_STATE_FILES:
            found = sorted(path.glob(pattern), key=lambda p: p.name)
            if not found:
                if pattern.startswith(("experiment_state", "tuner")):
                    return f"no {pattern} in {path}"
                continue
            data = found[-1].read_bytes()
            if kind == "json":
                loaded = json.loads(data)
                if not loaded.get("trial_data"):
                    return f"{found[-1].name} lists no trials"
            elif kind == "searcher" and data.lstrip()[:1] == b"{":
                # raysweep's Ax searcher saves itself as JSON under Tune's .pkl name (AxSearcher.save)
                saved_format = json.loads(data).get("format")
                if saved_format is None:
                    return f"{found[-1].name} holds no searcher state"
                from raysweep.searchers.ax.state import STATE_FORMAT  # only here: Ax's phases import Ax anyway

                if saved_format != STATE_FORMAT:
                    # Tune would log the refusal and start the phase over, not raise it
                    return f"{found[-1].name} was saved by another raysweep (format {saved_format!r}, not {STATE_FORMAT!r})"
            else:
                cloudpickle.loads(data)
    except Exception as exc:  # any decoding error means Tune could not use the file either
        return one_line(exc)
    return None


def one_line(exc: BaseException) -> str:
    """``Type: first line of the message``, for a note on the console."""
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0] if lines else ''}".strip()[:300]
