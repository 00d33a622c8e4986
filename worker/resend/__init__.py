"""The resend itself: what a request may hold (`validation.py`), the producer API that records
and queues it (`producer.py`), one run of a request (`executor.py`), the pure policy of what
follows Tango's answer (`decision.py`) and telling others the outcome (`callbacks.py`).

`validation`, `decision` and `executor` do not import Celery; `producer` publishes tasks, so it
does."""
