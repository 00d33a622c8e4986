"""Helpers shared by test modules and bench (no test module imports helpers from another one;
pytest fixtures stay in conftest.py files, as thin wrappers over these).

- waiting: `wait_for`, polling with a deadline.
- processes: child environments, `python -m worker ...` runs, worker/receiver subprocesses.
- redis_db, redis_server: the tests' Redis database; a redis-server of a test's own.
- settings, sandbox, broker: settings for a run, the sandbox as Tango, the producer's broker.
- records, calls: requests waited on to the end; what Tango saw (windows, duplicates, FIFO).
- receiver, cli, metrics, logs, readme: webhooks signed, the CLI in-process, /metrics parsed,
  captured logging, the README's examples.
- runtime, scripted_tango, policy, record_store, window: unit tests' building blocks.
- findings, hostile_corpus: the chaos/hostile findings report; the hostile input corpus.
"""
