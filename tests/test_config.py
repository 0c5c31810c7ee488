"""Configuration loading: every error names file:line (or the env variable), nothing crashes."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import SecretStr, ValidationError

import agent.config as config_module
from agent.config import (
    MAX_CONFIG_BYTES,
    Config,
    ConfigErrors,
    effective,
    load_config,
    read_secret,
)

NO_ENV: dict[str, str] = {}


@pytest.fixture(autouse=True)
def _no_system_config(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Never read the machine's /etc/vedette/vedette.yaml from a unit test."""
    monkeypatch.setattr(config_module, "DEFAULT_CONFIG_PATH", tmp_path / "absent.yaml")


def write(tmp_path: Path, text: str, name: str = "vedette.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def errors_of(path: Path | None, environ: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigErrors) as info:
        load_config(path, environ=NO_ENV if environ is None else environ)
    return [e.location_text() for e in info.value.errors]


# ---------------------------------------------------------------------------- valid input


def test_no_file_means_defaults() -> None:
    assert load_config(None, environ=NO_ENV) == Config()


@pytest.mark.parametrize("text", ["", "# only a comment\n", "---\n"])
def test_empty_file_means_defaults(tmp_path: Path, text: str) -> None:
    assert load_config(write(tmp_path, text), environ=NO_ENV) == Config()


def test_file_values_are_applied(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "metrics:\n  port: 9999\n  listen_address: 0.0.0.0\n"
        "host_metrics:\n  exclude_interfaces: [docker*, veth*]\n"
        "sinks:\n  jsonl:\n    fsync: always\n",
    )
    config = load_config(path, environ=NO_ENV)
    assert config.metrics.port == 9999
    assert config.metrics.listen_address == "0.0.0.0"
    assert config.host_metrics.exclude_interfaces == ["docker*", "veth*"]
    assert config.sinks.jsonl.fsync == "always"
    assert config.pipeline == Config().pipeline


def test_a_section_with_every_option_commented_out_is_defaults(tmp_path: Path) -> None:
    path = write(tmp_path, "metrics:\n  # port: 9787\nsinks:\n  jsonl:\n    # fsync: always\n")
    assert load_config(path, environ=NO_ENV) == Config()


def test_config_is_frozen() -> None:
    config = Config()
    with pytest.raises(ValidationError):
        config.metrics.port = 1  # type: ignore[misc]


# ---------------------------------------------------------------------------- file errors


def test_unknown_key_names_file_line_and_key(tmp_path: Path) -> None:
    path = write(tmp_path, "metrics:\n  enabled: true\n  prot: 9999\n")
    assert errors_of(path) == [f"{path}:3: metrics.prot: unknown key"]


def test_unknown_section(tmp_path: Path) -> None:
    path = write(tmp_path, "agent:\n  name: x\nmetric:\n  port: 1\n")
    assert errors_of(path) == [f"{path}:3: metric: unknown key"]


def test_wrong_type_names_file_and_line(tmp_path: Path) -> None:
    path = write(tmp_path, "pipeline:\n  batch_size: 10\n  queue_size: lots\n")
    (err,) = errors_of(path)
    assert err.startswith(f"{path}:3: pipeline.queue_size: ")
    assert "integer" in err


def test_out_of_range_and_bad_literal(tmp_path: Path) -> None:
    path = write(tmp_path, "metrics:\n  port: 70000\nagent:\n  log_level: loud\n")
    errs = errors_of(path)
    assert len(errs) == 2
    assert errs[0].startswith(f"{path}:4: agent.log_level: ")
    assert errs[1].startswith(f"{path}:2: metrics.port: ")


def test_wrong_type_inside_a_list_points_at_the_item(tmp_path: Path) -> None:
    path = write(tmp_path, "host_metrics:\n  exclude_interfaces:\n    - lo\n    - [nested]\n")
    (err,) = errors_of(path)
    assert err.startswith(f"{path}:4: host_metrics.exclude_interfaces.1: ")


def test_every_error_is_reported_not_only_the_first(tmp_path: Path) -> None:
    path = write(tmp_path, "metrics:\n  port: x\n  bogus: 1\npipeline:\n  batch_size: 0\n")
    assert len(errors_of(path)) == 3


def test_cross_field_rule_points_at_its_section(tmp_path: Path) -> None:
    path = write(tmp_path, "agent:\n  name: a\nmetrics:\n  tls_cert_file: /etc/cert.pem\n")
    (err,) = errors_of(path)
    assert err.startswith(f"{path}:3: metrics: ")
    assert "tls_cert_file and tls_key_file go together" in err


def test_basic_auth_needs_both_halves(tmp_path: Path) -> None:
    path = write(tmp_path, "metrics:\n  basic_auth_username: prom\n")
    (err,) = errors_of(path)
    assert "basic_auth_username needs basic_auth_password" in err


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ("metrics:\n  port: 1\n bad indent: [\n", 3),
        ("agent:\n\tname: tab\n", 2),
        ("a: [1, 2\nb: 3\n", 2),
        ("metrics: {port: 1\n", 2),
    ],
)
def test_bad_yaml_names_file_and_line(tmp_path: Path, text: str, line: int) -> None:
    path = write(tmp_path, text)
    (err,) = errors_of(path)
    assert err.startswith(f"{path}:{line}: invalid YAML: ")


