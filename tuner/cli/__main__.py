"""``python -m tuner.cli`` is ``mttune``."""

import sys

from tuner.cli import main

sys.exit(main())
