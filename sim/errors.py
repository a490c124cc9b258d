"""Errors that the command line turns into one-line messages instead of tracebacks."""

__all__ = ["UsageError", "CheckFailed"]


class UsageError(Exception):
    """A mistake in what the user asked for (bad file, bad shape, bad option): exit status 2."""


class CheckFailed(Exception):
    """A bit-exact check failed (RTL and golden model disagree): exit status 1."""
