"""Thin Celery tasks: decode arguments, run plain code, turn its answer into a retry."""
