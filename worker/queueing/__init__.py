"""The Celery glue, in one place: the app, its configuration and task names (`app.py`), the
task message a new request's Lua script pushes (`task_messages.py`), the scheduler that
publishes parked requests when they are due (`scheduler.py`) and what each worker process runs
beside its tasks (`lifecycle.py`: the scheduler, callback delivery threads, the metrics
endpoint). The tasks themselves are the top-level `tasks/` package."""
