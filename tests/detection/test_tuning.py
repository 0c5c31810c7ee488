"""detection.disabled_rules and detection.trusted_sources applied to a loaded rule set."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from agent.alerts import Status
from agent.config import TrustedSource, load_config
from agent.detection import Engine, load_rules
from agent.detection.tuning import apply_config
from agent.errors import ConfigErrors
from agent.events import Event, LogSource
from agent.metrics import AgentMetrics
from tests.detection.helpers import T0, run

REPO = Path(__file__).resolve().parents[2]
SSHD = LogSource("linux", None, "sshd")
AUTH = REPO / "rules" / "auth"
BRUTE = "37b4f665-86db-49b5-b86f-fa53159d6c25"
FAILURE = "46a857c9-db04-4b90-b89d-bd4c940f3350"
SPRAY = "76a389f4-f83f-5834-acbe-89aa1717759e"


def failures(ip: str, n: int = 6, user: str = "root", t0: float = T0) -> list[Event]:
    return [Event(t0 + i, SSHD, {"event.action": "ssh_login", "event.outcome": "failure",
                                 "source.ip": ip, "user.name": f"{user}{i}"})
            for i in range(n)]


def opened_groups(alerts: list[Any], rule: str = BRUTE) -> list[dict[str, Any]]:
    return [a.group for a in alerts if a.status is Status.OPEN and a.rule.id == rule]


def ssh_rules() -> Any:
    report = load_rules([AUTH / "ssh_bruteforce.yml", AUTH / "ssh_password_spraying.yml"])
    assert not report.errors
    return report.ruleset


def trusted(**kw: Any) -> TrustedSource:
    return TrustedSource(**kw)


def test_disabled_rule_is_removed_by_id_or_name() -> None:
    ruleset = ssh_rules()
    for ref in (BRUTE, "ssh_bruteforce"):
        tuned = apply_config(ruleset, [ref], [])
        assert BRUTE not in tuned.ruleset.by_id and tuned.disabled == {BRUTE}
        assert SPRAY in tuned.ruleset.by_id
        alerts = run(Engine(tuned.ruleset), failures("203.0.113.5"))
        assert not opened_groups(alerts) and opened_groups(alerts, SPRAY)
        assert tuned.notes == []


def test_disabling_a_base_rule_disables_its_correlations() -> None:
    tuned = apply_config(ssh_rules(), ["ssh_auth_failure"], [])
    assert {FAILURE, BRUTE} <= tuned.disabled
    assert any("disabled too" in n and "SSH brute force" in n for n in tuned.notes)


def test_unknown_references_are_notes() -> None:
    tuned = apply_config(ssh_rules(), ["no_such_rule"],
                         [trusted(cidrs=["10.0.0.0/8"], rules=["nope"])])
    assert len(tuned.ruleset) == len(ssh_rules())
    assert any("'no_such_rule'" in n for n in tuned.notes)
    assert any("trusted_sources.0.rules" in n and "'nope'" in n for n in tuned.notes)


def test_trusted_cidr_per_rule_silences_one_source_only() -> None:
    registry = CollectorRegistry()
    metrics = AgentMetrics(registry)
    tuned = apply_config(ssh_rules(), [], [trusted(cidrs=["198.51.100.0/24"],
                                                   rules=["ssh_bruteforce"])], metrics)
    engine = Engine(tuned.ruleset)
    alerts = run(engine, failures("198.51.100.7") + failures("203.0.113.5", t0=T0 + 10))
    assert opened_groups(alerts) == [{"source.ip": "203.0.113.5"}]
    # the spraying rule (not named) still sees the trusted source
    assert {"source.ip": "198.51.100.7"} in opened_groups(alerts, SPRAY)
    value = registry.get_sample_value("vedette_rule_matches_silenced_total",
                                      {"rule": FAILURE, "reason": "trusted_source"})
    assert value == 6
    # the spraying base rule is not tuned: no series for it
    labels = {s.labels["rule"] for m in registry.collect() for s in m.samples
              if s.name == "vedette_rule_matches_silenced_total"}
    assert labels == {FAILURE}


def test_trusted_global_values_and_ipv6() -> None:
    tuned = apply_config(ssh_rules(), [], [trusted(cidrs=["2001:db8::/32"]),
                                           trusted(field="user.name", values=["root0"])])
    engine = Engine(tuned.ruleset)
    alerts = run(engine, failures("2001:db8::7") + failures("203.0.113.5", n=5))
    # 2001:db8::7 silenced everywhere; user root0 silenced, so 203.0.113.5 has 4 of 5
    assert opened_groups(alerts) == [] and opened_groups(alerts, SPRAY) == []
    alerts = run(engine, failures("203.0.113.5", n=6, t0=T0 + 100))
    assert opened_groups(alerts) == [{"source.ip": "203.0.113.5"}]


def test_filters_survive_config_tuning(tmp_path: Path) -> None:
    (tmp_path / "f.yml").write_text(
        "title: scanner\nid: 4b0c1f5e-6a2d-4e8f-9c3b-2d1e0f9a8b7c\n"
        "logsource: {product: linux, service: sshd}\n"
        "filter:\n  rules: [ssh_bruteforce]\n  s: {source.ip: 198.51.100.7}\n"
        "  condition: not s\n")
    report = load_rules([AUTH / "ssh_bruteforce.yml", tmp_path])
    tuned = apply_config(report.ruleset, [], [trusted(cidrs=["203.0.113.0/24"])])
    alerts = run(Engine(tuned.ruleset), failures("198.51.100.7") + failures("203.0.113.5")
                 + failures("192.0.2.1", t0=T0 + 20))
    assert opened_groups(alerts) == [{"source.ip": "192.0.2.1"}]


@pytest.mark.parametrize(("entry", "reason"), [
    ({"cidrs": ["10.0.0.0/33"]}, "not an IP address or network"),
    ({"cidrs": ["10.0.0.0/8"], "values": ["x"]}, "exactly one of cidrs or values"),
    ({}, "exactly one of cidrs or values"),
    ({"cidrs": ["10.0.0.0/8"], "feild": "x"}, "unknown key"),
])
def test_trusted_sources_config_errors_are_located(
    tmp_path: Path, entry: dict[str, Any], reason: str
) -> None:
    import yaml  # noqa: PLC0415

    path = tmp_path / "v.yaml"
    path.write_text(yaml.safe_dump({"detection": {"disabled_rules": ["x"],
                                                  "trusted_sources": [entry]}}))
    with pytest.raises(ConfigErrors) as exc:
        load_config(path, environ={})
    text = "\n".join(str(e) for e in exc.value.errors)
    assert reason in text and f"{path}:" in text


def test_config_accepts_tuning(tmp_path: Path) -> None:
    path = tmp_path / "v.yaml"
    path.write_text("detection:\n  disabled_rules: [ssh_bruteforce]\n  trusted_sources:\n"
                    "    - {cidrs: [10.0.0.0/8], rules: [ssh_bruteforce]}\n"
                    "    - {field: user.name, values: [backup]}\n")
    det = load_config(path, environ={}).detection
    assert det.disabled_rules == ["ssh_bruteforce"]
    assert det.trusted_sources[0].field == "source.ip"
    assert det.trusted_sources[1].values == ["backup"]


def test_trusted_network_matching_is_strict() -> None:
    from agent.detection.tuning import Trusted, _Networks  # noqa: PLC0415

    nets = _Networks(["10.0.0.0/8", "198.51.100.7", "2001:db8::/32"])
    for text in ("10.1.2.3", "198.51.100.7", "2001:db8::1", "2001:DB8:0:0::ff",
                 "2001:db8::2%eth0"):
        assert nets(text), text
    for text in ("11.0.0.1", "198.51.100.8", "2001:db9::1", "10.1.2", "010.1.2.3x", "", "x",
                 "::ffff:10.1.2.3", "10.1.2.3/8", " 10.1.2.3"):
        assert not nets(text), text
    entry = Trusted("process.args", frozenset({"--backup"}).__contains__, None)
    assert entry.matches({"process.args": ["tar", "--backup"]})
    assert not entry.matches({"process.args": ["tar"]}) and not entry.matches({})
    assert Trusted("destination.port", frozenset({"22"}).__contains__, None).matches(
        {"destination.port": 22})


def test_rules_commands_show_config_tuning(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from agent.cli import main  # noqa: PLC0415

    config = tmp_path / "v.yaml"
    config.write_text(f"detection:\n  rule_paths: [{AUTH}]\n"
                      "  disabled_rules: [ssh_bruteforce, no_such_rule]\n")
    assert main(["rules", "validate", "--no-lint", "--config", str(config)]) == 0
    out = capsys.readouterr().out
    assert "detection.disabled_rules: no loaded rule 'no_such_rule'" in out
    assert main(["rules", "list", "--config", str(config)]) == 0
    row = next(line for line in capsys.readouterr().out.splitlines() if BRUTE in line)
    assert "DISABLED" in row


def test_daemon_applies_tuning_even_when_another_rule_file_is_broken(tmp_path: Path) -> None:
    """A broken local rule must not re-enable what the operator disabled."""
    import yaml  # noqa: PLC0415

    from agent.daemon import Daemon  # noqa: PLC0415

    broken = tmp_path / "local"
    broken.mkdir()
    (broken / "bad.yml").write_text("title: x\nid: [\n")
    config = tmp_path / "v.yaml"
    config.write_text(yaml.safe_dump({
        "agent": {"state_dir": str(tmp_path / "state")}, "metrics": {"enabled": False},
        "sinks": {"jsonl": {"path": str(tmp_path / "a.jsonl")}},
        "detection": {"rule_paths": [str(AUTH), str(broken)], "watch_rules": False,
                      "disabled_rules": ["ssh_bruteforce"]},
    }))
    daemon = Daemon(config, load_config(config, environ={}))
    try:
        assert BRUTE not in daemon.engine.ruleset.by_id and SPRAY in daemon.engine.ruleset.by_id
        assert daemon.registry.get_sample_value("vedette_rules_disabled") == 1
    finally:
        daemon.router.close()
