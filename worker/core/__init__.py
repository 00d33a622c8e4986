"""What every other package uses and that uses nothing of ours: the settings (`settings.py`),
the root of our exceptions (`errors.py`), log handlers (`logging_setup.py`) and the masking of
contact data in logs (`redaction.py`)."""
