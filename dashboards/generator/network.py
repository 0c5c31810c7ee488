"""Network: interface traffic, capture statistics and network alerts of one server."""

from __future__ import annotations

from generator.board import Layout, dashboard, query_var, restart_annotation, standard_vars
from generator.grafana import (
    SEL,
    Json,
    bargauge,
    or_zero,
    stat,
    target,
    timeseries,
    titled,
)

UID = "vedette-network"
RATE = "$__rate_interval"
IF = f'{SEL}, interface=~"$interface"'
RULES = f'{SEL}, rule=~"$rules"'


def _interfaces(lay: Layout) -> None:
    lay.row("Interfaces")
    lay.add(timeseries(
        "Traffic by interface",
        "Bytes received (in) and sent (out) per second on each selected interface, from the "
        "kernel counters.",
        [
            target(f"sum by (interface) "
                   f"(rate(vedette_host_network_receive_bytes_total{{{IF}}}[{RATE}]))",
                   "{{interface}} in"),
            target(f"sum by (interface) "
                   f"(rate(vedette_host_network_transmit_bytes_total{{{IF}}}[{RATE}]))",
                   "{{interface}} out"),
        ],
        "Bps",
    ), 12, 8)
    lay.add(timeseries(
        "Packets by interface",
        "Packets received and sent per second on each selected interface. A packet rate far "
        "above the byte rate suggests a flood of small packets (SYN/ICMP flood).",
        [
            target(f"sum by (interface) "
                   f"(rate(vedette_host_network_receive_packets_total{{{IF}}}[{RATE}]))",
                   "{{interface}} in"),
            target(f"sum by (interface) "
                   f"(rate(vedette_host_network_transmit_packets_total{{{IF}}}[{RATE}]))",
                   "{{interface}} out"),
        ],
        "pps",
    ), 12, 8)
    lay.add(timeseries(
        "Interface errors",
        "Receive and transmit errors per second (bad frames, driver errors).",
        [
            target(f"sum by (interface) "
                   f"(rate(vedette_host_network_receive_errors_total{{{IF}}}[{RATE}]))",
                   "{{interface}} rx errors"),
            target(f"sum by (interface) "
                   f"(rate(vedette_host_network_transmit_errors_total{{{IF}}}[{RATE}]))",
                   "{{interface}} tx errors"),
        ],
        "pps", steps=((1, "orange"),),
    ), 12, 8)
    lay.add(timeseries(
        "Kernel drops",
        "Packets the kernel dropped on each interface (buffers full); during a flood this "
        "rises before anything else.",
        [
            target(f"sum by (interface) "
                   f"(rate(vedette_host_network_receive_drop_total{{{IF}}}[{RATE}]))",
                   "{{interface}} rx dropped"),
            target(f"sum by (interface) "
                   f"(rate(vedette_host_network_transmit_drop_total{{{IF}}}[{RATE}]))",
                   "{{interface}} tx dropped"),
        ],
        "pps", steps=((1, "orange"),),
    ), 12, 8)


def _capture(lay: Layout) -> None:
    lay.row("Capture")
    lay.add(stat(
        "Interfaces captured",
        "Interfaces the capture collector reads packets from (0: network detection is off, "
        "e.g. no CAP_NET_RAW).",
        [target(f"max(vedette_capture_interfaces{{{SEL}}})")],
        steps=((1, "green"),), base="red", decimals=0,
    ), 4, 8)
    lay.add(timeseries(
        "Captured packets/s by protocol",
        "Packets decoded by the capture stage per second, by protocol (all captured "
        "interfaces).",
        [target(f"sum by (protocol) (rate(vedette_capture_packets_total{{{SEL}}}[{RATE}]))",
                "{{protocol}}")],
        "pps", stack=True,
    ), 10, 8)
    lay.add(timeseries(
        "Captured bytes/s by protocol",
        "Bytes on the wire of the decoded packets per second, by protocol.",
        [target(f"sum by (protocol) (rate(vedette_capture_bytes_total{{{SEL}}}[{RATE}]))",
                "{{protocol}}")],
        "Bps", stack=True,
    ), 10, 8)
    lay.add(timeseries(
        "Packets/s by direction",
        "Decoded packets per second by direction (inbound, outbound, internal, external) "
        "relative to the local networks of the configuration.",
        [target(f"sum by (direction) (rate(vedette_capture_packets_total{{{SEL}}}[{RATE}]))",
                "{{direction}}")],
        "pps",
    ), 8, 8)
    lay.add(timeseries(
        "ICMP and ARP packets/s",
        "ICMP (v4 and v6) and ARP packets per second: ping sweeps, ICMP floods and ARP "
        "spoofing show up here first.",
        [target(f'sum by (protocol) (rate(vedette_capture_packets_total{{{SEL}, '
                f'protocol=~"icmp|ipv6-icmp|arp"}}[{RATE}]))', "{{protocol}}")],
        "pps",
    ), 8, 8)
    lay.add(timeseries(
        "Capture ring drops/s",
        "Packets the kernel dropped because the capture ring of an interface was full, and "
        "the interfaces flagged degraded (more than 1 % dropped): network detection is partly "
        "blind there.",
        [
            target(f"sum by (interface) (rate(vedette_capture_ring_drops_total{{{IF}}}[{RATE}]))",
                   "{{interface}} dropped/s"),
            target(f"max by (interface) (vedette_capture_degraded{{{IF}}})",
                   "{{interface}} degraded"),
        ],
        "pps", steps=((1, "red"),),
    ), 8, 8)
    lay.add(timeseries(
        "Flood indicators",
        "Per-packet events not emitted because a per-second budget was spent (per_key: one "
        "flooded destination or source, by design; global: the detection budget is exhausted "
        "and detection is partly blind), and entries not tracked because a bounded table was "
        "full. The per-second aggregates still count every packet.",
        [
            target(f"sum by (budget) "
                   f"(rate(vedette_capture_events_over_budget_total{{{SEL}}}[{RATE}]))"
                   + or_zero(), "events over {{budget}} budget"),
            target(f"sum by (table) "
                   f"(rate(vedette_capture_table_overflows_total{{{SEL}}}[{RATE}]))"
                   + or_zero(), "{{table}} table full"),
        ],
        "ops",
    ), 12, 8)
    lay.add(timeseries(
        "Decode errors/s",
        "Captured packets that could not be decoded (truncated, malformed, hostile), by "
        "reason.",
        [target(f'sum by (reason) (rate(vedette_input_errors_total{{{SEL}, source="capture"}}'
                f"[{RATE}]))" + or_zero(), "{{reason}}")],
        "pps", steps=((1, "orange"),),
    ), 12, 8)


