"""Network: interface traffic, capture statistics and network alerts of one server."""

from __future__ import annotations

from generator.grafana import (
    SEL,
    Json,
    Layout,
    bargauge,
    dashboard,
    query_var,
    restart_annotation,
    standard_vars,
    target,
    timeseries,
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


def _alerts(lay: Layout) -> None:
    lay.row("Network alerts")
    lay.add(timeseries(
        "Alerts/s by rule",
        "Alerts per second from the rules matching the 'Rules' variable (a regex of rule ids; "
        "narrow it to the scan/flood/ARP/DNS rules you run).",
        [target(f"sum by (rule) (rate(vedette_alerts_total{{{RULES}}}[{RATE}]))", "{{rule}}")],
        "count:alerts/s", bars=True, stack=True,
    ), 12, 8)
    lay.add(bargauge(
        "Rules that fired (range)",
        "Alerts opened in the time range by the rules matching the 'Rules' variable.",
        [target(f"topk(15, sum by (rule) (increase(vedette_alerts_total{{{RULES}}}[$__range])))",
                "{{rule}}", instant=True)],
        steps=((1, "orange"), (100, "red")),
    ), 12, 8)


def build() -> Json:
    lay = Layout()
    _interfaces(lay)
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
