"""`vedette config check` checks what `run` needs beyond the schema (agent/preflight.py):
files, addresses, the BPF filter, rule paths and rules, the port with --live; it masks
credentials inside URLs; every problem is `file:line: reason` and exit 1."""

from __future__ import annotations

import os
import shutil
import socket
from pathlib import Path

import pytest
import yaml

import agent.config as config_module
from agent.cli import main


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(config_module, "DEFAULT_CONFIG_PATH", tmp_path / "absent.yaml")
    for name in list(os.environ):
        if name.startswith("VEDETTE_"):
            monkeypatch.delenv(name)


def run_check(capsys: pytest.CaptureFixture[str], tmp_path: Path, text: str,
              *extra: str) -> tuple[int, str, list[str]]:
    """config check on ``text``: exit code, stdout, stderr lines (never a traceback)."""
    path = tmp_path / "vedette.yaml"
    path.write_text(text)
    code = main(["config", "check", "--config", str(path), *extra])
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    return code, captured.out, captured.err.splitlines()


def test_every_unusable_file_is_named_with_its_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    empty = tmp_path / "empty-secret"
    empty.write_text("\n")
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate\n")
    text = (
        "metrics:\n"
        "  basic_auth_username: prom\n"
        f"  basic_auth_password_file: {tmp_path}/no-password\n"         # line 3
        f"  tls_cert_file: {garbage}\n"                                 # line 4
        f"  tls_key_file: {garbage}\n"
        "elasticsearch:\n"
        "  hosts: [https://es.example:9200]\n"
        f"  api_key_file: {empty}\n"                                    # line 8
        f"  ca_file: {tmp_path}/no-ca.pem\n"                            # line 9
        "threat_intel:\n"
        f"  files: [{tmp_path}/no-feed.txt]\n"                          # line 11
    )
    code, out, err = run_check(capsys, tmp_path, text)
    cfg = tmp_path / "vedette.yaml"
    assert code == 1
    assert err == [
        f"{cfg}:3: metrics.basic_auth_password_file: {tmp_path}/no-password: cannot read: "
        "No such file or directory",
        f"{cfg}:8: elasticsearch.api_key_file: {empty}: empty (the secret is the file's "
        "first line)",
        *[e for e in err if e.startswith(f"{cfg}:4: metrics.tls_cert_file: {garbage} / "
                                         f"{garbage}: cannot load: ")][:1],
        *[e for e in err if e.startswith(f"{cfg}:9: elasticsearch.ca_file: {tmp_path}/no-ca.pem"
                                         ": cannot load: ")][:1],
        f"{cfg}:11: threat_intel.files.0: {tmp_path}/no-feed.txt: cannot read: "
        "No such file or directory",
    ]
    assert "# checks: 5 problem(s)" in out


def test_addresses_and_cidrs_are_parsed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = ("metrics:\n  listen_address: 127.0.0.300\nnetwork:\n"
            "  local_networks: [10.0.0.0/8, 10.0.0.0/33]\n  gateways: [gw.example]\n")
    code, _, err = run_check(capsys, tmp_path, text)
    cfg = tmp_path / "vedette.yaml"
    assert code == 1
    assert err == [
        f"{cfg}:2: metrics.listen_address: '127.0.0.300' is not an IP address",
        f"{cfg}:4: network.local_networks.1: '10.0.0.0/33' is not a CIDR network",
        f"{cfg}:5: network.gateways.0: 'gw.example' is not an IP address",
    ]


