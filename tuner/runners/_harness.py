"""Child-side harness for Python training scripts (form (a) of the trial protocol).

Run as ``python _harness.py SCRIPT [ARGS...]`` (by file path, so that it imports nothing from
mttune and starts fast). It reads the parameters from ``MTTUNE_PARAMS`` (JSON), imports SCRIPT,
calls ``train(params, report)`` and writes JSON lines to the *original* stdout, while anything
the script itself prints is redirected to stderr so that it cannot corrupt the protocol.

Protocol lines written here:

* ``{"step": s, "value": v, ...}`` for each ``report(step, value, **extra_metrics)`` call;
* ``{"__mttune_result__": {...}}`` at the end: ``{"value": v}`` or the returned dict
  (``{"val_loss": ..., "acc": ...}``), wrapped so that a result with a ``step`` or ``epoch``
  key is never taken for an intermediate report.

Only the standard library is used.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import sys
import traceback
from numbers import Real

RESULT_KEY = "__mttune_result__"  # the parent's protocol reads the final result under it


def _jsonable(value: object) -> object:
    """Convert numbers (numpy and torch scalars included) to plain floats."""
    if isinstance(value, bool | int | str) or value is None:
        return value
    if isinstance(value, Real):
        return float(value)
    item = getattr(value, "item", None)
    if callable(item):
        try:
            return _jsonable(item())
        except (TypeError, ValueError):
            pass
    return repr(value)


def main(argv: list[str]) -> int:
    """Run ``train`` from the script named in ``argv[1]``; see the module docstring."""
    if len(argv) < 2:
        print("usage: _harness.py SCRIPT [ARGS...]", file=sys.stderr)
        return 2
    script = os.path.abspath(argv[1])
    # Keep the protocol channel private; the script's own prints go to stderr.
    channel = os.fdopen(os.dup(1), "w", buffering=1, encoding="utf-8")
    os.dup2(2, 1)
    sys.stdout = sys.stderr

    def emit(record: dict) -> None:
        channel.write(json.dumps(record, allow_nan=True) + "\n")

    def report(step: int, value: float, **metrics: object) -> None:
        """Report an intermediate objective value (used for pruning)."""
        if isinstance(step, bool) or not isinstance(step, int):
            raise TypeError(f"report(step, value): step must be an int, got {step!r}")
        record = {"step": step, "value": _jsonable(value)}
        record.update({k: _jsonable(v) for k, v in metrics.items()})
        emit(record)

    params = json.loads(os.environ.get("MTTUNE_PARAMS", "{}"))
    sys.argv = [script, *argv[2:]]
    sys.path.insert(0, os.path.dirname(script))
    spec = importlib.util.spec_from_file_location("__mttune_train__", script)
    if spec is None or spec.loader is None:
        print(f"mttune: cannot import {script}", file=sys.stderr)
        return 2
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
        train = getattr(module, "train", None)
        if not callable(train):
            print(
                f"mttune: {script} defines no function train(params, report)",
                file=sys.stderr,
            )
            return 2
        result = train(params, report)
    except SystemExit as e:  # as Python itself exits: None is success, a message is 1
        if e.code is None or isinstance(e.code, int):
            return e.code or 0
        print(e.code, file=sys.stderr)
        return 1
    except BaseException:
        traceback.print_exc()
        return 1
    if isinstance(result, dict):
        emit({RESULT_KEY: {str(k): _jsonable(v) for k, v in result.items()}})
    elif result is None:
        print("mttune: train() returned None; return a number or a dict", file=sys.stderr)
        return 3
    else:
        value = _jsonable(result)
        if isinstance(value, float | int) and not isinstance(value, bool):
            emit({RESULT_KEY: {"value": float(value) if not math.isnan(value) else float("nan")}})
        else:
            print(
                f"mttune: train() returned {result!r}; return a number or a dict", file=sys.stderr
            )
            return 3
    channel.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
