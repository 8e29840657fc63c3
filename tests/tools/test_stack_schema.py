"""stacks/schema.json and the README reference are generated from the models and kept current."""

from __future__ import annotations

import json
import subprocess
import sys

import jsonschema

from tests.stacks import ROOT, STACKS, stack_values


def test_schema_and_reference_are_current():
    result = subprocess.run([sys.executable, str(ROOT / "tools" / "stack_schema.py"), "--check"],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_schema_accepts_shipped_stacks_and_rejects_a_typo():
    schema = json.loads((ROOT / "stacks" / "schema.json").read_text())
    for stack in STACKS:
        document = {"config": {f"agent-platform:{k}": v for k, v in stack_values(stack).items()}}
        jsonschema.validate(document, schema)
    document = {"config": {"agent-platform:environmnt": "prod"}}
    try:
        jsonschema.validate(document, schema)
    except jsonschema.ValidationError as exc:
        assert "environmnt" in str(exc.message) or "environment" in str(exc.message)
    else:
        raise AssertionError("a misspelt key passed the schema")
