"""Threat intelligence: blocklist feeds and prefix matching."""
