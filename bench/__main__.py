"""Run every benchmark module (or those named on the command line) and print their tables."""

import importlib
import pkgutil
import sys
import time
from pathlib import Path


def main(argv: list[str]) -> int:
    names = sorted(m.name for m in pkgutil.iter_modules([str(Path(__file__).parent)])
                   if m.name.startswith("bench_"))
    if argv:
        unknown = [a for a in argv if f"bench_{a}" not in names and a not in names]
        if unknown:
            print(f"bench: unknown benchmark {unknown[0]!r}; known: "
                  f"{', '.join(n[6:] for n in names)}", file=sys.stderr)
            return 2
        names = [n for n in names if n in argv or n[6:] in argv]
    for name in names:
        print(f"\n=== {name[6:]} " + "=" * (70 - len(name)))
        t0 = time.perf_counter()
        importlib.import_module(f"bench.{name}").main()
        print(f"({name[6:]}: {time.perf_counter() - t0:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
