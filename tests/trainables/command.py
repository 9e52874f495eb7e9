"""An external training program that knows nothing of Ray: JSON lines on stdout."""

import argparse
import json
import sys
import time

parser = argparse.ArgumentParser()
parser.add_argument("--x", type=float, required=True)
parser.add_argument("--seed", type=int, default=0)
parser.add_argument("--steps", type=int, default=3)
parser.add_argument("--sleep", type=float, default=0.0)
args = parser.parse_args()
print("starting", file=sys.stderr)
print("a line that is not JSON")
if args.x > 0.9:
    sys.exit(3)
for step in range(1, args.steps + 1):
    time.sleep(args.sleep)
    print(json.dumps({"score": -((args.x - 0.3) ** 2) * step, "step": step, "seed": args.seed}), flush=True)
