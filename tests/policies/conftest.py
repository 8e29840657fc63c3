"""Test setup for the policy pack: rules are called as plain functions with fake CrossGuard args
(`policy_fakes.py`).

`policies/` goes on sys.path so tests import `agent_policies.*` exactly as the pack does; importing
`policies/__main__.py` instead would start the analyzer's gRPC server and never return. This
directory goes on sys.path too, for the helper modules (all named `policy_*` to stay unique).
"""

from __future__ import annotations

import os
import sys

TESTS_DIR = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(TESTS_DIR))
POLICIES_DIR = os.path.join(ROOT, "policies")
for path in (POLICIES_DIR, TESTS_DIR):
    if path not in sys.path:
        sys.path.insert(0, path)
