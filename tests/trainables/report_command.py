"""A command whose reports are numbers in strings, or Python reprs instead of JSON."""

import json
import sys

style, lr = sys.argv[1], float(sys.argv[2])
for step in range(1, 3):
    report = {"reward": step * lr * 100, "step": step}
    if style == "repr":
        print(report, flush=True)  # a Python dict, not JSON: no report at all
    else:
        print(json.dumps({"reward": f"{report['reward']:.6f}", "step": str(step)}), flush=True)
