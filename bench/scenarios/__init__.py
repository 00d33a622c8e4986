"""The benchmark scenarios; each `run(ctx, params)` returns a `ScenarioResult`."""
