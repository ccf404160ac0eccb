"""Run the benchmarks and print markdown tables: ``python -m benchmarks [--quick] [--only X]``."""

from __future__ import annotations

import argparse
import os
import platform
import sys


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks")
    parser.add_argument("--quick", action="store_true", help="10^5 instead of 10^6 entries")
    parser.add_argument("--backends", default="sqlite,postgres")
    parser.add_argument(
        "--only", default="core", help="comma list of: core, grpc, agent, reads, year"
    )
    args = parser.parse_args()
    backends = args.backends.split(",")
    big = 100_000 if args.quick else 1_000_000
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    )
    tables = []
    for part in args.only.split(","):
        if part == "core":
            from benchmarks import ledger_core

            tables += ledger_core.run(big, backends)
        elif part == "agent":
            from benchmarks import agent

            tables += agent.run(backends, quick=args.quick)
        elif part == "reads":
            from benchmarks import reads

            tables += reads.run(backends, quick=args.quick)
        elif part == "year":
            from benchmarks import year

            tables += year.run(backends, quick=args.quick)
        elif part == "grpc":
            from benchmarks import grpc

            tables += grpc.run(backends, grpc.Options.quick() if args.quick else None)
        else:
            sys.exit(f"unknown benchmark {part}")
    for table in tables:
        print(table.markdown())


if __name__ == "__main__":
    main()
