"""Packet decoding without scapy: capture-file reader, header decoder, DNS parser."""

from agent.netdecode.layers import Decoded, decode
from agent.netdecode.pcapfile import CaptureFormatError, CaptureReader, Frame, RawPacket

__all__ = ["CaptureFormatError", "CaptureReader", "Decoded", "Frame", "RawPacket", "decode"]
