# SPDX-License-Identifier: MIT
"""Write man/afarmctl.1 from the verb table, so the page and --help never disagree.

Run as `python3 -m afarm.cli.manpage man/afarmctl.1`; a test checks the file is current.
"""

import sys
from pathlib import Path

from afarm import __version__
from afarm.cli.verbs import EXIT_CODES, GLOBAL_ARGS, VERBS, Arg


def _esc(text: str) -> str:
    # roff: a leading dot or quote starts a request, and a backslash is an escape.
    text = text.replace("\\", "\\e").replace("-", "\\-")
    return "\\&" + text if text[:1] in (".", "'") else text


def _arg(arg: Arg) -> list[str]:
    names = ", ".join(f"\\fB{_esc(n)}\\fR" for n in arg.names)
    if not arg.names[0].startswith("-"):
        names = f"\\fI{_esc(arg.names[0].upper())}\\fR"
    elif arg.kwargs.get("action") != "store_true":
        names += f" \\fI{_esc(arg.names[-1].lstrip('-').upper())}\\fR"
    return [".TP", names, _esc(arg.help)]


def render() -> str:
    out = [f'.TH AFARMCTL 1 "" "afarm {__version__}" "afarm manual"',
           ".SH NAME", "afarmctl \\- drive an afarm render farm",
           ".SH SYNOPSIS", ".B afarmctl",
           "[\\fIGLOBAL OPTIONS\\fR] \\fIVERB\\fR [\\fIARGUMENTS\\fR]",
           ".SH DESCRIPTION",
           "afarmctl talks to an afarm master: it submits jobs on the master's job port and"
           " reads jobs, tasks, slaves, logs and outputs from its results port.",
           ".SH GLOBAL OPTIONS"]
    for arg in GLOBAL_ARGS:
        out += _arg(arg)
    out.append(".SH VERBS")
    for verb in VERBS:
        positional = " ".join(f"\\fI{_esc(a.names[0].upper())}\\fR" for a in verb.args
                              if not a.names[0].startswith("-"))
        out += [".SS " + " ".join(x for x in (verb.name, positional) if x),
                _esc(verb.description)]
        for arg in verb.args:
            if arg.names[0].startswith("-"):
                out += _arg(arg)
        if verb.example:
            out += [".PP", "Example:", ".RS", ".nf", _esc(verb.example), ".fi", ".RE"]
    out += [".SH ENVIRONMENT",
            ".TP", "\\fBAFARM_MASTER\\fR", "the master's job port, HOST[:PORT]",
            ".TP", "\\fBAFARM_TOKEN\\fR", "the bearer token for a master that is not on"
            " loopback",
            ".SH EXIT STATUS"]
    for code, text in EXIT_CODES:
        out += [".TP", f"\\fB{code}\\fR", _esc(text)]
    out += [".SH SEE ALSO", "\\fBafarm-master\\fR(8), \\fBafarm-slave\\fR(8),"
            " \\fBafarm.conf\\fR(5)"]
    return "\n".join(out) + "\n"


def main(argv: list[str]) -> int:
    Path(argv[0]).write_text(render(), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
