"""Rewrite a fixture capture from its checkpoint: ``python -m golden.dit.fixture [fashion]``.

spec §7. Needs ``MKL_CBWR=COMPATIBLE`` in the environment, so that the file does not depend on
the CPU it was made on (see :mod:`golden.dit.capture`). The argument names the model (digits
when omitted).
"""

import os
import sys

from .capture import FIXTURES, capture_fixture, save_capture

__all__ = ["main"]


def main(argv: "list[str] | None" = None) -> int:
    """Write the fixture of the model named in ``argv``; exit status 2 without ``MKL_CBWR``."""
    argv = sys.argv[1:] if argv is None else argv
    name = argv[0] if argv else "digits"
    if name not in FIXTURES or len(argv) > 1:
        print(f"usage: python -m golden.dit.fixture [{'|'.join(FIXTURES)}]", file=sys.stderr)
        return 2
    if os.environ.get("MKL_CBWR") != "COMPATIBLE":
        print("set MKL_CBWR=COMPATIBLE so that the fixture does not depend on the CPU",
              file=sys.stderr)
        return 2
    path = FIXTURES[name][0]
    save_capture(capture_fixture(name=name), path)
    print(f"wrote {path} ({path.stat().st_size} bytes)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
