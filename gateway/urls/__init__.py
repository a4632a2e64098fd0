"""Fraud URL intelligence: extraction, canonicalisation, list index, lookalike detection."""