def test_unsafe_tag_is_refused_with_its_line(tmp_path: Path) -> None:
    path = write(tmp_path, "agent:\n  name: !!python/object/apply:os.system [id]\n")
    (err,) = errors_of(path)
    assert err.startswith(f"{path}:2: invalid YAML: could not determine a constructor")


@pytest.mark.parametrize("text", ["agent:\n  name: 2001-13-45\n", "metrics:\n  port: !!int x\n"])
def test_bad_scalar_values_are_config_errors(tmp_path: Path, text: str) -> None:
    path = write(tmp_path, text)
    (err,) = errors_of(path)
    assert err.startswith(f"{path}: invalid YAML value: ")


def test_yaml_alias_bomb_is_refused(tmp_path: Path) -> None:
    rows = ['a0: &a0 ["x", "x", "x", "x", "x", "x", "x", "x", "x", "x"]']
    rows += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, 9)]
    path = write(tmp_path, "\n".join(rows) + "\n")
    (err,) = errors_of(path)
    assert "YAML nodes once aliases are expanded (YAML bomb?)" in err
    assert err.startswith(f"{path}:5: ")


def test_recursive_alias_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, "agent: &a\n  labels: *a\n")
    (err,) = errors_of(path)
    assert err == f"{path}:2: recursive alias *a"


def test_deep_nesting_is_refused_before_parsing(tmp_path: Path) -> None:
    # 100k levels used to overflow the C stack in libyaml's composer (segfault)
    path = write(tmp_path, "[" * 100_000 + "]" * 100_000)
    (err,) = errors_of(path)
    # Refused at line 1 with one error and no crash. Who refuses first depends on the YAML
    # library: our event-stream guard, or libyaml's own limit (PyYAML >= 6.0.4).
    assert err.startswith(f"{path}:1: ")
    assert "nesting deeper than" in err or "exceeded maximum nesting depth" in err


@pytest.mark.parametrize(("text", "line"), [("- metrics\n- agent\n", 1), ("\n\njust text\n", 3)])
def test_top_level_must_be_a_mapping(tmp_path: Path, text: str, line: int) -> None:
    path = write(tmp_path, text)
    assert errors_of(path) == [f"{path}:{line}: top level must be a mapping of sections"]


def test_file_over_one_mib_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, "# " + "x" * MAX_CONFIG_BYTES + "\n")
    size = path.stat().st_size
    assert errors_of(path) == [
        f"{path}: file is {size} bytes, larger than the {MAX_CONFIG_BYTES} bytes limit"]


def test_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes(b"agent:\n  name: caf\xe9\n")
    assert errors_of(path) == [f"{path}: not UTF-8 (byte 18)"]


def test_missing_file_is_an_error_when_named(tmp_path: Path) -> None:
    path = tmp_path / "nope.yaml"
    assert errors_of(path) == [f"{path}: cannot read: No such file or directory"]


