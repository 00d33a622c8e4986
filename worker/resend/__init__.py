"""The resend itself: what a request may hold (`validation.py`), the producer API that records
and queues it (`producer.py`), one run of a request (`executor.py`, its phases in `run/`), the
pure policy of what follows Tango's answer (`decision.py`) and telling others the outcome
(`callbacks.py`).

`validation`, `decision`, `executor`, `run` and `callbacks` do not import Celery (the in-process
`resend_finished` hook is a `worker.core.hooks.Hook`); `producer` publishes tasks, so it does."""
