"""Helpers shared by test modules (no test module imports helpers from another one)."""
