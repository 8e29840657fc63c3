"""agent_runtime/config.py: the one JSON config loader every command reads its file with."""

from __future__ import annotations

import json

import pytest

from agent_runtime.alerts.cli import _load_alerting
from agent_runtime.config import AlertingConfig, BackupConfig, ConfigError, load_json_config
from agent_runtime.recovery import load_backup_config


@pytest.mark.parametrize("content, expected", [
    (None, "no such file"),
    (b"\xff\xfe{}", "not valid JSON (not UTF-8 text at byte 0)"),
    (b'{"rules": [}', "not valid JSON (line 1, column 12)"),
    (b'{"rules": [{"name": "X", "signal": "error_rate"}]}', "rules[0].threshold: Field required"),
])
def test_every_bad_file_is_one_line_naming_the_file(tmp_path, content, expected):
    path = tmp_path / "alerting.json"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(ConfigError) as caught:
        load_json_config(path, AlertingConfig)
    message = str(caught.value)
    assert message.startswith(f"{path}: ") and expected in message and "\n" not in message


def test_a_directory_is_refused_as_unreadable(tmp_path):
    with pytest.raises(ConfigError, match=r": cannot read: Is a directory$"):
        load_json_config(tmp_path, AlertingConfig)


def test_commands_pick_their_section_of_a_shared_document(tmp_path):
    path = tmp_path / "runtime.json"
    path.write_text('{"routes": [], "alerts": {"evaluation_interval_seconds": 7}}')
    assert _load_alerting(str(path)).evaluation_interval_seconds == 7
    path.write_text('{"backup": {"enabled": true, "sources": []}}')
    assert load_backup_config(str(path)) == BackupConfig(enabled=True, sources=[])


def test_a_route_whose_prefix_rewrite_would_glue_segments_is_refused(tmp_path):
    from agent_runtime.config import RuntimeConfig

    def doc(prefix: str, rewrite: str) -> str:
        route = {"name": "r", "path_prefix": prefix, "cluster": "c", "prefix_rewrite": rewrite,
                 "discovery": {"kind": "static", "endpoints": [{"host": "127.0.0.1", "port": 1}]}}
        return json.dumps({"routes": [route]})

    path = tmp_path / "gateway.json"
    path.write_text(doc("/", "/api"))
    with pytest.raises(ConfigError, match=r"routes\[0\]: prefix_rewrite .* must both end in '/' or neither"):
        load_json_config(path, RuntimeConfig)
    path.write_text(doc("/v1/chat/", "/"))
    assert load_json_config(path, RuntimeConfig).routes[0].prefix_rewrite == "/"


@pytest.mark.parametrize(("text", "seconds"), [
    ("90s", 90), ("5m", 300), ("1h30m", 5400), ("1d", 86400), ("2w", 14 * 86400), ("250ms", 0.25),
    ("1h0m5s", 3605), (" 5m ", 300), ("30", 30), ("1.5", 1.5), (45, 45),
])
def test_durations_take_seconds_or_the_prometheus_form(text, seconds):
    from agent_runtime.config import parse_duration

    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["5 minutes", "1m30", "m", "30m1h", "", "5M"])
def test_not_a_duration_says_what_it_takes(text):
    from agent_runtime.config import parse_duration

    with pytest.raises(ValueError, match="is not a duration: give seconds .* or Prometheus' form"):
        parse_duration(text)


def test_every_runtime_duration_field_takes_the_prometheus_form():
    from agent_runtime.config import AlertRule, BreakerConfig

    assert BreakerConfig(wait_duration_in_open_state="1m30s").wait_duration_in_open_state == 90
    rule = AlertRule(name="Slow", signal="latency_p99_seconds", threshold=1, **{"for": "5m"}, window_seconds="1h")
    assert (rule.for_seconds, rule.window_seconds) == (300, 3600)
