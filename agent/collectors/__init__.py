"""Collectors: turn what the host and the wire do into :class:`~agent.events.Event` objects."""
