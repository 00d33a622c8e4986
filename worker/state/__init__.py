"""Everything kept in Redis, the fleet's one source of truth.

`keys.py` names every key; `clock.py` is Redis's clock; `lua/*.lua` are every Lua script of the
project (each names its KEYS and ARGV at its top) and `scripts.py` loads them and checks the
names its callers pass; `records.py` stores requests, their FIFO per order and their outcomes;
`gate.py` is the atomic "may this request call Tango now" (turn, 30-second window, rate limit);
`window.py` the window's arithmetic; `wakeup.py` nudges sleeping schedulers; `metrics.py`,
`queries.py`, `record_pages.py` and `redis_health.py` read and describe that state. Nothing here
imports Celery, or anything above it but types."""
