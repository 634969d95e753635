"""``churnwatch`` — one console script, one subcommand per job.

Each subcommand lives in its own module exposing ``add_arguments(parser)`` and ``run(args) -> int``;
modules are imported lazily so ``churnwatch --help`` stays fast and a command only pays for what
it uses.
"""

from __future__ import annotations

import argparse
import importlib
import sys

__all__ = ["main", "COMMANDS"]

# name -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "worker": ("stream.service.worker", "run the streaming worker (Faust agents over Kafka)"),
    "backtest": ("stream.tools.backtest", "run the engine over an NDJSON file of events and write alarms"),
    "simulate": ("stream.tools.simulate", "generate a synthetic operator's events with ground truth"),
    "report": ("stream.tools.report", "measure alarm quality against simulator ground truth"),
    "tune": ("stream.tools.tune", "fit warning/alarm thresholds to a labelled history within a budget"),
    "replay": ("stream.tools.replay", "produce an NDJSON file of events to the input topics"),
    "alarms": ("stream.tools.alarms", "read (and --follow) the alarm topic"),
    "demo": ("stream.tools.demo", "local broker + worker + simulated traffic + live alarms"),
    "devkafka": ("stream.dev.cli", "fetch/start/stop the local Kafka broker"),
}


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The parser for ``argv`` (default ``sys.argv[1:]``): only the named command's module is
    imported (the others get a bare subparser, enough for ``--help``)."""
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="churnwatch", description="Real-time churn alarms for mobile operators.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name, (modname, help_) in COMMANDS.items():
        p = sub.add_parser(name, help=help_, description=help_)
        p.set_defaults(command_module=modname)
        if argv and argv[0] != name and not argv[0].startswith("-"):
            continue  # only import the module of the command being run
        try:
            mod = importlib.import_module(modname)
        except ModuleNotFoundError as exc:
            if exc.name and exc.name.startswith("stream."):
                p.set_defaults(command_missing=str(exc))
                continue
            raise
        mod.add_arguments(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    if getattr(args, "command_missing", None):
        parser.error(f"{args.command}: not available in this build ({args.command_missing})")
    mod = importlib.import_module(args.command_module)
    try:
        return int(mod.run(args) or 0)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
