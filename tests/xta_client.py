"""The independent XTA 2 client `xta-tool` (command ``xta``), installed once and run.

xta-tool needs Python 3.12 or newer while the project runs on 3.11, so it lives in a
virtualenv of its own, ``.xbroker/xta-venv``, made with the first such Python found on
the machine (PATH, then pyenv's versions) and reused by later sessions. In CI a missing
interpreter or a failed install fails the test; elsewhere it skips.

Each identity (a Fachverfahren, the portal) gets a folder with its ``config.toml``; the
XDG configuration folders are pointed at an empty one so that no user's configuration
leaks in.
"""

from __future__ import annotations

import asyncio
import fcntl
import glob
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

from tests import tools

ROOT = Path(__file__).resolve().parents[1]
VENV = ROOT / ".xbroker" / "xta-venv"
_STAMP = VENV / ".xta-tool-installed"
_DRIVER = Path(__file__).with_name("xta_driver.py")
COMMAND_TIMEOUT = 120.0


def _unavailable(reason: str) -> NoReturn:
    tools.unavailable("xta-tool", reason)


def _python_312() -> str | None:
    """The first Python ≥ 3.12 on PATH or among pyenv's versions."""
    pyenv = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv"))
    candidates = [shutil.which(name) for name in ("python3.13", "python3.12")]
    candidates += sorted(glob.glob(str(pyenv / "versions" / "3.1[2-9]*" / "bin" / "python3")))
    for candidate in candidates:
        if not candidate:
            continue
        check = subprocess.run(
            [candidate, "-c", "import sys; sys.exit(sys.version_info < (3, 12))"],
            capture_output=True,
        )
        if check.returncode == 0:
            return candidate
    return None


def xta_executable() -> Path:
    """The ``xta`` command, installing xta-tool into its virtualenv the first time."""
    VENV.parent.mkdir(parents=True, exist_ok=True)
    with open(VENV.parent / "xta-venv.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not _STAMP.exists():
            python = _python_312()
            if python is None:
                _unavailable("no Python 3.12 or newer on this machine (xta-tool needs one)")
            shutil.rmtree(VENV, ignore_errors=True)
            steps = [
                [python, "-m", "venv", str(VENV)],
                [str(VENV / "bin" / "python"), "-m", "pip", "install", "--quiet", "xta-tool"],
            ]
            for step in steps:
                done = subprocess.run(step, capture_output=True, text=True, timeout=600)
                if done.returncode != 0:
                    _unavailable(f"{' '.join(step)} failed: {done.stderr[-2000:]}")
            _STAMP.write_text("xta-tool\n")
    return VENV / "bin" / "xta"


@dataclass(frozen=True)
class XtaResult:
    returncode: int
    stdout: str
    stderr: str

    def check(self) -> XtaResult:
        assert self.returncode == 0, f"xta failed ({self.returncode}): {self.stderr}{self.stdout}"
        return self


@dataclass(frozen=True)
class XtaClient:
    """One identity's ``xta`` command: its config folder and its environment."""

    executable: Path
    config_dir: Path

    @classmethod
    def configure(
        cls,
        executable: Path,
        folder: Path,
        *,
        base_url: str,
        cafile: Path,
        certfile: Path,
        keyfile: Path,
        identifier: str,
        max_list_items: int = 100,
    ) -> XtaClient:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "xdg").mkdir(exist_ok=True)
        (folder / "config.toml").write_text(
            config_toml(base_url, cafile, certfile, keyfile, identifier, max_list_items)
        )
        return cls(executable, folder)

    def _env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("XTA_", "XDG_"))}
        env |= {
            "XDG_CONFIG_HOME": str(self.config_dir / "xdg"),
            "XDG_CONFIG_DIRS": str(self.config_dir / "xdg"),
        }
        return env

    async def run(self, *args: str) -> XtaResult:
        """``xta -c CONFIG ARGS...`` as a subprocess (never blocking the event loop,
        which serves the endpoint under test)."""
        process = await asyncio.create_subprocess_exec(
            str(self.executable),
            "-c",
            str(self.config_dir / "config.toml"),
            *args,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=self._env(),
        )
        try:
            async with asyncio.timeout(COMMAND_TIMEOUT):
                out, err = await process.communicate()
        except TimeoutError:
            process.kill()
            await process.wait()
            raise
        return XtaResult(process.returncode or 0, out.decode(), err.decode())

    async def run_many(self, commands: list[list[str]]) -> list[XtaResult]:
        """Many ``xta`` commands in one interpreter (xta-tool's own click command group,
        invoked once per command), for the tests that need hundreds of them."""
        import json

        process = await asyncio.create_subprocess_exec(
            str(self.executable.with_name("python")),
            str(_DRIVER),
            str(self.config_dir / "config.toml"),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=self._env(),
        )
        async with asyncio.timeout(COMMAND_TIMEOUT * 5):
            out, err = await process.communicate(json.dumps(commands).encode())
        assert process.returncode == 0, err.decode()[-4000:]
        return [XtaResult(**r) for r in json.loads(out)]


def config_toml(
    base_url: str,
    cafile: Path,
    certfile: Path,
    keyfile: Path,
    identifier: str,
    max_list_items: int = 100,
) -> str:
    """An xta-tool ``config.toml`` (the keys of xta-tool's Config, snake_case)."""
    return (
        f'base_url = "{base_url}"\n'
        f'cafile = "{cafile}"\n'
        f'certfile = "{certfile}"\n'
        f'keyfile = "{keyfile}"\n'
        f"max_list_items = {max_list_items}\n"
        f'user_agent = "xta-tool (xbroker tests)"\n'
        f"\n[self_identifier]\n"
        f'value = "{identifier}"\n'
        f'type = "xoev"\n'
    )


if __name__ == "__main__":  # `python tests/xta_client.py`: install it, print where
    print(xta_executable())
    sys.exit(0)
