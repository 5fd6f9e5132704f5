"""Form (b) script whose stdout is exactly what RAW_MODE says (garbage, nothing, huge...)."""

import json
import os
import sys

mode = os.environ.get("RAW_MODE", "ok")
if mode == "garbage":
    print("loss is about 0.3")
    print("{not json")
elif mode == "nothing":
    pass
elif mode == "stderr_only":
    print('{"value": 1.0}', file=sys.stderr)
elif mode == "binary":
    sys.stdout.buffer.write(bytes(range(256)) * 4)
elif mode == "huge":
    line = "y" * 100_000 + "\n"
    while True:
        sys.stdout.write(line)
elif mode == "nan":
    print('{"value": NaN}')
elif mode == "last_step_only":
    print(json.dumps({"step": 0, "value": 2.0}))
    print(json.dumps({"step": 1, "value": 1.0}))
else:
    print(json.dumps({"value": 0.25}))
