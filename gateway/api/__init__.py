"""HTTP API: subscriber settings, SMS hook, operator endpoints, health and metrics."""
