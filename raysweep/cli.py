"""``python -m raysweep``: run, validate, status, report.

Bad input ends in one line on stderr naming the field, the rule and the value,
and exit code 2; nothing is written before the input is known to be good (the
file, the flags, the trainable's import, the storage's writability and
``--phase`` are all checked before the run directory or its lock exists).

Ray, Tune, Ax and torch are imported only by ``run`` (and by ``validate`` when
the trainable itself imports them), so ``--help``, ``validate`` and
``status`` answer at once.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Sequence

from raysweep.errors import UserError

EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report it

QUICKSTART = Path(__file__).resolve().parent.parent / "experiments" / "cartpole_ppo.yaml"


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    from raysweep.interrupts import Interrupted
    from raysweep.storage import WriteFailed

    try:
        code = args.handler(args)
        sys.stdout.flush()  # here, where a closed pipe can still be handled, not at interpreter exit
        return code
    except UserError as exc:
        print(f"raysweep: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except Interrupted as exc:  # SIGINT -> 130, SIGTERM -> 143; the running phase stays unfinished
        print(f"raysweep: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:  # Ctrl-C before any phase started
        print("raysweep: interrupted; continue with --resume", file=sys.stderr)
        return EXIT_INTERRUPTED
    except WriteFailed as exc:  # e.g. a full disk: every file is whole, so --resume continues once it is fixed
        print(f"raysweep: error: {exc}; fix that, then continue with --resume", file=sys.stderr)
        return EXIT_FAILURE
    except BrokenPipeError:  # `status --json | head`: the reader left; nothing more to say
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # the exit's own flush goes nowhere
        return EXIT_FAILURE


def _positive_int(text: str) -> int:
    """An argparse type: a whole number > 0."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number > 0; got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a whole number > 0; got {text!r}")
    return value


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, as for every other bad input
        self.exit(EXIT_USAGE, f"raysweep: error: {message} (see {self.prog} --help)\n")


def _phase_number(text: str) -> int:
    """``--phase``: a phase number counted from 1."""
    if not text.strip().isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"must be a phase number counted from 1 (as status prints it); got {text!r}")
    return int(text)


_SET_HELP = (
    "override a field with a YAML value (repeatable). Phases are addressed by name or by number counted from 1, "
    "as --phase counts: --set phases.exploit.max_trial_time=2h or --set phases.2.max_trial_time=2h; "
    "other lists take a 0-based [index] as error messages print it (command[2])"
)


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m raysweep", description="Multi-phase hyperparameter sweeps on Ray Tune.")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    run = commands.add_parser("run", help="run the phases of an experiment (the quickstart when none is named)")
    run.add_argument("experiment", nargs="?", help="experiment YAML file")
    run.add_argument("--phase", type=_phase_number, metavar="N",
                     help="run only phase N (counted from 1), using the results of the phases before it")
    run.add_argument("--resume", action="store_true", help="continue an interrupted phase")
    run.add_argument("--set", dest="overrides", action="append", default=[], metavar="PATH=VALUE", help=_SET_HELP)
    run.add_argument("--dry-run", action="store_true",
                     help="check everything and print the plan as validate does; run nothing, write nothing")
    run.add_argument("--address", help="Ray cluster address (default: RAY_ADDRESS, else a local Ray)")
    run.add_argument("--num-cpus", type=_positive_int, help="CPUs of the local Ray (default: all)")
    run.add_argument("--verbose", action="store_true", help="show Ray Tune's own progress tables and logs")
    quick = run.add_argument_group("quick mode (no YAML)")
    quick.add_argument("--trainable", help="module.path:function")
    quick.add_argument(
        "--params",
        help='comma-separated: name (a default range), name:LOW-HIGH, name:LOW-HIGH:log (or :int, :int_log, :pow2, '
        ':logit), name:[a,b] (a choice), name=value (fixed); e.g. "learning_rate:1e-4-1e-2:log,gae_lambda:0.8-0.99,'
        'activation:[tanh,relu],total_timesteps=50000"',
    )
    quick.add_argument("--budget", type=int, help="total trials")
    quick.add_argument("--max-trial-time", metavar="DURATION", help="per-trial time budget of every phase (90s, 30m, 1h)")
    quick.add_argument("--metric", help="reported value to optimise")
    quick.add_argument("--mode", choices=("max", "min"), help="max or min")
    quick.add_argument("--name", help="sweep name (default from the trainable)")
    run.set_defaults(handler=_run)

    validate = commands.add_parser("validate", help="check an experiment file and print its plan")
    validate.add_argument("experiment")
    validate.add_argument("--set", dest="overrides", action="append", default=[], metavar="PATH=VALUE", help=_SET_HELP)
    validate.set_defaults(handler=_validate)

    status = commands.add_parser("status", help="progress of a sweep: per phase trials, best, cost")
    status.add_argument("target", help="run directory or experiment file")
    status.add_argument("--json", action="store_true", help="print state.json's view as JSON")
    status.set_defaults(handler=_status)
    report = commands.add_parser("report", help="write figures and an HTML page for a run directory")
    report.add_argument("run_dir")
    report.set_defaults(handler=_report)
    return parser


