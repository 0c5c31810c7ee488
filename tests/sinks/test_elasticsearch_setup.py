"""Index setup (ILM, component/index templates): idempotent, on reconnect, without privilege;
``vedette es setup|status``; the 8.x compatibility option."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import pytest
import yaml

from agent.commands import es as es_command
from agent.sinks.es_docs import alerts_stream
from agent.sinks.es_templates import desired_objects
from tests.es_server import Cluster, FakeElasticsearch
from tests.es_server.helpers import (
    make_alert,
    make_config,
    open_sink,
    sample,
    wait_until,
)


def _config_file(tmp_path: Path, server: FakeElasticsearch, **es: object) -> Path:
    path = tmp_path / "vedette.yaml"
    section = {"hosts": [server.url], "spool_dir": str(tmp_path / "spool"), **es}
    path.write_text(yaml.safe_dump({"agent": {"state_dir": str(tmp_path / "state")},
                                    "elasticsearch": section}))
    return path


def _run(func: object, config: Path) -> int:
    assert callable(func)
    result = func(argparse.Namespace(config=config))
    assert isinstance(result, int)
    return result


def test_setup_command_installs_once_idempotently(tmp_path: Path, server: FakeElasticsearch,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    config = _config_file(tmp_path, server)
    assert _run(es_command.setup_command, config) == 0
    first = capsys.readouterr().out
    assert first.count("created") == len(desired_objects())
    assert _run(es_command.setup_command, config) == 0
    second = capsys.readouterr().out
    assert second.count("unchanged") == len(desired_objects())
    puts = server.cluster.template_puts
    assert len(puts) == len(desired_objects()) and set(puts.values()) == {1}
    tmpl = server.cluster.index_templates["logs-vedette.alerts"]
    assert tmpl["data_stream"] == {} and tmpl["priority"] > 200
    props = server.cluster.component_templates["vedette@mappings"]["template"]["mappings"][
        "properties"]
    assert props["source"]["properties"]["ip"]["type"] == "ip"
    assert props["source"]["properties"]["geo"]["properties"]["location"]["type"] == "geo_point"
    assert props["process"]["properties"]["command_line"]["type"] == "wildcard"
    assert props["event"]["properties"]["severity"]["type"] == "long"
    assert props["@timestamp"]["type"] == "date"


def test_sink_installs_at_start_and_again_after_reconnect(tmp_path: Path,
                                                          server: FakeElasticsearch) -> None:
    config = make_config(tmp_path, [server.url])
    sink = open_sink(config)
    try:
        sink.emit(make_alert(1))
        assert wait_until(sink.idle, 10)
        gets = len([r for r in server.requests if r.path.startswith("/_ilm")])
        server.set_down(True)
        # An operator deletes our template while we are away: reinstalled on reconnect.
        del server.cluster.index_templates["logs-vedette.alerts"]
        sink.emit(make_alert(2))
        assert wait_until(lambda: sample(sink.metrics, "vedette_es_request_failures_total",
                                         reason="connection") >= 1, 10)
        server.set_down(False)
        assert wait_until(sink.idle, 10)
    finally:
        sink.close()
    assert len([r for r in server.requests if r.path.startswith("/_ilm")]) > gets
    assert "logs-vedette.alerts" in server.cluster.index_templates
    assert server.cluster.template_puts["ilm/vedette"] == 1  # unchanged objects: no PUT
    assert server.cluster.template_puts["index/logs-vedette.alerts"] == 2


def test_without_privilege_one_warning_and_shipping_goes_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    srv = FakeElasticsearch(users={"writer": ("pw", frozenset({"write", "read"}))}).start()
    try:
        config = make_config(tmp_path, [srv.url], username="writer", password="pw")
        sink = open_sink(config)
        try:
            for i in range(3):
                sink.emit(make_alert(i))
                assert wait_until(sink.idle, 10)
            srv.set_down(True)
            sink.emit(make_alert(3))
            assert wait_until(lambda: sample(sink.metrics, "vedette_es_reachable") == 0, 10)
            srv.set_down(False)
            assert wait_until(sink.idle, 10)
        finally:
            sink.close()
        assert len(srv.cluster.docs(alerts_stream("default"))) == 4
        ds = srv.cluster.get_data_stream(alerts_stream("default"))
        assert ds is not None and ds["template"] == "logs"  # the built-in logs-*-* applied
        warnings = [r for r in caplog.records if "no privilege" in r.getMessage()]
        assert len(warnings) == 1
        assert sample(sink.metrics, "vedette_es_setup_total", result="forbidden") == 2
        file = _config_file(tmp_path, srv, username="writer", password="pw")
        assert _run(es_command.setup_command, file) == 3
        assert "privilege" in capsys.readouterr().err
    finally:
        srv.stop()


def test_setup_and_status_exit_codes(tmp_path: Path, server: FakeElasticsearch,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    config = _config_file(tmp_path, server)
    assert _run(es_command.status_command, config) == 0
    assert "reachable, version 9.1.0" in capsys.readouterr().out
    server.set_down(True)
    assert _run(es_command.setup_command, config) == 3
    assert _run(es_command.status_command, config) == 3
    no_hosts = tmp_path / "empty.yaml"
    no_hosts.write_text("elasticsearch: {hosts: []}\n")
    assert _run(es_command.setup_command, no_hosts) == 2
    bad = tmp_path / "bad.yaml"
    bad.write_text("elasticsearch: {hosts: [localhost:9200]}\n")
    assert _run(es_command.setup_command, bad) == 2
    assert "must start with http" in capsys.readouterr().err


def test_compatibility_8x(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    srv = FakeElasticsearch(cluster=Cluster(version="8.17.0")).start()
    try:
        # The 9.x client's default media type is refused by an 8.x server…
        config = make_config(tmp_path / "a", [srv.url])
        sink = open_sink(config)
        try:
            sink.emit(make_alert(1))
            assert wait_until(lambda: sample(sink.metrics, "vedette_es_request_failures_total",
                                             reason="bad_request") >= 1, 10)
        finally:
            sink.close()
        # …and accepted with compatibility_8x.
        config = make_config(tmp_path / "b", [srv.url], compatibility_8x=True)
        sink = open_sink(config)
        try:
            sink.emit(make_alert(1))
            assert wait_until(sink.idle, 10)
        finally:
            sink.close()
        assert len(srv.cluster.docs(alerts_stream("default"))) == 1
        assert all("compatible-with=8" in r.headers["content-type"]
                   for r in srv.requests if r.status == 200 and r.method == "PUT")
    finally:
        srv.stop()


def test_setup_with_wrong_credentials(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    srv = FakeElasticsearch(users={"admin": ("right-pw", frozenset({"manage_templates"}))})
    srv.start()
    try:
        config = _config_file(tmp_path, srv, username="admin", password="wrong-pw")
        assert _run(es_command.setup_command, config) == 3
        err = capsys.readouterr().err
        assert "HTTP 401" in err and "wrong-pw" not in err
        assert not srv.cluster.template_puts
    finally:
        srv.stop()
