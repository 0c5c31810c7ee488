"""Durable, bounded on-disk spool that sits between a sink's ``emit`` and its network shipper."""

from agent.spool.sqlite_spool import AppendResult, FsyncPolicy, Spool, SpoolRecord, SpoolStats

__all__ = ["AppendResult", "FsyncPolicy", "Spool", "SpoolRecord", "SpoolStats"]
