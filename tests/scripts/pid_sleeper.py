"""Form (a) test script that writes its PID to $PID_FILE, then sleeps $SLEEP_S (default 120).

A test that stops or kills a runner mid-trial waits for the file: the script is then running,
and the PID tells whether it outlived its runner.
"""

import os
import time


def train(params, report):
    with open(os.environ["PID_FILE"], "w") as f:
        f.write(str(os.getpid()))
    time.sleep(float(os.environ.get("SLEEP_S", "120")))
    return params["x"] ** 2
