"""What refusing a repeated JSON key costs a request: ``duplicate_key`` beside the parse itself.

Run: .venv/bin/python bench/duplicate_keys.py [--repeat 20000]

For 1 and 100 diabetes rows, by position and by name, prints µs per request of ``orjson.loads``
and of ``model.rows.duplicate_key`` on its result (one count of colons in C; the text is parsed
again only when colons sit inside strings or a key repeats: that case is timed too).
"""

import argparse
import json
import sys
import timeit
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import orjson

from bench.quick import parse_args
from mlops_assets.model.rows import duplicate_key
from mlops_assets_tests.projects import FEATURES

ROW = [0.038, 0.05, 0.062, 0.022, -0.044, -0.035, -0.043, -0.003, 0.02, -0.018]


def bodies(rows: int) -> dict[str, bytes]:
    named = [dict(zip(FEATURES, ROW, strict=True))] * rows
    colons = [{**row, "sex": 1} for row in named]
    return {
        "by position": json.dumps({"data": [ROW] * rows}).encode(),
        "by name": json.dumps({"data": named}).encode(),
        "by name, a colon in a string (slow path)": json.dumps({"data": colons, "note": "a:b"}).encode(),
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeat", type=int, default=20_000)
    args = parse_args(parser, repeat=200)
    print(f"{'rows':>5} {'body':<42} {'orjson.loads µs':>16} {'duplicate_key µs':>17}")
    for rows in (1, 100):
        for label, body in bodies(rows).items():
            payload = orjson.loads(body)
            assert duplicate_key(payload, body) is None
            number = max(args.repeat // rows, 50)
            parse = min(timeit.repeat(lambda body=body: orjson.loads(body), number=number, repeat=5)) / number
            check = (
                min(timeit.repeat(lambda p=payload, b=body: duplicate_key(p, b), number=number, repeat=5))
                / number
            )
            print(f"{rows:>5} {label:<42} {parse * 1e6:>16.2f} {check * 1e6:>17.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
