"""One run of a resend request, phase by phase; `worker.resend.executor` strings them together.

- `begin`: take the request with a fencing token (and, where possible, pass the gate in the
  same round trip); a call cut off by its worker's death is noted here.
- `gate`: the order's window and a rate-limit slot, or the reason to wait for them.
- `call`: the one send to Tango's resend endpoint.
- `settle`: store what follows a call (finish, defer, retry), fenced by the run's token.
- `probe`: what a call of unknown outcome leaves owed, and how a probe is judged from it.

Plain code without Celery, like the executor.
"""
