"""raysweep: multi-phase hyperparameter sweeps on Ray Tune.

The public API is small: load an experiment, plan it, run it, read its results.
"""

from raysweep.errors import SpecError, UserError
from raysweep.planning import plan
from raysweep.records import TrialStatus
from raysweep.spec import Experiment, load_experiment
from raysweep.sweep import run

__all__ = ["Experiment", "SpecError", "TrialStatus", "UserError", "load_experiment", "plan", "run"]
__version__ = "0.1.0"
