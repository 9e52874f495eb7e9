"""A command that checks the argv raysweep filled in, then reports the value it was given.

Usage: argv_check.py X_3DP SEED TRIAL_ID ACT. Exits 2 when an item is not in its expected form.
"""

import json
import re
import sys

x, seed, trial_id, act = sys.argv[1:5]
problems = []
if not re.fullmatch(r"-?\d+\.\d{3}", x):
    problems.append(f"x {x!r} is not written with 3 decimals")
if not re.fullmatch(r"\d+", seed):
    problems.append(f"seed {seed!r} is not an int")
if not trial_id or trial_id == "unknown" or "{" in trial_id:
    problems.append(f"trial_id {trial_id!r} is not Tune's trial id")
if act not in ("tanh", "relu"):
    problems.append(f"act {act!r} is not one of the choices")
if problems:
    print("; ".join(problems), file=sys.stderr)
    sys.exit(2)
print(json.dumps({"score": float(x), "trial_number": int(trial_id.rsplit("_", 1)[-1])}), flush=True)