@pytest.mark.skipif(shutil.which("tcpdump") is None, reason="tcpdump compiles BPF filters")
def test_the_bpf_filter_is_compiled(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_check(capsys, tmp_path, "capture:\n  bpf_filter: 'tcp port banana'\n")
    assert code == 1 and len(err) == 1
    assert err[0].startswith(f"{tmp_path / 'vedette.yaml'}:2: capture.bpf_filter: ")
    code, _, err = run_check(capsys, tmp_path, "capture:\n  bpf_filter: 'not port 22'\n")
    assert (code, err) == (0, [])


def test_rule_paths_are_checked_and_the_rules_loaded(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run_check(capsys, tmp_path, f"detection:\n  rule_paths: [{tmp_path}/nope]\n")
    assert code == 1
    assert err == [f"{tmp_path / 'vedette.yaml'}: {tmp_path}/nope: no such file or directory "
                   "(detection.rule_paths)"]
    empty = tmp_path / "rules"
    empty.mkdir()
    code, out, err = run_check(
        capsys, tmp_path, f"detection:\n  shipped_rules: false\n  rule_paths: [{empty}]\n")
    assert code == 1 and len(err) == 1 and "no rules loaded" in err[0]
    (empty / "broken.yml").write_text("title: [oops\n")
    code, out, err = run_check(
        capsys, tmp_path, f"detection:\n  shipped_rules: false\n  rule_paths: [{empty}]\n")
    assert code == 1 and err[0].startswith(f"rule error: {empty / 'broken.yml'}:")
    code, out, err = run_check(capsys, tmp_path, "agent:\n  name: web1\n")
    assert (code, err) == (0, [])
    assert "# rules: " in out and " 0 errors" in out
    assert out.rstrip().endswith("# checks: files, addresses, filter, rules: ok")


def test_live_checks_that_the_metrics_port_is_free(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        text = f"metrics:\n  port: {port}\n"
        assert run_check(capsys, tmp_path, text)[0] == 0  # without --live: not checked
        code, _, err = run_check(capsys, tmp_path, text, "--live")
    assert code == 1
    assert err == [f"{tmp_path / 'vedette.yaml'}:2: metrics.port: cannot listen on "
                   f"127.0.0.1:{port}: the port is already in use (another vedette?)"]


def test_credentials_inside_urls_are_masked(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = ("elasticsearch:\n  hosts: ['http://elastic:pa55w0rd@es1.example:9200', "
            "'https://es2.example']\n")
    code, out, err = run_check(capsys, tmp_path, text)
    assert code == 0, err
    assert "pa55w0rd" not in out + "".join(err)
    shown = yaml.safe_load(out)
    assert shown["elasticsearch"]["hosts"] == ["http://elastic:********@es1.example:9200",
                                               "https://es2.example"]


def test_rule_errors_alone_do_not_claim_run_would_refuse(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`run` starts with a broken local filter (it logs the rule error); check says so."""
    local = tmp_path / "local"
    local.mkdir()
    (local / "f.yml").write_text(
        "title: bad filter\nid: 8f5a3d0e-2b7c-4e91-a6d4-3c2b1a0f9e88\n"
        "logsource: {product: linux, service: sshd}\n"
        "filter:\n  rules: [ssh_brutefroce]\n  s:\n    source.ip|cidr: 198.51.100.0/29\n"
        "  condition: not s\n")
    code, out, err = run_check(capsys, tmp_path, f"detection:\n  rule_paths: [{local}]\n")
    assert code == 1
    assert len(err) == 1 and "unknown rule 'ssh_brutefroce'" in err[0]
    assert "would refuse to start" not in out
    assert out.rstrip().endswith("would start without the rules and filters in error")


def test_unknown_disabled_rule_is_a_note_not_a_failure(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A typo in disabled_rules is shown by check (the fleet's validation step), exit 0."""
    code, out, err = run_check(capsys, tmp_path,
                               "detection:\n  disabled_rules: [ssh_brutefroce]\n")
    assert (code, err) == (0, [])
    assert "# note: detection.disabled_rules: no loaded rule 'ssh_brutefroce'" in out


def test_a_bad_trusted_source_cidr_is_one_plain_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The schema's own validator message, located, without pydantic's "Value error," prefix."""
    code, _, err = run_check(capsys, tmp_path,
                             "detection:\n  trusted_sources:\n    - cidrs: [10.0.0.300/8]\n")
    assert code == 1
    assert err[0] == (f"{tmp_path / 'vedette.yaml'}:3: detection.trusted_sources.0: "
                      "'10.0.0.300/8' is not an IP address or network")


def test_disabling_every_rule_fails_check_as_it_refuses_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rules = tmp_path / "rules"
    rules.mkdir()
    shutil.copy(Path(__file__).parents[1] / "rules/auth/ssh_bruteforce.yml", rules)
    code, out, err = run_check(
        capsys, tmp_path, f"detection:\n  shipped_rules: false\n  rule_paths: [{rules}]\n"
        "  disabled_rules: [ssh_auth_failure]\n")
    assert code == 1
    assert len(err) == 1 and "no rules loaded" in err[0]
    assert out.rstrip().endswith("`vedette run` would refuse to start")
