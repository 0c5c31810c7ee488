"""Log collectors: rotation-safe tailing of files, the systemd journal, JSON-lines event files."""
