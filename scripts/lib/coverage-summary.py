#!/usr/bin/env python3
"""Prints line coverage per crate and in total from `cargo llvm-cov report --json --summary-only`.

Usage: coverage-summary.py SUMMARY_JSON REPO_ROOT
The last line printed is the total percentage alone (scripts/coverage reads it for the floor).
Python rather than jq/column: python3 is on every machine scripts/test runs on.
"""
import json
import math
import sys


def one_decimal(x: float) -> str:
    # Rounded down, so the table never shows more than was reached.
    return f"{math.floor(x * 10) / 10:.1f}"


def main() -> None:
    summary_path, root = sys.argv[1], sys.argv[2].rstrip("/") + "/"
    with open(summary_path, encoding="utf-8") as f:
        data = json.load(f)["data"][0]
    crates: dict[str, list[int]] = {}
    for entry in data["files"]:
        name = entry["filename"]
        crate = (name[len(root):] if name.startswith(root) else name).split("/")[0]
        lines = entry["summary"]["lines"]
        acc = crates.setdefault(crate, [0, 0])
        acc[0] += lines["covered"]
        acc[1] += lines["count"]
    rows = [("CRATE", "LINES COVERED", "LINE COVERAGE")]
    for crate, (covered, count) in sorted(crates.items()):
        pct = one_decimal(covered * 100 / count) if count else "0.0"
        rows.append((crate, f"{covered}/{count}", f"{pct} %"))
    totals = data["totals"]["lines"]
    rows.append(("TOTAL", f"{totals['covered']}/{totals['count']}",
                 f"{one_decimal(totals['percent'])} %"))
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
    print(totals["percent"])


if __name__ == "__main__":
    main()
