"""Socket tables, listener/outbound diff with owners; kernel module diff."""

from __future__ import annotations

import socket
from pathlib import Path

from agent.collectors.host.kmod import KernelModuleCollector, parse_modules
from agent.collectors.host.sockets import SocketsCollector, parse_proc_net

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "proc"
TCP = (FIXTURES / "net_tcp").read_text()
TCP6 = (FIXTURES / "net_tcp6").read_text()


def test_parse_proc_net_v4_and_v6() -> None:
    rows = parse_proc_net(TCP, "tcp", False)
    assert [(r.local_ip, r.local_port, r.remote_ip, r.remote_port, r.state, r.uid, r.inode)
            for r in rows] == [("127.0.0.1", 3306, "0.0.0.0", 0, "0A", 120, 23456),
                               ("192.168.0.5", 54000, "198.18.19.10", 443, "01", 1000, 777)]
    v6 = parse_proc_net(TCP6, "tcp", True)
    assert [(r.local_ip, r.local_port) for r in v6] == [("::", 22), ("127.0.0.1", 8080)]


def _fake_proc(tmp_path: Path, tcp: str) -> Path:
    proc = tmp_path / "proc"
    (proc / "net").mkdir(parents=True, exist_ok=True)
    (proc / "net" / "tcp").write_text(tcp)
    fd = proc / "4321" / "fd"
    fd.mkdir(parents=True, exist_ok=True)
    if not (fd / "3").is_symlink():
        (fd / "3").symlink_to("socket:[9999]")
        (fd / "4").symlink_to("socket:[8888]")
        (proc / "4321" / "comm").write_text("nc\n")
        (proc / "4321" / "exe").symlink_to("/usr/bin/nc.openbsd")
    return proc


def test_new_listener_and_outbound_connection_with_owner(tmp_path: Path) -> None:
    header = TCP.splitlines()[0] + "\n"
    proc = _fake_proc(tmp_path, header)
    collector = SocketsCollector(proc_root=proc, clock=lambda: 5.0, host_name="h")
    assert collector.collect() == []  # baseline
    listener = ("   0: 00000000:115C 00000000:0000 0A 00000000:00000000 00:00000000 00000000"
                "     0        0 9999 1 0 100 0 0 10 0\n")
    outbound = ("   1: 0500A8C0:D2F0 0A1312C6:0D05 01 00000000:00000000 00:00000000 00000000"
                "     0        0 8888 1 0 100 0 0 10 0\n")
    (proc / "net" / "tcp").write_text(header + listener + outbound)
    events = collector.collect()
    assert [e.logsource for e in events] == [("vedette", "listening_socket", None),
                                             ("linux", "network_connection", None)]
    lst, conn = events[0].fields, events[1].fields
    assert (lst["event.action"], lst["server.port"], lst["process.name"], lst["process.pid"]) == (
        "listening_started", 4444, "nc", 4321)
    assert lst["vedette.socket.wildcard"] is True and lst["user.name"] == "root"
    assert (conn["destination.ip"], conn["destination.port"], conn["network.direction"]) == (
        "198.18.19.10", 3333, "outbound")
    assert conn["process.executable"] == "/usr/bin/nc.openbsd"
    assert collector.collect() == []  # nothing new
    (proc / "net" / "tcp").write_text(header)
    (stopped,) = collector.collect()
    assert stopped.get("event.action") == "listening_stopped"


def test_outbound_destinations_are_reported_once_per_ttl(tmp_path: Path) -> None:
    header = TCP.splitlines()[0] + "\n"
    proc = _fake_proc(tmp_path, header)
    now = [0.0]
    collector = SocketsCollector(proc_root=proc, clock=lambda: now[0], destination_ttl_seconds=600)
    collector.collect()

    def conn(local_port: int) -> str:
        return (f"   1: 0500A8C0:{local_port:04X} 0A1312C6:0CEA 01 00000000:00000000 "
                "00:00000000 00000000     0        0 8888 1 0 100 0 0 10 0\n")

    (proc / "net" / "tcp").write_text(header + conn(50000))
    now[0] = 10
    assert [e.get("destination.port") for e in collector.collect()] == [3306]
    (proc / "net" / "tcp").write_text(header + conn(50001))  # new connection, same database
    now[0] = 20
    assert collector.collect() == []
    now[0] = 700
    assert [e.get("destination.port") for e in collector.collect()] == [3306]


def test_real_listener_is_seen() -> None:
    collector = SocketsCollector(include_loopback=True)
    collector.collect()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        events = [e for e in collector.collect() if e.get("server.port") == port]
    assert len(events) == 1 and events[0].get("process.executable")


MODULES = """ext4 1081344 1 - Live 0xffffffffc0a00000
rootkit 16384 0 - Live 0xffffffffc0b00000 (OE)
bad line
"""


def test_kernel_module_diff(tmp_path: Path) -> None:
    assert set(parse_modules(MODULES)) == {"ext4", "rootkit"}
    assert parse_modules(MODULES)["rootkit"].taints == "OE"
    proc = tmp_path
    (proc / "modules").write_text(MODULES.splitlines()[0] + "\n")
    collector = KernelModuleCollector(proc_root=proc, clock=lambda: 1.0)
    assert collector.collect() == []
    (proc / "modules").write_text(MODULES)
    (event,) = collector.collect()
    assert (event.get("event.action"), event.get("kernel_module.name"),
            event.get("kernel_module.out_of_tree"), event.get("kernel_module.unsigned")) == (
        "loaded", "rootkit", True, True)
    (proc / "modules").write_text("")
    assert sorted(e.get("event.action") for e in collector.collect()) == ["unloaded", "unloaded"]
