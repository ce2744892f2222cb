"""Command line: ``python -m cae shapes | train | list | evaluate``.

Errors exit with status 2 and one line on stderr, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from cae.spec import PRESETS, ArchitectureSpec, preset


class CliError(Exception):
    """An error to print as one line and exit with status 2."""


def _load_spec_argument(args: argparse.Namespace) -> ArchitectureSpec:
    if getattr(args, "spec", None):
        path = Path(args.spec)
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as error:
            raise CliError(
                f"cannot read the spec file: {error}. Received: spec={str(path)!r}"
            ) from None
        return ArchitectureSpec.from_json(text)
    return preset(args.preset or "classic")


def command_shapes(args: argparse.Namespace) -> int:
    """Print the shape table of a preset or a spec file (or Keras's own shapes with --keras)."""
    from cae.shapes import compute_shapes, format_table

    spec = _load_spec_argument(args)
    report = compute_shapes(spec)
    if args.keras:
        from cae.builder import build, keras_rows

        rows = keras_rows(build(spec))
        if args.json:
            print(json.dumps(rows, indent=2))
        else:
            for row in rows:
                shape = "x".join(str(n) for n in row["output_shape"])
                print(
                    f"{row['part']:<8} {row['index']:>2}  {row['type']:<10} {shape:<12} {row['params']:>10,}"
                )
        return 0
    if args.json:
        print(json.dumps([row.as_dict() for row in report.rows], indent=2))
    else:
        print(format_table(report))
    return 0


def _add_spec_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--preset", choices=sorted(PRESETS), help="a built-in architecture")
    group.add_argument("--spec", metavar="FILE.json", help="an architecture file")


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {"shapes": command_shapes}


def make_parser() -> argparse.ArgumentParser:
    """The argument parser of ``python -m cae``."""
    parser = argparse.ArgumentParser(prog="python -m cae", description="CAE Studio command line")
    sub = parser.add_subparsers(dest="command", required=True)
    shapes = sub.add_parser("shapes", help="print every layer's output shape and parameters")
    _add_spec_arguments(shapes)
    shapes.add_argument("--json", action="store_true", help="print the rows as JSON")
    shapes.add_argument(
        "--keras", action="store_true", help="build the model and report Keras's shapes"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit status."""
    parser = make_parser()
    args = parser.parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except (CliError, ValueError, OSError) as error:
        message = " ".join(str(error).split())
        print(f"error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
