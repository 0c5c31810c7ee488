"""Host collectors: processes and their execs, sockets, kernel modules, file integrity,
resources."""
