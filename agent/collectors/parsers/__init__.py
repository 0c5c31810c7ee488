"""Pure parsers: raw log lines / journal entries in, events out.

No threads, sockets or tailing here (that is :mod:`agent.collectors.logs`); the one file touched
is the login history :class:`~agent.collectors.parsers.auth_context.AuthContext` loads and saves
when its collector asks. :mod:`agent.collectors.parsers.decoders` is what the log collectors,
``vedette replay --log`` and rule fixtures share.
"""
