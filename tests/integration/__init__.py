"""Integration tests: the real local stack or a Prefect server (marker ``integration``)."""
