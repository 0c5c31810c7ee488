"""Offline inputs: capture files, log files and event files as event streams.

One home for every file the agent reads *offline* — ``vedette replay FILE`` and the fixtures of
``vedette rules test`` both open their inputs here, through the one registry of
:mod:`agent.offline.inputs` (kind → decoder), so what a fixture proves is what a replay runs.

* :mod:`agent.offline.pcap` — pcap/pcapng through the live capture's packet processor, with
  the replay's statistics on the :class:`~agent.offline.pcap.PcapEvents` that produced them;
* :mod:`agent.offline.logs` — log files through the production line decoders, with the
  line-by-line account of ``replay --log`` (parsed / unclassified / malformed);
* :mod:`agent.offline.event_files` — JSON lines of ready-made events;
* :mod:`agent.offline.clock` — drives an engine on the events' own clock.

Layering: this package sits above :mod:`agent.detection`, :mod:`agent.collectors` and
:mod:`agent.netevents` and may import them; :mod:`agent.detection` never imports it (nor the
collectors or the packet stages): the rule-test harness receives its decoders from the caller.
``tests/test_layers.py`` enforces it.
"""