# ----------------------------------------------------------------------------
def _load(args: argparse.Namespace):
    from raysweep.quick import quick_experiment
    from raysweep.spec import experiment_from_dict, load_experiment

    quick_flags = [args.trainable, args.params, args.budget, args.metric, args.mode]
    if args.experiment is None and any(v is not None for v in quick_flags):
        missing = [flag for flag, value in zip(("--trainable", "--params", "--budget", "--metric", "--mode"), quick_flags) if value is None]
        if missing:
            raise UserError(f"quick mode needs {', '.join(missing)} as well")
        data = quick_experiment(trainable=args.trainable, params=args.params, budget=args.budget,
                                metric=args.metric, mode=args.mode, name=args.name,
                                max_trial_time=args.max_trial_time)
        return experiment_from_dict(data, args.overrides), "python -m raysweep run " + " ".join(
            f"{flag} {value!r}" if " " in str(value) else f"{flag} {value}"
            for flag, value in zip(("--trainable", "--params", "--budget", "--metric", "--mode"), quick_flags)
        )
    if args.experiment is not None and any(v is not None for v in [*quick_flags, args.max_trial_time]):
        raise UserError("give an experiment file or the quick-mode flags (--trainable ...), not both")
    path = Path(args.experiment) if args.experiment else QUICKSTART
    return load_experiment(path, args.overrides), f"python -m raysweep run {path}"


def _run(args: argparse.Namespace) -> int:
    experiment, hint = _load(args)
    if args.phase is not None and args.phase > len(experiment.phases):
        names = ", ".join(f"{i} {p.name}" for i, p in enumerate(experiment.phases, start=1))
        count = len(experiment.phases)
        raise UserError(f"--phase: the experiment has {count} phase{'s' if count != 1 else ''} ({names}); got {args.phase}")
    _check_storage(experiment)
    if args.dry_run:
        _print_plan(experiment)
        print("dry run: nothing was run or written")
        return 0
    from raysweep import sweep

    result = sweep.run(
        experiment,
        phase=args.phase,
        resume=args.resume,
        address=args.address,
        num_cpus=args.num_cpus,
        verbose=args.verbose,
        command_hint=hint,
    )
    bar = "=" * 60
    print(bar)
    print("SWEEP COMPLETE" if all(p.status == "done" for p in result.state.phases) else "PHASE COMPLETE")
    print(bar)
    print(f"Total runs: {result.total_trials}")
    if result.best is not None:
        pooled = f", mean of {result.best.measurements} runs" if result.best.measurements > 1 else ""
        print(
            f"Best {experiment.metric}: {result.best.objective:.6g} "
            f"(phase {result.best.phase}, {result.best.phase_name}{pooled})"
        )
        print(f"Best config: {json.dumps(result.best.params)}")
    else:
        print("Best: none (no trial produced a usable value)")
    print(f"Results: {result.run_dir / 'results'}")
    print(f"State saved to: {result.run_dir / 'state.json'}")
    print(bar)
    return 0


def _validate(args: argparse.Namespace) -> int:
    from raysweep.spec import load_experiment

    experiment = load_experiment(args.experiment, args.overrides)
    _check_storage(experiment)
    _print_plan(experiment)
    print("ok")
    return 0


