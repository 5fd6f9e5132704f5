"""Form (a) test script: a quadratic with known Gaussian noise (seeded by MTTUNE_SEED).

f(x, y) = (x - 0.3)^2 + (y + 0.1)^2, plus N(0, NOISY_SIGMA^2) (default 0.05); the value is
negated when NOISY_SIGN is -1 (for maximising studies). NOISY_FAIL=1 makes it crash.
"""

import os
import random


def train(params, report):
    if os.environ.get("NOISY_FAIL") == "1":
        raise RuntimeError("deliberate failure for the test")
    true = (params["x"] - 0.3) ** 2 + (params.get("y", -0.1) + 0.1) ** 2
    rng = random.Random(int(os.environ["MTTUNE_SEED"]))
    noise = rng.gauss(0.0, float(os.environ.get("NOISY_SIGMA", "0.05")))
    sign = float(os.environ.get("NOISY_SIGN", "1"))
    return {"value": sign * true + noise, "true": sign * true}
