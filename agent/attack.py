"""MITRE ATT&CK: Sigma tags (``attack.t1046``, ``attack.discovery``) → ECS ``threat.*`` fields."""

from __future__ import annotations

import re
from typing import Any

TACTICS: dict[str, tuple[str, str]] = {
    "reconnaissance": ("TA0043", "Reconnaissance"),
    "resource_development": ("TA0042", "Resource Development"),
    "initial_access": ("TA0001", "Initial Access"),
    "execution": ("TA0002", "Execution"),
    "persistence": ("TA0003", "Persistence"),
    "privilege_escalation": ("TA0004", "Privilege Escalation"),
    "defense_evasion": ("TA0005", "Defense Evasion"),
    "credential_access": ("TA0006", "Credential Access"),
    "discovery": ("TA0007", "Discovery"),
    "lateral_movement": ("TA0008", "Lateral Movement"),
    "collection": ("TA0009", "Collection"),
    "command_and_control": ("TA0011", "Command and Control"),
    "exfiltration": ("TA0010", "Exfiltration"),
    "impact": ("TA0040", "Impact"),
}
_TACTIC_BY_ID = {tid: name for tid, name in TACTICS.values()}

# Names of the techniques Vedette's own rules use; others render with their id only.
TECHNIQUES: dict[str, str] = {
    "T1018": "Remote System Discovery",
    "T1046": "Network Service Discovery",
    "T1048": "Exfiltration Over Alternative Protocol",
    "T1053": "Scheduled Task/Job",
    "T1053.003": "Cron",
    "T1059": "Command and Scripting Interpreter",
    "T1059.004": "Unix Shell",
    "T1070": "Indicator Removal",
    "T1070.002": "Clear Linux or Mac System Logs",
    "T1071": "Application Layer Protocol",
    "T1071.004": "DNS",
    "T1078": "Valid Accounts",
    "T1098": "Account Manipulation",
    "T1098.004": "SSH Authorized Keys",
    "T1110": "Brute Force",
    "T1110.001": "Password Guessing",
    "T1110.003": "Password Spraying",
    "T1136": "Create Account",
    "T1136.001": "Local Account",
    "T1190": "Exploit Public-Facing Application",
    "T1496": "Resource Hijacking",
    "T1498": "Network Denial of Service",
    "T1499": "Endpoint Denial of Service",
    "T1505": "Server Software Component",
    "T1505.003": "Web Shell",
    "T1543": "Create or Modify System Process",
    "T1543.002": "Systemd Service",
    "T1546": "Event Triggered Execution",
    "T1546.004": "Unix Shell Configuration Modification",
    "T1547": "Boot or Logon Autostart Execution",
    "T1547.006": "Kernel Modules and Extensions",
    "T1548": "Abuse Elevation Control Mechanism",
    "T1548.003": "Sudo and Sudo Caching",
    "T1557": "Adversary-in-the-Middle",
    "T1557.002": "ARP Cache Poisoning",
    "T1574": "Hijack Execution Flow",
    "T1574.006": "Dynamic Linker Hijacking",
    "T1595": "Active Scanning",
    "T1595.002": "Vulnerability Scanning",
}

_TECHNIQUE_RE = re.compile(r"^t\d{4}(\.\d{3})?$")


def threat_fields(tags: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """ECS ``threat`` object for the ``attack.*`` tags of a rule; empty dict when none."""
    tactic_ids: list[str] = []
    tactic_names: list[str] = []
    tech_ids: list[str] = []
    sub_ids: list[str] = []
    for tag in tags:
        low = tag.lower()
        if not low.startswith("attack."):
            continue
        name = low.removeprefix("attack.")
        if name in TACTICS:
            tid, tname = TACTICS[name]
            if tid not in tactic_ids:
                tactic_ids.append(tid)
                tactic_names.append(tname)
        elif name.upper() in _TACTIC_BY_ID:
            tid = name.upper()
            if tid not in tactic_ids:
                tactic_ids.append(tid)
                tactic_names.append(_TACTIC_BY_ID[tid])
        elif _TECHNIQUE_RE.match(name):
            tech = name.upper()
            if "." in tech:
                if tech not in sub_ids:
                    sub_ids.append(tech)
                tech = tech.split(".")[0]
            if tech not in tech_ids:
                tech_ids.append(tech)
    if not (tactic_ids or tech_ids):
        return {}
    threat: dict[str, Any] = {"framework": "MITRE ATT&CK"}
    if tactic_ids:
        threat["tactic"] = {
            "id": tactic_ids,
            "name": tactic_names,
            "reference": [f"https://attack.mitre.org/tactics/{t}/" for t in tactic_ids],
        }
    if tech_ids:
        technique: dict[str, Any] = {
            "id": tech_ids,
            "name": [TECHNIQUES.get(t, t) for t in tech_ids],
            "reference": [f"https://attack.mitre.org/techniques/{t}/" for t in tech_ids],
        }
        if sub_ids:
            technique["subtechnique"] = {
                "id": sub_ids,
                "name": [TECHNIQUES.get(s, s) for s in sub_ids],
                "reference": [
                    f"https://attack.mitre.org/techniques/{s.replace('.', '/')}/" for s in sub_ids
                ],
            }
        threat["technique"] = technique
    return threat
