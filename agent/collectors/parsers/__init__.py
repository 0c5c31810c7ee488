"""Pure parsers: raw log lines / journal entries in, events out (no files, no threads, no clock)."""
