"""Form (a) test script that sleeps: for parallelism tests and the Ray benchmark.

Env: SLEEP_S (seconds, default 1). Returns the quadratic of x with the wall-clock start and
end of the sleep (``t_start``, ``t_end``: seconds since the epoch), so that a test can see
whether trials really ran at the same time.
"""

import os
import time


def train(params, report):
    t_start = time.time()
    time.sleep(float(os.environ.get("SLEEP_S", "1")))
    return {"value": (params["x"] - 0.3) ** 2, "t_start": t_start, "t_end": time.time()}
