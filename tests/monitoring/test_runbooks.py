"""docs/runbooks.md has a section for every alert the platform can raise, where its runbook_url points."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import urlparse

from agent_runtime.config import BackupConfig, BackupSource, RestoreDrillConfig
from components.promql import RUNBOOK_BASE_URL, effective_rules, rule_groups

RUNBOOKS = Path(__file__).resolve().parents[2] / "docs" / "runbooks.md"
PARTS = ("**What it means.**", "**First checks.**", "**Fixes.**")


def _sections() -> dict[str, str]:
    """GitHub's anchor of each `## ` heading -> the section's text."""
    text = RUNBOOKS.read_text()
    out = {}
    for block in re.split(r"^## ", text, flags=re.M)[1:]:
        heading, _, body = block.partition("\n")
        # GitHub: lower case, drop punctuation but hyphens and underscores, spaces to hyphens.
        anchor = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        out[anchor] = body
    return out


def _every_alert() -> list[dict]:
    backup = BackupConfig(
        enabled=True,
        sources=(BackupSource(name="db", kind="files", claim_name="state"),),
        drill=RestoreDrillConfig(enabled=True),
    )
    [group] = rule_groups(effective_rules(backup=backup, slo_objective_percent=99.9))
    return [r for r in group["rules"] if "alert" in r]


def test_every_runbook_url_points_at_a_section_that_exists() -> None:
    sections = _sections()
    alerts = _every_alert()
    assert len(alerts) >= 13
    for alert in alerts:
        url = urlparse(alert["annotations"]["runbook_url"])
        assert url._replace(fragment="").geturl() == RUNBOOK_BASE_URL
        assert RUNBOOK_BASE_URL.endswith("/" + str(RUNBOOKS.relative_to(RUNBOOKS.parents[1])))
        assert url.fragment in sections, f"{alert['alert']}: no section #{url.fragment} in docs/runbooks.md"


def test_every_section_says_what_it_means_what_to_check_and_how_to_fix() -> None:
    names = {a["alert"].lower() for a in _every_alert()}
    for anchor, body in _sections().items():
        assert anchor in names, f"docs/runbooks.md: section #{anchor} documents no alert"
        for part in PARTS:
            assert part in body, f"docs/runbooks.md#{anchor}: missing {part}"
