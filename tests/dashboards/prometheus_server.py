"""A real Prometheus server (Debian package `prometheus`) on loopback, for the live tests."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

PROMETHEUS = shutil.which("prometheus")


class PrometheusError(AssertionError):
    pass


@dataclass
class PrometheusServer:
    workdir: Path
    port: int
    targets: list[str]
    rule_files: list[Path]
    job: str = "vedette"
    proc: subprocess.Popen[bytes] | None = None

    @property
    def log_path(self) -> Path:
        return self.workdir / "prometheus.log"

    def start(self, timeout: float = 30.0) -> PrometheusServer:
        if PROMETHEUS is None:
            raise PrometheusError("prometheus is not installed")
        config = {
            "global": {"scrape_interval": "1s", "scrape_timeout": "900ms",
                       "evaluation_interval": "1s"},
            "rule_files": [str(p) for p in self.rule_files],
            "scrape_configs": [{"job_name": self.job,
                                "static_configs": [{"targets": self.targets}]}],
        }
        cfg = self.workdir / "prometheus.yml"
        cfg.write_text(yaml.safe_dump(config))
        cmd = [
            PROMETHEUS, f"--config.file={cfg}",
            f"--storage.tsdb.path={self.workdir / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            "--storage.tsdb.retention.time=1h", "--log.level=warn",
        ]
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(cmd, cwd=self.workdir, stdout=log, stderr=log)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise PrometheusError(f"prometheus exited:\n{self.logs()}")
            try:
                with urllib.request.urlopen(self._url("/-/ready"), timeout=1) as resp:
                    if resp.status == 200:
                        return self
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.1)
        raise PrometheusError(f"prometheus not ready after {timeout}s:\n{self.logs()}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    def logs(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-4000:]
        except OSError:
            return ""

    def _url(self, path: str, params: dict[str, Any] | None = None) -> str:
        query = f"?{urllib.parse.urlencode(params, doseq=True)}" if params else ""
        return f"http://127.0.0.1:{self.port}{path}{query}"

    def api(self, path: str, params: dict[str, Any] | None = None) -> Any:
        """GET an /api/v1 endpoint; returns ``data`` or raises with Prometheus' error text."""
        try:
            with urllib.request.urlopen(self._url(path, params), timeout=10) as resp:
                body = json.load(resp)
        except urllib.error.HTTPError as exc:
            body = json.loads(exc.read() or b"{}")
        if body.get("status") != "success":
            raise PrometheusError(f"{path} {params}: {body.get('errorType')}: {body.get('error')}")
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        data = self.api("/api/v1/query", {"query": expr})
        result = data["result"]
        if data["resultType"] == "scalar":
            return [{"metric": {}, "value": result}]
        return list(result)

    def value(self, expr: str) -> float | None:
        result = self.query(expr)
        return float(result[0]["value"][1]) if result else None

    def wait_scrapes(self, count: int, timeout: float = 30.0) -> None:
        """Wait until ``count`` more successful scrapes of every target happened."""
        expr = f'min(count_over_time(up{{job="{self.job}"}}[1h]))'
        start = self.value(expr) or 0.0
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if (self.value(expr) or 0.0) >= start + count and self.value(
                f'min(up{{job="{self.job}"}})'
            ) == 1:
                return
            time.sleep(0.25)
        raise PrometheusError(f"fewer than {count} scrapes in {timeout}s:\n{self.logs()}")
