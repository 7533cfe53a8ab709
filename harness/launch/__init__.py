"""Runs as jobs of a cluster engine (Slurm through submitit, Ray tasks): see docs/architecture.md.

Plain Python, no pytest: `spool` (atomic result files and leases with heartbeats, the only
channel between hosts), `jobs` (what one job executes), `slurm` and `ray_tasks` (the engines),
`controller` (tickets, submission, waiting, ingesting results into the store); `python -m
harness.launch status` collects detached jobs.
"""
