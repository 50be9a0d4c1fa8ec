"""Unit tests: the library alone, no services (marker ``unit``)."""
