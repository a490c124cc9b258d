"""Rewrite the fixture capture from the shipped checkpoint: ``python -m golden.dit.fixture``.

spec §7. Needs ``MKL_CBWR=COMPATIBLE`` in the environment, so that the file does not depend on
the CPU it was made on (see :mod:`golden.dit.capture`).
"""

import os
import sys

from .capture import FIXTURE_PATH, capture_fixture, save_capture

__all__ = ["main"]


def main() -> int:
    """Write :data:`~golden.dit.capture.FIXTURE_PATH`; exit status 2 without ``MKL_CBWR``."""
    if os.environ.get("MKL_CBWR") != "COMPATIBLE":
        print("set MKL_CBWR=COMPATIBLE so that the fixture does not depend on the CPU",
              file=sys.stderr)
        return 2
    save_capture(capture_fixture(), FIXTURE_PATH)
    print(f"wrote {FIXTURE_PATH} ({FIXTURE_PATH.stat().st_size} bytes)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
