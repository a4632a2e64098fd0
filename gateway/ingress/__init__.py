"""Ingress adapters: thin translators between a wire protocol and Message/Verdict."""
