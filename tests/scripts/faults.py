"""Form (a) script that misbehaves as asked: FAULT env var, or the 'fault' param.

Each value is one failure mode of a training script.
"""

import os
import signal
import subprocess
import sys
import time


def train(params, report):
    fault = params.get("fault") or os.environ.get("FAULT", "none")
    if fault == "crash":
        raise ZeroDivisionError("deliberate crash in user code")
    if fault == "exit":
        sys.exit(7)
    if fault == "exit_message":
        sys.exit("bad config: depth must be even")
    if fault == "exit_clean":  # a clean sys.exit() after an intermediate report
        report(1, 0.25)
        sys.exit()
    if fault == "segfault":
        os.kill(os.getpid(), signal.SIGSEGV)
    if fault == "hang":
        time.sleep(3600)
    if fault == "hang_children":
        pid_file = os.environ["PID_FILE"]
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(3600)"])
        with open(pid_file, "w") as f:
            f.write(str(child.pid))
        time.sleep(3600)
    if fault == "ignore_sigterm":
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        time.sleep(3600)
    if fault == "nan":
        return float("nan")
    if fault == "inf":
        return {"value": float("inf")}
    if fault == "none_result":
        return None
    if fault == "string_result":
        return {"value": "high"}
    if fault == "missing_key":
        return {"accuracy": 0.5}
    if fault == "stderr_flood":
        for _ in range(2000):
            sys.stderr.write("e" * 1000 + "\n")
        return 0.5
    return (params.get("x", 0.0) - 0.3) ** 2
