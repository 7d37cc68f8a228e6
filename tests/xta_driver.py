"""Runs many ``xta`` commands in one interpreter of xta-tool's own virtualenv.

Reads a JSON list of argument lists from stdin; invokes xta-tool's click command group
(what the ``xta`` script calls) once per entry with ``-c CONFIG`` first; prints a JSON
list of {returncode, stdout, stderr}. Starting the interpreter once instead of per
command keeps the tests that need hundreds of commands within the suite's time.
"""

import json
import sys

from click.testing import CliRunner
from xta_tool import cli


def main() -> None:
    config = sys.argv[1]
    commands = json.load(sys.stdin)
    runner = CliRunner()
    results = []
    for args in commands:
        result = runner.invoke(cli, ["-c", config, *args], catch_exceptions=True)
        error = result.stderr
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            error += repr(result.exception)
        results.append({"returncode": result.exit_code, "stdout": result.stdout, "stderr": error})
    json.dump(results, sys.stdout)


if __name__ == "__main__":
    main()
