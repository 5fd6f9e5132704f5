"""Form (a) test script: a noisy quadratic with intermediate reports.

Env: QUAD_SLEEP (seconds per step, default 0), QUAD_STEPS (default 3).
"""

import os
import random
import time


def train(params, report):
    x, y = params["x"], params.get("y", 0.0)
    value = (x - 0.3) ** 2 + (y + 0.1) ** 2
    rng = random.Random(int(os.environ.get("MTTUNE_SEED", "0")))
    steps = int(os.environ.get("QUAD_STEPS", "3"))
    for step in range(steps):
        time.sleep(float(os.environ.get("QUAD_SLEEP", "0")))
        report(step, value + (steps - step) * 0.1)
    print("this print goes to stderr, not into the protocol")
    return {"value": value + rng.gauss(0, float(os.environ.get("QUAD_NOISE", "0"))), "extra": 1.5}
