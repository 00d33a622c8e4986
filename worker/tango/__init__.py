"""Talking to Tango: the HTTP client (`client.py`), its authorisation, Basic or one OAuth token
shared by the fleet (`auth.py`), the exception tree grouped by what the worker must do
(`errors.py`), the mapping of every HTTP answer onto it (`error_mapping.py`) and the parsing of
Tango's "last sent at" instants (`timeparse.py`). Nothing here imports Celery."""
