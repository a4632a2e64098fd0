"""mamori: spam and fraud filtering gateway for SMS and email."""

__version__ = "0.1.0"
