"""Alerting on the node: each gateway replica evaluates the stack's rules in-process and its
notifications reach the webhook the stack names, through the gateway's egress NetworkPolicy (one
of the defects this tier was made to catch: the policy once blocked the gateway's own webhook)."""

from __future__ import annotations


def test_the_gateways_notify_the_stack_webhook(platform, monitoring):
    payload = monitoring.wait_for_alert("Watchdog", "firing", timeout=120)
    alert = next(a for a in payload["alerts"] if a["labels"]["alertname"] == "Watchdog")
    assert payload["version"] == "4" and payload["status"] == "firing"
    assert alert["labels"]["severity"] == "info"
    assert alert["annotations"]["summary"] == "Always firing: the alerting pipeline works."
