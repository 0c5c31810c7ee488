"""Builder of the packet-capture collector (and its threat-intel reloader) for the registry.

:data:`NETWORK_BUILDERS` is merged into :data:`agent.collectors.registry.BUILDERS`. Without
CAP_NET_RAW the builder raises :class:`~agent.errors.CollectorError` with one clear sentence;
the daemon logs it once, marks ``vedette_collector_degraded{collector="packet_capture"}`` and
keeps every other collector running.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from agent.capture.collector import PacketCaptureCollector
from agent.capture.ring import open_packet_socket
from agent.errors import CollectorError
from agent.threatintel.reloader import ThreatIntelReloader

if TYPE_CHECKING:
    from agent.collectors.base import AnyCollector, Builder, CollectorContext


def check_capture_privilege() -> None:
    """Raise :class:`CollectorError` when this process cannot open an AF_PACKET socket."""
    try:
        open_packet_socket().close()
    except PermissionError:
        raise CollectorError(
            "packet capture needs CAP_NET_RAW (run as root or grant the capability); "
            "network rules receive no packets"
        ) from None
    except OSError as exc:
        raise CollectorError(f"packet capture unavailable: {exc.strerror or exc}") from None


def build_packet_capture(ctx: CollectorContext) -> list[AnyCollector]:
    config = ctx.config
    if not config.capture.enabled:
        return []
    check_capture_privilege()
    out: list[AnyCollector] = []
    reloader = None
    if config.threat_intel.files:
        reloader = ThreatIntelReloader(
            list(config.threat_intel.files), config.threat_intel.reload_interval_seconds,
            ctx.metrics,
        )
        out.append(reloader)
    out.append(PacketCaptureCollector(
        config.capture, config.network, ctx.metrics, intel=reloader,
        host_name=ctx.identity.host_name,
    ))
    return out


NETWORK_BUILDERS: dict[str, Builder] = {"packet_capture": build_packet_capture}
