# SPDX-License-Identifier: MIT
"""afarmctl's entry point: build the parser from the verb table, run a verb, map errors."""

import argparse
import os
import sys
from pathlib import Path

from afarm import __version__
from afarm.cli.client import Client
from afarm.cli.commands import HANDLERS
from afarm.cli.text import printable
from afarm.cli.verbs import EXIT_CODES, GLOBAL_ARGS, VERBS
from afarm.errors import AfarmError, UsageError

EX_OK, EX_FAILED, EX_USAGE = 0, 1, 2


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> "None":  # type: ignore[override]
        # main() says "afarmctl: error:" already; a verb's parser names its verb.
        verb = self.prog.removeprefix("afarmctl").strip()
        raise UsageError(f"{verb + ': ' if verb else ''}{message} (see {self.prog} --help)")


def build_parser() -> argparse.ArgumentParser:
    epilog = "exit codes: " + "; ".join(f"{c} {t}" for c, t in EXIT_CODES)
    parser = _Parser(prog="afarmctl", description="Drive an afarm render farm.",
                     epilog=epilog)
    parser.add_argument("--version", action="version", version=f"afarmctl {__version__}")
    for arg in GLOBAL_ARGS:
        parser.add_argument(*arg.names, help=arg.help, **arg.kwargs)
    sub = parser.add_subparsers(dest="verb", metavar="VERB", parser_class=_Parser)
    for verb in VERBS:
        p = sub.add_parser(verb.name, help=verb.summary, description=verb.description,
                           epilog=f"example: {verb.example}" if verb.example else None)
        for arg in verb.args:
            p.add_argument(*arg.names, help=arg.help, **arg.kwargs)
    return parser


def read_token(token_file: str | None) -> str | None:
    if token_file:
        try:
            return Path(token_file).read_text("utf-8").strip() or None
        except OSError as exc:
            raise UsageError(f"--token-file {token_file}: {exc.strerror}") from None
    return os.environ.get("AFARM_TOKEN") or None


def run(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    if not args.verb:
        raise UsageError("give a verb, e.g. afarmctl jobs (see afarmctl --help)")
    client = Client(args.master, args.results, read_token(args.token_file))
    if client.token is None:
        client.token = client.local_token()
    return HANDLERS[args.verb](args, client)


def main(argv: list[str] | None = None) -> int:
    """The one place where exceptions become exit codes."""
    try:
        return run(sys.argv[1:] if argv is None else argv)
    except UsageError as exc:
        print(printable(f"afarmctl: error: {exc}"), file=sys.stderr)
        return EX_USAGE
    except AfarmError as exc:
        print(printable(f"afarmctl: {exc}"), file=sys.stderr)
        return EX_FAILED
    except KeyboardInterrupt:
        print("afarmctl: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