def _tcp_and_dns(lay: Layout) -> None:
    lay.row("TCP control and DNS")
    lay.add(timeseries(
        "TCP SYN/RST rates",
        "TCP control segments per second seen by the capture stage (all captured interfaces): "
        "SYN (connection attempts), SYN-ACK (accepted), RST (refused or reset) and segments "
        "without SYN, RST or ACK (FIN/NULL/Xmas probes). SYN far above SYN-ACK is a SYN flood "
        "or a scan; many RSTs is a scan of closed ports; any no-ACK segment is a stealth probe.",
        [target(f"sum by (kind) (rate(vedette_capture_tcp_control_total{{{SEL}}}[{RATE}]))",
                "{{kind}}")],
        "pps",
    ), 12, 8)
    lay.add(timeseries(
        "DNS query and response rates",
        "DNS queries and responses per second on the DNS ports (UDP and TCP, all captured "
        "interfaces), responses by rcode. A jump in queries is a tunnel, a DGA-infected host or "
        "an amplification attempt; many NXDOMAIN answers point at a DGA; SERVFAIL/REFUSED at a "
        "failing or abused resolver.",
        [
            target(f"sum(rate(vedette_capture_dns_queries_total{{{SEL}}}[{RATE}]))", "queries"),
            target(f"sum by (rcode) "
                   f"(rate(vedette_capture_dns_responses_total{{{SEL}}}[{RATE}]))",
                   "responses {{rcode}}"),
        ],
        "ops",
    ), 12, 8)


def _alerts(lay: Layout) -> None:
    lay.row("Network alerts")
    lay.add(timeseries(
        "Alerts/s by rule",
        "Alerts per second from the rules matching the 'Rules' variable (a regex of rule ids; "
        "narrow it to the scan/flood/ARP/DNS rules you run).",
        [target(titled(f"sum by (rule) (rate(vedette_alerts_total{{{RULES}}}[{RATE}]))"),
                "{{title}}")],
        "count:alerts/s", bars=True, stack=True,
    ), 12, 8)
    lay.add(bargauge(
        "Rules that fired (range)",
        "Alerts opened in the time range by the rules matching the 'Rules' variable.",
        [target("topk(15, " + titled(
            f"sum by (rule) (increase(vedette_alerts_total{{{RULES}}}[$__range]))") + ")",
            "{{title}}", instant=True)],
        steps=((1, "orange"), (100, "red")),
    ), 12, 8)


def build() -> Json:
    lay = Layout()
    _interfaces(lay)
    _capture(lay)
    _tcp_and_dns(lay)
    _alerts(lay)
    variables = [
        *standard_vars(instance_multi=False),
        query_var(
            "interface", "Interface",
            'label_values(vedette_host_network_receive_bytes_total'
            '{job=~"$job", instance=~"$instance"}, interface)',
            description="Network interfaces of the selected host",
        ),
        {
            "name": "rules",
            "label": "Rules",
            "description": "Regex of the rule ids shown in the alert panels",
            "type": "textbox",
            "query": ".*",
            "current": {"text": ".*", "value": ".*"},
            "options": [{"selected": True, "text": ".*", "value": ".*"}],
            "hide": 0,
            "skipUrlSync": False,
        },
    ]
    return dashboard(
        UID, "Vedette / Network",
        "One server's network as its Vedette agent sees it: interfaces, capture, alerts.",
        lay, variables, annotations=[restart_annotation()],
    )
