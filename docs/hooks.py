"""MkDocs hook: the command and shortcut references are generated from the code at build time.

A page that contains ``<!-- commands -->`` gets, in its place, one section per sub-command of
``clinlens.command.build_parser()``: summary, description, usage, every option with its help,
and the examples of its epilog. A page that contains ``<!-- shortcuts -->`` gets the tables of
``app.widgets.shortcuts``, the table the window binds its keys from. Neither reference can
therefore drift from the code.
"""

from __future__ import annotations

import argparse
import html
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MARKER = "<!-- commands -->"
SHORTCUTS_MARKER = "<!-- shortcuts -->"


def on_page_markdown(markdown: str, page, config, files) -> str:
    if MARKER in markdown:
        markdown = markdown.replace(MARKER, command_reference())
    if SHORTCUTS_MARKER in markdown:
        markdown = markdown.replace(SHORTCUTS_MARKER, shortcut_reference())
    return markdown


def shortcut_reference() -> str:
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from app.widgets.shortcuts import markdown_table  # plain data: no Qt is imported

    return markdown_table()


def command_reference() -> str:
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from clinlens.command import build_parser, commands

    parser = build_parser("clinlens")
    summaries = {a.dest: a.help for a in parser._subparsers._group_actions[0]._choices_actions}
    sections = [
        "## Overview\n",
        "```text",
        parser.format_usage().strip(),
        "",
        parser.description % {"prog": "clinlens"},
        "```\n",
        "| command | what it does |",
        "|---|---|",
    ]
    sections += [f"| [`{name}`](#{name}) | {_cell(summaries[name])} |" for name in commands(parser)]
    sections.append("")
    for name, sub in commands(parser).items():
        sections.append(_command_section(name, sub, summaries[name]))
    return "\n".join(sections)


def _cell(text: str) -> str:
    return html.escape(" ".join(text.split())).replace("|", "\\|")


def _command_section(name: str, sub: argparse.ArgumentParser, summary: str) -> str:
    formatter = sub._get_formatter()
    rows = []
    for action in sub._actions:
        if action.dest == "help":
            continue
        invocation = formatter._format_action_invocation(action)
        required = " (required)" if action.required and action.option_strings else ""
        rows.append(f"| `{invocation}` | {_cell(formatter._expand_help(action))}{required} |")
    lines = [f"## clinlens {name} {{#{name}}}\n", f"{html.escape(summary[0].upper() + summary[1:])}.\n"]
    if sub.description:
        lines.append(html.escape(" ".join(sub.description.split())) + "\n")
    lines += ["```text", sub.format_usage().strip(), "```\n", "| argument | meaning |", "|---|---|", *rows, ""]
    if sub.epilog:
        examples = (sub.epilog % {"prog": sub.prog}).split("\n")[1:]
        lines += ["Examples:\n", "```bash", *(line.strip() for line in examples), "```\n"]
    return "\n".join(lines)
