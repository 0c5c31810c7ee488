"""Packet decoding without scapy: capture-file reader, header decoder, DNS parser."""

from agent.netdecode.columns import Frame, PacketColumns
from agent.netdecode.layers import Decoded, decode
from agent.netdecode.pcapfile import CaptureFormatError, CaptureReader, RawPacket

__all__ = [
    "CaptureFormatError", "CaptureReader", "Decoded", "Frame", "PacketColumns", "RawPacket",
    "decode",
]
