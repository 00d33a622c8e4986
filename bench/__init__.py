"""Benchmarks of tango-resend: `python -m bench [--quick] [--only SCENARIO,...]`.

Every run starts its own sandbox (Tango simulator, in a subprocess) and real Celery worker
processes against a flushed Redis database, and writes `bench/results/latest.json`,
`latest.md` and PNG plots. See `bench/README.md`.
"""