def _check_storage(experiment) -> None:
    """The run directory can be made and written, checked without writing anything."""
    from raysweep.errors import SpecError
    from raysweep.storage import unwritable_reason

    reason = unwritable_reason(experiment.storage_path)
    if reason is not None:
        raise SpecError("storage", f"the run directory cannot be written ({reason})", experiment.storage_path)


def _print_plan(experiment) -> None:
    from raysweep import planning

    plans = planning.plan(experiment)
    print(f"{experiment.name}: {experiment.mode} {experiment.metric!r}, {sum(p.trials for p in plans)} trials "
          f"in {len(plans)} phases, results in {experiment.storage_path}")
    print("parameters:")
    for parameter in experiment.space:
        print(f"  {parameter.name}: {parameter.describe()}")
    print(_fidelity_summary(experiment))
    for phase_plan in plans:
        print(f"  {phase_plan.describe()}")
        for name, bias in phase_plan.spec.bias.items():
            print(f"      bias {name}: {phase_plan.space[name].describe()}")
    _print_boxes(experiment)


def _fidelity_summary(experiment) -> str:
    """One line on what measures a trial's progress, what a full run is, and the Bayesian phases' GP."""
    fidelity = experiment.fidelity
    if fidelity.parameter is not None:
        full = f"a full run reaches its own {fidelity.parameter}"
    elif fidelity.max is not None:
        full = f"a full run reaches {fidelity.max:g}"
    else:
        full = "a full run reaches what completed trials reach"
    return f"fidelity: {fidelity.attr} ({full}); model: {experiment.model}"


def _print_boxes(experiment) -> None:
    """Boxes already narrowed in an existing run directory."""
    from raysweep.state import read_state

    state = read_state(experiment.storage_path)
    if state is None:
        return
    for phase_state in state.phases:
        if phase_state.box:
            print(f"  phase {phase_state.index} narrowed box: {json.dumps(phase_state.box)}")


def _status(args: argparse.Namespace) -> int:
    from raysweep.cost_units import format_cost
    from raysweep.outcomes import failure_counts
    from raysweep.sinks.parquet import ParquetSink
    from raysweep.space import SearchSpace
    from raysweep.spec import ParameterSpec, load_experiment
    from raysweep.state import read_state
    from raysweep.storage import as_path

    target = Path(args.target)
    run_dir = as_path(args.target)  # a local path or a cloud URI (s3://...)
    if target.is_file():
        run_dir = as_path(load_experiment(target, runnable=False).storage_path)
    state = read_state(run_dir)
    if state is None:
        raise UserError(f"{run_dir} holds no raysweep run (no state.json); start one with: python -m raysweep run EXPERIMENT.yaml")
    if args.json:
        print(json.dumps(state.to_json(), indent=2, default=str))
        return 0
    try:
        space = SearchSpace(tuple(ParameterSpec(**spec).to_parameter(name) for name, spec in state.parameters.items()))
    except Exception as exc:  # a hand-edited or damaged state.json; say which file, not a traceback
        reason = " ".join(str(exc).split())[:200]
        raise UserError(f"{run_dir / 'state.json'} is not a raysweep state file (parameters: {reason})") from None
    frame = _read_trials(ParquetSink(run_dir, space), run_dir)
    print(f"{state.sweep}: {state.mode} {state.metric} ({run_dir})")
    for phase_state in state.phases:
        rows = frame[frame["phase"] == phase_state.index] if not frame.empty else frame
        done = len(rows)
        usable = rows[rows["status"] != "failed"].dropna(subset=["objective"]) if done else rows
        best = None
        if len(usable):
            best = usable["objective"].max() if state.mode == "max" else usable["objective"].min()
        cost = float(rows["cost_s"].sum()) if done else 0.0
        gpu = float(rows["gpu_s"].fillna(0).sum()) if done and "gpu_s" in rows else 0.0
        planned = phase_state.trials_planned or "?"
        line = f"  phase {phase_state.index} {phase_state.name:<10} {phase_state.status:<8} {done}/{planned} done"
        if phase_state.status == "running":
            line += " (in progress)"
        line += f", best {best:.6g}" if best is not None else ", best -"
        line += f", cost {format_cost(cost)}" + (f" ({format_cost(gpu, gpu=True)})" if gpu > 0 else "")
        if done:
            counts = rows["status"].value_counts().to_dict()
            line += " [" + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())) + "]"
        print(line)
        fidelity_line = _fidelity_line(rows, state.fidelity_attr) if done else None
        if fidelity_line:
            print(f"      {fidelity_line}")
        if done and "error" in rows:
            for count, error in failure_counts(rows.loc[rows["status"] == "failed", "error"].tolist()):
                print(f"      failed {count}x: {error}")
        if phase_state.box:
            print(f"      narrowed box: {json.dumps(phase_state.box)}")
            edges = _box_edges_line(space, phase_state.box, rows)
            if edges:
                print(f"      {edges}")
            moved = _box_moves_line(phase_state, rows)
            if moved:
                print(f"      {moved}")
        for note in (phase_state.narrow_note, phase_state.model_note):
            if note:
                print(f"      {note}")
    return 0


