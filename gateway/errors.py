"""One error hierarchy. A peer never sees exception text: ingress adapters map these to
protocol replies (SMTP codes, SMPP command_status, HTTP status) with fixed wording."""

from __future__ import annotations


class GatewayError(Exception):
    """Root of every error mamori raises on purpose."""


class ConfigError(GatewayError):
    """The configuration or a data file is invalid; the process refuses to start."""


class InputError(GatewayError):
    """Input from a peer or a user is malformed or too large."""


class MessageTooLarge(InputError):
    """The message exceeds a configured size limit."""


class CheckError(GatewayError):
    """A check failed; the pipeline records CHECK_FAILED and goes on."""


class ModelError(GatewayError):
    """A model artifact is missing, corrupt, or fails its integrity check."""


class StoreError(GatewayError):
    """The policy, quarantine or audit store is unavailable."""


class Overloaded(GatewayError):
    """Back-pressure: too much work in flight; the ingress answers with a temporary failure."""
