"""Host collectors: processes and their execs, sockets, kernel modules, file integrity,
resources.

Each collector's ``build`` is beside it; :data:`BUILDERS` names them by config section (adding
a host collector: a module here with its collector and ``build``, and one line below).
"""

from __future__ import annotations

from agent.collectors.base import Builder
from agent.collectors.host import kmod, resources, sockets
from agent.collectors.host.fim import collector as fim
from agent.collectors.host.process import collector as process

BUILDERS: dict[str, Builder] = {
    "host_metrics": resources.build,
    "process": process.build,
    "sockets": sockets.build,
    "fim": fim.build,
    "kernel_modules": kmod.build,
}