def test_default_path_is_used_when_present(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    default = write(tmp_path, "metrics:\n  port: 9100\n", name="default.yaml")
    monkeypatch.setattr(config_module, "DEFAULT_CONFIG_PATH", default)
    assert load_config(None, environ=NO_ENV).metrics.port == 9100


# ---------------------------------------------------------------------------- environment


def test_env_overrides_file(tmp_path: Path) -> None:
    path = write(tmp_path, "metrics:\n  port: 9100\n")
    config = load_config(path, environ={"VEDETTE_METRICS__PORT": "9200"})
    assert config.metrics.port == 9200


def test_env_nested_keys_and_yaml_values() -> None:
    config = load_config(
        None,
        environ={
            "VEDETTE_SINKS__JSONL__MAX_BYTES": "2048",
            "VEDETTE_SINKS__STDOUT__ENABLED": "true",
            "VEDETTE_AGENT__LABELS__TEAM": "blue",
            "VEDETTE_HOST_METRICS__EXCLUDE_INTERFACES": "[docker*, lo]",
            "VEDETTE_AGENT__NAME": "2001-13-45",  # not a valid YAML timestamp: kept as text
            "VEDETTE_UNRELATED": "ignored (no section separator)",
            "OTHER__THING": "ignored (no prefix)",
        },
    )
    assert config.sinks.jsonl.max_bytes == 2048
    assert config.sinks.stdout.enabled is True
    assert config.agent.labels == {"team": "blue"}
    assert config.host_metrics.exclude_interfaces == ["docker*", "lo"]
    assert config.agent.name == "2001-13-45"


def test_env_merges_with_file_section(tmp_path: Path) -> None:
    path = write(tmp_path, "agent:\n  labels:\n    env: prod\n")
    config = load_config(path, environ={"VEDETTE_AGENT__LABELS__TEAM": "red"})
    assert config.agent.labels == {"env": "prod", "team": "red"}


def test_env_error_names_the_variable(tmp_path: Path) -> None:
    path = write(tmp_path, "metrics:\n  port: 9100\n")
    errs = errors_of(
        path,
        {"VEDETTE_METRICS__PORT": "not-a-port", "VEDETTE_METRICS__NOPE": "1"},
    )
    assert sorted(errs) == [
        "<env:VEDETTE_METRICS__NOPE>: metrics.nope: unknown key",
        "<env:VEDETTE_METRICS__PORT>: metrics.port: Input should be a valid integer, "
        "unable to parse string as an integer",
    ]


def test_env_nested_error_names_the_variable() -> None:
    errs = errors_of(None, {"VEDETTE_SINKS__JSONL__FSYNC": "sometimes"})
    (err,) = errs
    assert err.startswith("<env:VEDETTE_SINKS__JSONL__FSYNC>: sinks.jsonl.fsync: ")


def test_env_empty_key_is_an_error() -> None:
    assert errors_of(None, {"VEDETTE_METRICS__": "1"}) == [
        "<env:VEDETTE_METRICS__>: empty key in variable name"
    ]


def test_file_and_env_errors_are_reported_together(tmp_path: Path) -> None:
    path = write(tmp_path, "pipeline:\n  batch_size: 0\n")
    errs = errors_of(path, {"VEDETTE_METRICS__PORT": "-1"})
    assert len(errs) == 2
    assert any(e.startswith(f"{path}:2: pipeline.batch_size") for e in errs)
    assert any(e.startswith("<env:VEDETTE_METRICS__PORT>: metrics.port") for e in errs)


# ---------------------------------------------------------------------------- secrets


def test_secret_from_file_first_line_stripped(tmp_path: Path) -> None:
    secret = write(tmp_path, "  s3cret  \nsecond line ignored\n", name="pw")
    path = write(
        tmp_path,
        f"metrics:\n  basic_auth_username: prom\n  basic_auth_password_file: {secret}\n",
    )
    section = load_config(path, environ=NO_ENV).metrics
    assert read_secret(section.basic_auth_password, section.basic_auth_password_file) == "s3cret"


def test_secret_file_wins_over_inline(tmp_path: Path) -> None:
    secret = write(tmp_path, "from-file\n", name="pw")
    assert read_secret(SecretStr("inline"), secret) == "from-file"
    assert read_secret(SecretStr("inline"), None) == "inline"
    assert read_secret(None, None) is None


@pytest.mark.parametrize("content", [None, b"", b"\xff\xfe"])
def test_unreadable_secret_file_is_a_config_error(tmp_path: Path, content: bytes | None) -> None:
    secret = tmp_path / "pw"
    if content is not None:
        secret.write_bytes(content)
    with pytest.raises(ConfigErrors) as info:
        read_secret(None, secret)
    (err,) = info.value.errors
    assert err.path == str(secret)
    assert "cannot read secret file" in err.reason


def test_secrets_are_masked_in_effective(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "metrics:\n  basic_auth_username: prom\n  basic_auth_password: hunter2\n"
        "elasticsearch:\n  api_key: key-123\n",
    )
    config = load_config(path, environ=NO_ENV)
    shown = effective(config)
    assert "hunter2" not in repr(shown) and "key-123" not in repr(shown)
    assert shown["metrics"]["basic_auth_password"] == "********"
    assert shown["elasticsearch"]["api_key"] == "********"
    assert shown["metrics"]["basic_auth_username"] == "prom"
    assert shown["elasticsearch"]["api_key_file"] is None
    # the secret itself is still there for the code that needs it
    assert config.metrics.basic_auth_password is not None
    assert config.metrics.basic_auth_password.get_secret_value() == "hunter2"


def test_secret_from_environment_is_masked() -> None:
    config = load_config(
        None,
        environ={
            "VEDETTE_ELASTICSEARCH__USERNAME": "elastic",
            "VEDETTE_ELASTICSEARCH__PASSWORD": "env-pass",
        },
    )
    shown = effective(config)
    assert "env-pass" not in repr(shown)
    assert shown["elasticsearch"]["password"] == "********"
    assert shown["elasticsearch"]["username"] == "elastic"


def test_secret_file_paths_are_shown_not_masked(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "metrics:\n  basic_auth_username: prom\n  basic_auth_password_file: /run/secrets/pw\n",
    )
    shown = effective(load_config(path, environ=NO_ENV))
    assert shown["metrics"]["basic_auth_password_file"] == "/run/secrets/pw"
    assert shown["metrics"]["basic_auth_password"] is None


def test_secret_never_in_repr_or_errors(tmp_path: Path) -> None:
    path = write(tmp_path, "metrics:\n  basic_auth_password: hunter2\n")
    errs = errors_of(path)  # password without username
    assert "hunter2" not in "\n".join(errs)
    config = load_config(path, environ={"VEDETTE_METRICS__BASIC_AUTH_USERNAME": "u"})
    assert "hunter2" not in repr(config)


# ---------------------------------------------------------------------------- fuzz


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    st.text(
        alphabet=st.sampled_from(list("abmetricsport:_ -[]{}&*!,'\"\n\t#0123456789.|>?%@`\\")),
        max_size=120,
    )
)
def test_any_text_gives_a_config_or_config_errors(tmp_path: Path, text: str) -> None:
    path = write(tmp_path, text, name="fuzz.yaml")
    try:
        load_config(path, environ=NO_ENV)
    except ConfigErrors as exc:
        assert exc.errors
        for err in exc.errors:
            assert err.location_text().startswith(str(path))


