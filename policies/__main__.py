"""Entry point of the agent-platform policy pack.

Building a `PolicyPack` starts the analyzer's gRPC server and never returns, so this file does
nothing else; the rules live in `agent_policies` and tests import them from there.
"""

import os
import sys

# The Pulumi analyzer runs this file by path; make the sibling `agent_policies` package importable
# whatever the working directory is.
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from pulumi_policy import EnforcementLevel, PolicyPack  # noqa: E402

from agent_policies import ALL_POLICIES, PACK_DESCRIPTION, PACK_NAME  # noqa: E402

PolicyPack(
    name=PACK_NAME,
    # Fail closed: a run without --policy-pack-config blocks on violations; the local and dev
    # config files downgrade everything to advisory.
    enforcement_level=EnforcementLevel.MANDATORY,
    policies=ALL_POLICIES,
    description=PACK_DESCRIPTION,
)
