"""Errors whose message is the one-line reason the CLI prints before exiting non-zero."""


class ContactrankError(Exception):
    """A failure the user can act on; ``str(err)`` is a one-line reason."""


class InputError(ContactrankError):
    """Bad input: a missing landing folder, an unreadable file, a bad date or id."""


class QuarantineThresholdExceeded(ContactrankError):
    """Too large a share of a day's rows was quarantined; the good rows were still written."""


class NotReady(ContactrankError):
    """A step's input does not exist yet (e.g. scoring before any model is registered)."""


class FailClosed(ContactrankError):
    """A safety input (suppressions) could not be read: nothing is published."""


class HomeBusy(ContactrankError):
    """Another command holds the home's lock for longer than this one may wait."""
