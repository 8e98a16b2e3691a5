"""What the entry points' jobs do, callable in-process by the entry points, the benchmarks and the
searches alike (nothing imports an entry point). The one place below the entry points that knows run
dirs and loggers: `train` (a training job), `rundir` (which config a run dir belongs to, resumable dirs,
the lock), `loggers` (Lightning loggers, W&B run ids, csv history across a resume, secrets kept out of
logs), `report` (metrics.json and the final table)."""