@settings(max_examples=100, deadline=None)
@given(st.dictionaries(st.sampled_from(
    ["VEDETTE_METRICS__PORT", "VEDETTE_AGENT__NAME", "VEDETTE_AGENT__LABELS",
     "VEDETTE_PIPELINE__QUEUE_SIZE", "VEDETTE_X__Y__Z", "VEDETTE_SINKS__JSONL"]),
    st.text(max_size=20)))
def test_any_environment_gives_a_config_or_env_errors(environ: dict[str, str]) -> None:
    try:
        load_config(None, environ=environ)
    except ConfigErrors as exc:
        for err in exc.errors:
            assert err.location_text().startswith("<env:VEDETTE_")


@pytest.mark.parametrize("ports", [[70000], [-1], [53, 65536]])
@pytest.mark.parametrize("option", ["dns_ports", "ssh_ports"])
def test_analyzer_ports_outside_0_65535_are_refused(option: str, ports: list[int]) -> None:
    """A port table indexed by an out-of-range port crashed the DNS analyzer (70000) or marked
    port 65535 (-1): the config refuses them with the option's path."""
    with pytest.raises(ValidationError) as exc:
        Config.model_validate({"network": {option: ports}})
    assert f"network.{option}" in str(exc.value)
    assert Config.model_validate({"network": {option: [0, 65535]}}).network.model_dump()[
        option] == [0, 65535]
