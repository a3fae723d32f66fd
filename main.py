"""ClinLens entry point: the desktop app by default, scripting sub-commands otherwise.

    python main.py                      open the GUI on the bundled demo image
    python main.py FILE_OR_FOLDER ...   open the GUI on these images
    python main.py COMMAND ...          run a command-line tool (see --help)
"""

from __future__ import annotations

import argparse
import importlib
import signal
import sys

# Each module adds its sub-commands with register(subparsers), set_defaults(func=handler);
# a handler returns the exit code.
COMMAND_MODULES = ("cli.imaging", "cli.annotations", "cli.clinkd", "cli.kpl", "cli.evaluation", "cli.training",
                   "cli.annotate")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="main.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    subparsers.add_parser("gui", help="open the desktop app (the default)").add_argument(
        "paths", nargs="*", help="DICOM files or folders, PNG/JPEG/TIFF images")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    commands = set(parser._subparsers._group_actions[0].choices)  # noqa: SLF001 - argparse has no public accessor
    if not argv or (argv[0] not in commands and not argv[0].startswith("-")):
        argv = ["gui", *argv]
    args = parser.parse_args(argv)
    if args.command == "gui":
        from app.application import run_gui

        return run_gui(args.paths)
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)   # `main.py info x | head` ends quietly
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
