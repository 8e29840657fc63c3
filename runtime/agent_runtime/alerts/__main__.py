"""`python -m agent_runtime.alerts ...`, the same as `python -m agent_runtime alerts ...`."""

import sys

from .cli import main

sys.exit(main())
