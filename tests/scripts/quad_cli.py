"""Form (b) test script: parameters as --name value, metrics as JSON lines on stdout."""

import json
import os
import sys

args = dict(zip(sys.argv[1::2], sys.argv[2::2], strict=True))
env = json.loads(os.environ["MTTUNE_PARAMS"])
x = float(args["--x"])
assert abs(x - env["x"]) < 1e-12, "argv and MTTUNE_PARAMS disagree"
print("starting (free text is fine)")
for step in range(3):
    print(json.dumps({"step": step, "loss": (x - 0.3) ** 2 + 1.0 / (step + 1)}))
print(json.dumps({"loss": (x - 0.3) ** 2, "seed": int(os.environ["MTTUNE_SEED"])}))
