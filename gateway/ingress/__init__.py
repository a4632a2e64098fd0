"""Ingress adapters: wire protocols <-> Message/Verdict."""
