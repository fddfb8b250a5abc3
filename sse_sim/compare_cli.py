"""The ``sse-sim compare`` and ``sse-sim run-real`` commands: real mode from the command line."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

BackendOpt = Annotated[str, typer.Option("--backend", help="fakeredis (in-process) or redis.")]
RedisUrlOpt = Annotated[
    str | None,
    typer.Option("--redis-url", help="Redis to use with --backend redis; none: a throwaway redis-server is started."),
]
DurationOpt = Annotated[float | None, typer.Option("--duration", help="Replay only the first SECONDS of the scenario (after --start).", min=0.001)]
StartOpt = Annotated[float, typer.Option("--start", help="Scenario instant the slice starts at, seconds.", min=0)]
MaxPlayersOpt = Annotated[int | None, typer.Option("--max-players", help="Keep at most this many players.", min=1)]
SeedOpt = Annotated[int, typer.Option("--seed", help="Seed of the workload (the same for both backends).")]


def register(app: typer.Typer) -> None:
    """Add ``compare`` and ``run-real`` to the sse-sim command line."""

    @app.command()
    def compare(
        scenario: Annotated[Path, typer.Argument(help="Scenario YAML file.", show_default=False)],
        backend: Annotated[
            str | None, typer.Option("--backend", help="fakeredis (in-process) or redis; default: redis with --redis-url, else fakeredis.")
        ] = None,
        redis_url: RedisUrlOpt = None,
        seed: SeedOpt = 0,
        seeds: Annotated[int, typer.Option("--seeds", help="Number of seeds to pool (seed, seed+1, ...).", min=1)] = 1,
        duration: DurationOpt = None,
        start: StartOpt = 0.0,
        max_players: MaxPlayersOpt = None,
        calibrate: Annotated[
            bool,
            typer.Option("--calibrate/--no-calibrate", help="Measure socket buffering for the simulator when the scenario does not set clients.socket_buffer_events."),
        ] = True,
    ) -> None:
        """Run the simulator and real mode on the same workload; exit 1 if a metric is outside tolerance."""
        from .compare import compare as run_compare
        from .scenario import load_scenario

        if backend is None:
            backend = "redis" if redis_url is not None else "fakeredis"
        elif backend == "fakeredis" and redis_url is not None:
            typer.echo("sse-sim: --redis-url needs --backend redis (or no --backend)", err=True)
            raise typer.Exit(2)
        sc = load_scenario(scenario)
        result = run_compare(
            sc,
            backend=backend,
            seed=seed,
            seeds=seeds if seeds > 1 else None,
            redis_url=redis_url,
            duration_s=duration,
            start_s=start,
            max_players=max_players,
            calibrate_socket_buffers=calibrate,
        )
        typer.echo(result.format())
        if not result.ok:
            typer.echo("sse-sim: outside tolerance: " + ", ".join(result.failed), err=True)
            raise typer.Exit(1)

    @app.command("run-real")
    def run_real_cmd(
        scenario: Annotated[Path, typer.Argument(help="Scenario YAML file.", show_default=False)],
        backend: BackendOpt = "fakeredis",
        redis_url: RedisUrlOpt = None,
        seed: SeedOpt = 0,
        duration: DurationOpt = None,
        start: StartOpt = 0.0,
        max_players: MaxPlayersOpt = None,
        out: Annotated[Path | None, typer.Option("--out", help="Folder for records.parquet, summary.json, throughput.csv.")] = None,
    ) -> None:
        """Replay a scenario through the real gateway and SSE clients; print its summary, write its outputs."""
        from .metrics import format_summary
        from .real.runner import run_real
        from .scenario import load_scenario

        sc = load_scenario(scenario)
        result = run_real(sc, seed, backend=backend, redis_url=redis_url, duration_s=duration, start_s=start, max_players=max_players)
        typer.echo(format_summary(result.summary(), f"{result.scenario.name} (seed {seed}, backend {backend})"))
        if out is not None:
            result.metadata.pop("workload_published_at", None)
            for name, path in result.save(out).items():
                typer.echo(f"wrote {name}: {path}")
