"""Form (a) test script whose first trial kills the process that runs it (its parent).

With KILL_MARKER set, the first trial to start creates that file, writes its own pid into
it, reports one step and SIGKILLs its parent (a Ray worker under --backend ray), then sleeps
as a script stuck in training would. Every other trial is a quick quadratic with reports.
"""

import os
import signal
import time


def train(params, report):
    x = params["x"]
    value = (x - 0.3) ** 2
    marker = os.environ.get("KILL_MARKER")
    if marker:
        try:
            fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            pass
        else:
            os.write(fd, str(os.getpid()).encode())
            os.close(fd)
            report(0, value + 1.0)
            time.sleep(0.5)  # let the report reach the driver
            os.kill(os.getppid(), signal.SIGKILL)
            time.sleep(600)
    for step in range(2):
        report(step, value + (2 - step) * 0.1)
    return value
