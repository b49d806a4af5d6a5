"""``--quick``: every benchmark as a run of seconds, to check it still works (figures not comparable)."""

import argparse


def parse_args(parser: argparse.ArgumentParser, **quick: object) -> argparse.Namespace:
    """Parse, with ``--quick`` setting each of ``quick`` (argument name: value) over what was given."""
    settings = " ".join(f"--{name.replace('_', '-')} {value}" for name, value in quick.items())
    parser.add_argument(
        "--quick", action="store_true", help=f"a run of seconds to check the script works: {settings}"
    )
    args = parser.parse_args()
    if args.quick:
        for name, value in quick.items():
            setattr(args, name, value)
    return args
