"""The test suite, by kind: ``unit/``, ``integration/`` and ``deploy/`` (see ``conftest.py``)."""
