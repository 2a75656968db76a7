"""The ``storemon`` command.

Each sub-command lives in its own module with ``add_arguments(parser)`` and ``run(args)``;
only the chosen module is imported, so ``storemon report`` never loads Kafka or Faust.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

# name -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "report": ("storemon.batch", "compute the uptime report from CSV files (batch)"),
    "generate": ("storemon.producers.generate", "write a synthetic data set in the real formats"),
    "replay": ("storemon.producers.replay", "publish CSV files to the Kafka topics"),
    "services": ("storemon.services", "start, stop or inspect the local Kafka and PostgreSQL"),
    "worker": ("storemon.streams.worker", "run the Faust stream worker"),
    "api": ("storemon.web.app", "run the aiohttp report API"),
    "demo": ("storemon.demo", "end to end: services, sample data, replay, report"),
    "status": ("storemon.status", "services, consumer lag, newest poll and last report"),
    "assets": ("storemon.web.assets", "fetch the dashboard's charting library (once)"),
}


def _usage() -> str:
    lines = ["usage: storemon COMMAND [options]", "", "commands:"]
    lines += [f"  {name:<10} {help_text}" for name, (_, help_text) in COMMANDS.items()]
    lines.append("")
    lines.append("Run 'storemon COMMAND --help' for the options of one command.")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in {"-h", "--help"}:
        print(_usage())
        return 0 if args else 2
    name = args[0]
    if name not in COMMANDS:
        print(f"storemon: unknown command {name!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    module_name, help_text = COMMANDS[name]
    module = importlib.import_module(module_name)
    parser = argparse.ArgumentParser(prog=f"storemon {name}", description=help_text)
    module.add_arguments(parser)
    parsed = parser.parse_args(args[1:])
    result: int = module.run(parsed)
    return result
