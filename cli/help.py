"""One look for every command's ``--help``: a summary line, options in one voice, examples last.

Sub-commands are created through ``ClinLensParser`` (the ``parser_class`` of the sub-parser set),
so each module only writes its words; ``examples`` builds the epilog they all end with.
"""

from __future__ import annotations

import argparse
import re


class HelpFormatter(argparse.HelpFormatter):
    """Wraps prose paragraphs to the terminal, keeps indented lines (examples) exactly as written."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        filled = []
        for paragraph in text.strip("\n").split("\n\n"):
            raw = paragraph.startswith(" ") or "\n " in paragraph
            filled.append(paragraph if raw else super()._fill_text(paragraph, width, indent))
        return "\n\n".join(filled)


class ClinLensParser(argparse.ArgumentParser):
    """An ``ArgumentParser`` that formats help with ``HelpFormatter`` unless told otherwise."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)


def examples(*commands: str) -> str:
    """The epilog of a sub-command: ``commands`` are written after its prog (``clinlens info``)."""
    return "examples:\n" + "\n".join(f"  %(prog)s {command}".rstrip() for command in commands)


# A value such as "-600,1500" (a window with a negative centre) or "-5,10,20,30" starts with "-";
# argparse only recognises plain negative numbers as values and would take it for an option.
_NEGATIVE_NUMBER_LIST = re.compile(r"-\d+(\.\d+)?(,-?\d+(\.\d+)?)+")


def join_negative_values(argv: list[str]) -> list[str]:
    """``--window -600,1500`` -> ``--window=-600,1500`` so that it works as typed.

    Only a comma-separated list of numbers that follows a long option is joined: such a token is
    never an option itself, and a plain negative number already parses.
    """
    joined: list[str] = []
    for token in argv:
        previous = joined[-1] if joined else ""
        if (
            "--" not in joined
            and _NEGATIVE_NUMBER_LIST.fullmatch(token)
            and previous.startswith("--")
            and "=" not in previous
        ):
            joined[-1] = f"{previous}={token}"
        else:
            joined.append(token)
    return joined
