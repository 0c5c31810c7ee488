"""Live packet capture: AF_PACKET + TPACKET_V3 ring + kernel BPF, interface discovery."""
