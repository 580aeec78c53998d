"""The one exception type the CLI turns into a one-line message (no traceback unless --debug)."""


class InterIRError(ValueError):
    """A user-facing error: bad input, bad file, bad configuration. The message is one line."""
