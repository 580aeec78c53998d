"""The exception types usable from every layer of the package."""


class InterIRError(ValueError):
    """A user-facing error: bad input, bad file, bad configuration. The message is one line; the command line
    prints it without a traceback."""


class BackendNotInstalled(ImportError):
    """Raised while loading an ops backend that this installation cannot provide (an unbuilt extension, a
    missing toolkit); the message is the whole reason, which `interir info` and the backend errors show."""
