"""contactrank: which address of each person to try first, on which channel, and when."""

__version__ = "0.1.0"
