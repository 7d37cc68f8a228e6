"""The processes of a fault run: workers (``xbroker run``) and agencies (`agency_runner`)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Worker:
    """One ``xbroker run`` process."""

    process: subprocess.Popen[bytes]
    log: Path
    metrics_port: int
    urls: tuple[str, ...]

    @property
    def readyz(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}/readyz"

    async def ready(self) -> bool:
        try:
            async with httpx.AsyncClient(timeout=2.0) as client:
                return (await client.get(self.readyz)).status_code == 200
        except httpx.HTTPError:
            return False

    async def metric(self, name: str) -> float:
        """The sum of every sample of ``name`` the worker exports now (0 if unreachable)."""
        try:
            async with httpx.AsyncClient(timeout=2.0) as client:
                text = (await client.get(f"http://127.0.0.1:{self.metrics_port}/metrics")).text
        except httpx.HTTPError:
            return 0.0
        return sum(
            sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
            if sample.name == name
        )

    def events(self) -> list[dict[str, Any]]:
        lines = self.log.read_text(encoding="utf-8", errors="replace").splitlines()
        out = []
        for line in lines:
            if line.startswith("{"):
                try:
                    out.append(json.loads(line))
                except ValueError:
                    continue
        return out

    def logged(self, name: str) -> bool:
        return any(entry.get("event") == name for entry in self.events())

    def stop(self, timeout: float = 60.0) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout)


@dataclass
class Agency:
    """One agency in a process of its own (``tests/faults/agency_runner.py``)."""

    kennung: str
    config: Path
    urls: tuple[str, ...]
    handled_file: Path
    log: Path
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    str(Path(__file__).with_name("agency_runner.py")),
                    str(self.config),
                    self.kennung,
                    str(self.handled_file),
                    *self.urls,
                ],
                env=dict(os.environ, PYTHONPATH=str(ROOT)),
                cwd=ROOT,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def ready(self) -> bool:
        if self.process is not None and self.process.poll() is not None:
            raise AssertionError(f"agency {self.kennung} exited: see {self.log}")
        return Path(f"{self.handled_file}.ready").exists()

    def handled(self) -> list[str]:
        if not self.handled_file.exists():
            return []
        return self.handled_file.read_text(encoding="utf-8").split()

    def stop(self) -> dict[str, int]:
        """Stop it; what it counted (``receipt_retries``)."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(60)
        stats = Path(f"{self.handled_file}.stats.json")
        return json.loads(stats.read_text()) if stats.exists() else {}
