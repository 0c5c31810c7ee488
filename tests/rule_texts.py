"""Rule texts and collector sets the end-to-end tests share.

``process_rule`` is the usual "a binary named X started" rule; ``unsupported_field_rule`` is a
rule no collector can ever satisfy (the blind-spot check's case); ``ONLY_TEST_COLLECTORS``
switches off every collector whose health depends on the machine (a container has no
/proc/modules, maybe no proc connector, no auth log), so a test chooses what runs.
"""

from __future__ import annotations

from typing import Any

ONLY_TEST_COLLECTORS: dict[str, Any] = {
    "auth_logs": {"enabled": False}, "web_logs": {"enabled": False},
    "auditd": {"enabled": False}, "kernel_modules": {"enabled": False},
    "process": {"enabled": False}, "sockets": {"enabled": False},
    "fim": {"enabled": False}}


def process_rule(rule_id: str, *, title: str = "Netcat started", image: str = "nc",
                 level: str = "medium") -> str:
    return f"""title: {title}
id: {rule_id}
status: stable
description: test rule
author: test
date: 2026-11-21
logsource:
  product: linux
  category: process_creation
detection:
  selection:
    Image|endswith: /{image}
  condition: selection
level: {level}
"""


def unsupported_field_rule(rule_id: str) -> str:
    return f"""title: needs a field nobody produces
id: {rule_id}
status: stable
logsource:
  product: linux
  category: file_event
detection:
  selection:
    NoSuchField: x
  condition: selection
level: low
"""
