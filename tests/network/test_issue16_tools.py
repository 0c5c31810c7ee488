"""Issue #16 rows whose live half was missing: real tools between lab namespaces, the daemon
capturing in the target namespace, and ``vedette replay`` of the same target-side capture.

* hping3 SYN flood at 200 packets/s for 10 s: the low-severity flood signal, live and replayed.
* Slow scans. One probe a minute for 30 minutes (and one every 25-30 s over 100 ports) cannot
  run live in a test, so each runs live with real nmap at a feasible pace (``--scan-delay``) —
  live and replay of that capture must agree — and the same capture is then replayed with its
  timestamps rescaled (tests/network/pcaptime.py: every gap multiplied by one factor, chosen
  from the measured probe interval) to the pace of the row: the slow-horizon rule must name the
  scanner, with ATT&CK T1046, and no faster rule may fire. Timestamps are the only change; the
  packets are nmap's and the target's own.
"""

from __future__ import annotations

import itertools
import json
import os
import statistics
from collections.abc import Iterator

import pytest

from tests.network.pcaptime import probe_times, rescale
from tests.network.toolrun import PYTHON, TGT, Run, ToolLab, missing_tools, summarise

pytestmark = [pytest.mark.netns, pytest.mark.slow]

if os.geteuid() != 0:
    pytest.skip("the network lab needs root (namespaces, raw sockets)", allow_module_level=True)
if missing_tools():
    pytest.skip(f"lab tools missing: {', '.join(missing_tools())}", allow_module_level=True)

MINUTE_SCANNER, PACED_SCANNER = "198.18.0.70", "198.18.0.71"
FASTER = {"port_scan_vertical", "port_scan_paced", "port_scan_slow"}


@pytest.fixture(scope="module")
def tl(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ToolLab]:
    tl = ToolLab(tmp_path_factory.mktemp("issue16"))
    try:
        yield tl.up([MINUTE_SCANNER, PACED_SCANNER])
    finally:
        tl.down()


def test_syn_flood_200pps_for_10s_is_a_low_signal_live_and_replayed(tl: ToolLab) -> None:
    """hping3 -S -i u5000 -c 2000 to an open port (the README capture, now live too)."""
    tl.lab.spawn("tgt", "timeout", "60", PYTHON, "-m", "http.server", "8080", "--bind", TGT,
                 log="http.log")
    run = tl.record(TGT, "hping3", "-q", "-S", "-p", "8080", "-i", "u5000", "-c", "2000", TGT,
                    timeout=40, settle=2.0)
    live, replayed = run.compare(timeout=15)
    assert replayed == {("syn_flood_low", "", TGT)}, replayed
    assert replayed <= live
    # the flooder's own kernel resetting the SYN-ACKs is no scan of the flooder
    assert not {a for a in live if a[0] != "syn_flood_low"}, live
    assert run.techniques("syn_flood_low") == {"T1499"}  # subtechnique T1499.001


def test_low_rate_syn_flood_for_five_minutes_escalates_live_and_replayed(tl: ToolLab) -> None:
    """hping3 at 110 SYNs/s for 310 s to an open port: the low signal ``syn_flood_low`` within
    the first 10 s (>= 1000 SYNs in 10 s); every second is elevated (>= 50 SYNs, most of the
    service's inbound packets), so after 300 such seconds within 10 min it escalates to
    ``syn_flood_sustained`` (medium), live and by replay of the capture. (At 60/s only the
    escalation fires: it also covers floods under the low signal's rate.)
    The longest test of the suite (about 5.5 min): the rule's own horizon, not a sleep."""
    tl.lab.spawn("tgt", "timeout", "400", PYTHON, "-m", "http.server", "8081", "--bind", TGT,
                 log="http-sustained.log")
    run = tl.record(TGT, "hping3", "-q", "-S", "-p", "8081", "-i", "u9090", "-c", "34100", TGT,
                    timeout=360, settle=2.0)
    live, replayed = run.compare(timeout=20)
    assert ("syn_flood_sustained", "", TGT) in replayed, replayed
    assert ("syn_flood_low", "", TGT) in replayed, replayed
    assert replayed <= live, (live, replayed)
    assert run.techniques("syn_flood_sustained") == {"T1499"}
    order = [doc["rule"]["name"] for doc in tl.agent.alerts()  # in the order raised
             if doc.get("destination", {}).get("ip") == TGT
             and doc.get("destination", {}).get("port") == 8081]
    low = order.index("Low-rate SYN flood against one service")
    assert low < order.index("Sustained low-rate SYN flood against one service"), order


def _scan(tl: ToolLab, source: str, delay: str, ports: str, timeout: float) -> Run:
    return tl.record(source, "nmap", "-n", "-Pn", "-sS", "--scan-delay", delay,
                     "--max-retries", "0", "-S", source, "-e", "e0", "-p", ports, TGT,
                     timeout=timeout)


def _rescaled(run: Run, source: str, interval: float,
              keep: float | None = None) -> tuple[Run, float]:
    """``run``'s capture with its probes ``interval`` seconds apart (median), cut after ``keep``
    seconds, and the span of all its probes rescaled."""
    times = probe_times(run.pcap, source)
    assert len(times) >= 30, len(times)
    factor = interval / statistics.median(b - a for a, b in itertools.pairwise(times))
    out = rescale(run.pcap, run.pcap.with_suffix(".rescaled.pcap"), factor, keep)
    return Run(run.lab, out, source), (times[-1] - times[0]) * factor


def _replayed(run: Run) -> tuple[set[tuple[str, str, str]], list[dict[str, object]]]:
    docs = run.replay()
    return summarise(docs, run.address), docs


def test_one_probe_a_minute_over_30_ports_live_scaled_and_replayed_rescaled(tl: ToolLab) -> None:
    """nmap --scan-delay 1.5s over 30 ports live (45 s); replayed at one probe a minute."""
    run = _scan(tl, MINUTE_SCANNER, "1.5s", "1-30", 120)
    live, replayed = run.compare()
    assert live == replayed
    assert ("port_scan_very_slow", MINUTE_SCANNER, TGT) in replayed, replayed
    # only the first 30 minutes of the rescaled scan are replayed: caught within 30 minutes
    slow, span = _rescaled(run, MINUTE_SCANNER, 60.0, keep=30 * 60)
    assert span > 25 * 60
    summary, docs = _replayed(slow)
    assert summary == {("port_scan_very_slow", MINUTE_SCANNER, TGT)}, summary
    assert all("T1046" in json.dumps(d.get("threat")) for d in docs)


def test_one_probe_every_25_to_30_s_over_100_ports_live_scaled_and_replayed_rescaled(
        tl: ToolLab) -> None:
    """nmap --scan-delay 0.3s over 100 ports live (30 s); replayed at one probe every 27.5 s."""
    run = _scan(tl, PACED_SCANNER, "300ms", "1-100", 120)
    live, replayed = run.compare()
    assert live == replayed
    assert ("port_scan_vertical", PACED_SCANNER, TGT) in replayed, replayed
    slow, span = _rescaled(run, PACED_SCANNER, 27.5)
    assert span > 40 * 60
    summary, docs = _replayed(slow)
    assert ("port_scan_very_slow", PACED_SCANNER, TGT) in summary, summary
    assert not {a for a in summary if a[0] in FASTER}, summary
    assert all("T1046" in json.dumps(d.get("threat")) for d in docs)
