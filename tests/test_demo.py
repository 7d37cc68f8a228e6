"""``xbroker demo`` (what ``make run`` starts), once through, as a subprocess."""

from __future__ import annotations

import asyncio
import os
import re
import sys
from pathlib import Path

import pytest

from tests.world import EXAMPLES

pytestmark = pytest.mark.rabbitmq


async def test_the_demo_serves_the_xta_endpoint_and_prints_its_url(
    module_vhost_url: str, tmp_path: Path
) -> None:
    config = tmp_path / "xbroker.toml"
    config.write_text(
        f'state_dir = "{tmp_path / "state"}"\n'
        f'directory = "{EXAMPLES / "directory.toml"}"\n'
        "metrics_port = 0\nxta_port = 0\n",
        encoding="utf-8",
    )
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "broker.cli",
        "--config",
        str(config),
        "demo",
        "--once",
        env=dict(os.environ, XBROKER_AMQP_URL=module_vhost_url),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), 120)
    output = stdout.decode()

    assert process.returncode == 0, stderr.decode()
    assert re.search(
        r"^xta +https://127\.0\.0\.1:\d+/services/XTAService/ +\(message boxes: bau:02000000;",
        output,
        re.M,
    ), output
    assert "every submission has its final receipt" in output