def _fidelity_line(rows, attr: str) -> str | None:
    """``fidelity (training_iteration) reached: min 1, median 4, max 4`` over a phase's trials that report one."""
    if "fidelity" not in rows:
        return None
    reached = rows["fidelity"].dropna()
    if reached.empty:
        return None
    return (
        f"fidelity ({attr}) reached: min {reached.min():.4g}, median {reached.median():.4g}, max {reached.max():.4g}"
        f" ({len(reached)} of {len(rows)} trials)"
    )


def _box_edges_line(space, box_data, rows) -> str | None:
    """``box edges: lr upper 7/10`` for a narrowed phase's trials, each against the box
    its row says it was generated in (None for a box that cannot be read)."""
    from raysweep.narrowing import box_edges_per_trial, describe_box_edges

    box = _read_box(box_data)
    if box is None or not box.ranges:
        return None  # only choices narrowed: no edges to sit on
    boxed = [
        (_read_box(row.get("narrow_box")) or box, {name: row.get(f"param.{name}") for name in space.names})
        for row in rows.to_dict("records")
    ]
    return describe_box_edges(box_edges_per_trial(space, boxed), len(boxed))


def _box_moves_line(phase_state, rows) -> str | None:
    """``box moved: x [0.2, 0.3] -> [0.2, 0.45]; 3 growths, 0 shrinks`` for a narrowed phase
    (raysweep.trust_region). A phase still running has no final box in state.json yet: the
    box its latest trial was generated in stands in. None when neither is known."""
    from raysweep.trust_region import describe_box_moves

    initial, final = _read_box(phase_state.box), _read_box(phase_state.final_box)
    if final is None and len(rows) and "narrow_box" in rows:
        latest = rows.sort_values("started_at") if "started_at" in rows else rows
        final = _read_box(latest["narrow_box"].iloc[-1])
    if initial is None or final is None:
        return None
    return describe_box_moves(initial, final, phase_state.box_moves)


def _read_box(data):
    """A Box from state.json's dict or a row's ``narrow_box`` JSON text; None when there is none or it is unreadable."""
    from raysweep.narrowing import Box

    if isinstance(data, str):
        try:
            data = json.loads(data)
        except ValueError:
            return None
    if not isinstance(data, dict):
        return None
    try:
        return Box.from_dict(data)
    except (ValueError, TypeError):
        return None


def _read_trials(sink, run_dir):
    """The sink's trials (staged ones too); a UserError naming the first unreadable Parquet file."""
    try:
        return sink.read_trials(include_staged=True)
    except Exception as exc:
        import pyarrow.parquet as pq

        from raysweep.storage import arrow_location

        for path in sorted((run_dir / "results").glob("**/*.parquet")):
            try:
                where, filesystem = arrow_location(path)
                pq.read_table(where, partitioning=None, filesystem=filesystem)
            except Exception as bad:
                raise UserError(f"cannot read {path} ({type(bad).__name__}: {' '.join(str(bad).split())})") from None
        raise UserError(f"cannot read the results under {run_dir / 'results'} ({type(exc).__name__}: {exc})") from None


def _report(args: argparse.Namespace) -> int:
    from raysweep.report import write_report

    print(write_report(args.run_dir))
    return 0
