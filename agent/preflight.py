"""Checks of everything ``vedette run`` will need that a schema cannot see.

The configuration schema (:mod:`agent.config`) checks types and ranges; this module checks the
world the values point at, before anything starts: every ``*_file`` secret opens and has a
first line, certificates and keys load (and match), CA bundles parse, every CIDR and address
parses, the capture BPF filter compiles, the metrics port is valid (and, ``live``, free).

``vedette run`` refuses to start on any problem (exit 2); ``vedette config check`` prints them
all. Each problem is a :class:`~agent.errors.ConfigError` pointing at the option's line in the
config file (``file:line: option: value: reason``), never a traceback.
"""

from __future__ import annotations

import errno
import ipaddress
import socket
import ssl
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

from agent.config import Config, mask_url, option_location
from agent.errors import CollectorError, ConfigError

Locate = Callable[..., tuple[str, int | None]]


def check(config: Config, config_path: Path | None, *, live: bool = False) -> list[ConfigError]:
    """Every problem found; empty when ``vedette run`` has what it needs."""
    def locate(*keys: str) -> tuple[str, int | None]:
        return option_location(config_path, *keys)

    out: list[ConfigError] = []
    out += _files(config, locate)
    out += _addresses(config, locate)
    out += _bpf(config, locate)
    out += _ports(config, locate, live)
    return out


def _error(locate: Locate, keys: tuple[str, ...], reason: str) -> ConfigError:
    source, line = locate(*keys)
    return ConfigError(f"{'.'.join(keys)}: {reason}", source, line)


def _first_line(path: Path) -> str | None:
    """A problem with a secret file, or None when it has a non-empty first line."""
    try:
        with path.open("rb") as fh:
            head = fh.read(65536)
    except OSError as exc:
        return f"{path}: cannot read: {exc.strerror or exc}"
    try:
        lines = head.decode("utf-8").splitlines()
    except UnicodeDecodeError:
        return f"{path}: not UTF-8 text"
    if not lines or not lines[0].strip():
        return f"{path}: empty (the secret is the file's first line)"
    return None


def _files(config: Config, locate: Locate) -> list[ConfigError]:
    out: list[ConfigError] = []
    m, es = config.metrics, config.elasticsearch
    secrets = (
        (("metrics", "basic_auth_password_file"), m.basic_auth_password_file),
        (("elasticsearch", "api_key_file"), es.api_key_file),
        (("elasticsearch", "password_file"), es.password_file),
    )
    for keys, path in secrets:
        if path is not None and (problem := _first_line(path)):
            out.append(_error(locate, keys, problem))
    pairs = (
        (("metrics", "tls_cert_file"), m.tls_cert_file, m.tls_key_file),
        (("elasticsearch", "client_cert_file"), es.client_cert_file, es.client_key_file),
    )
    for keys, cert, key in pairs:
        if cert is None or key is None:
            continue
        try:
            ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(cert, key)
        except OSError as exc:  # ssl.SSLError is an OSError too
            reason = exc.strerror or getattr(exc, "reason", None) or str(exc)
            out.append(_error(locate, keys, f"{cert} / {key}: cannot load: {reason}"))
    if es.ca_file is not None:
        try:
            ssl.create_default_context(cafile=str(es.ca_file))
        except OSError as exc:
            reason = exc.strerror or getattr(exc, "reason", None) or str(exc)
            out.append(_error(locate, ("elasticsearch", "ca_file"),
                              f"{es.ca_file}: cannot load: {reason}"))
    for i, path in enumerate(config.threat_intel.files):
        try:
            with path.open("rb"):
                pass
        except OSError as exc:
            out.append(_error(locate, ("threat_intel", "files", str(i)),
                              f"{path}: cannot read: {exc.strerror or exc}"))
    return out


def _addresses(config: Config, locate: Locate) -> list[ConfigError]:
    out: list[ConfigError] = []
    address = config.metrics.listen_address
    if address != "localhost":
        try:
            ipaddress.ip_address(address)
        except ValueError:
            out.append(_error(locate, ("metrics", "listen_address"),
                              f"{address!r} is not an IP address"))
    for i, text in enumerate(config.network.local_networks):
        try:
            ipaddress.ip_network(text, strict=False)
        except ValueError:
            out.append(_error(locate, ("network", "local_networks", str(i)),
                              f"{text!r} is not a CIDR network"))
    for i, text in enumerate(config.network.gateways):
        try:
            ipaddress.ip_address(text)
        except ValueError:
            out.append(_error(locate, ("network", "gateways", str(i)),
                              f"{text!r} is not an IP address"))
    for i, url in enumerate(config.elasticsearch.hosts):
        try:
            parts = urlsplit(url)
            _ = parts.port
        except ValueError as exc:
            out.append(_error(locate, ("elasticsearch", "hosts", str(i)),
                              f"{mask_url(url)!r}: {exc}"))
            continue
        if not parts.hostname:
            out.append(_error(locate, ("elasticsearch", "hosts", str(i)),
                              f"{mask_url(url)!r} has no host"))
    return out


def _bpf(config: Config, locate: Locate) -> list[ConfigError]:
    capture = config.capture
    if not capture.enabled or not capture.bpf_filter.strip():
        return []
    from agent.capture.bpf import compile_filter  # noqa: PLC0415 - runs tcpdump; only when set

    try:
        compile_filter(capture.bpf_filter, capture.snaplen)
    except CollectorError as exc:
        return [_error(locate, ("capture", "bpf_filter"), str(exc))]
    return []


def _ports(config: Config, locate: Locate, live: bool) -> list[ConfigError]:
    m = config.metrics
    if not m.enabled or not live:
        return []
    problem = port_problem(m.listen_address, m.port)
    return [_error(locate, ("metrics", "port"), problem)] if problem else []


def port_problem(address: str, port: int) -> str | None:
    """Why ``address:port`` cannot be listened on right now (None: it can)."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((address, port))
        except OSError as exc:
            return listen_failure(address, port, exc)
    return None


def listen_failure(address: str, port: int, exc: OSError) -> str:
    """One line for a failed bind, naming the usual cause."""
    where = f"[{address}]:{port}" if ":" in address else f"{address}:{port}"
    if exc.errno == errno.EADDRINUSE:
        return f"cannot listen on {where}: the port is already in use (another vedette?)"
    if exc.errno == errno.EADDRNOTAVAIL:
        return f"cannot listen on {where}: no local interface has that address"
    if exc.errno == errno.EACCES:
        return f"cannot listen on {where}: permission denied (ports below 1024 need privilege)"
    return f"cannot listen on {where}: {exc.strerror or exc}"
