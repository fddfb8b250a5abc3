"""The ``sse-sim`` command line: run, check an SLO, validate, print schemas and column docs.

Every user error (bad scenario, bad option, unreadable file) ends with one clear message on
stderr and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from . import analysis_cli, compare_cli
from .errors import SseSimError
from .events import cli as events_cli
from .real import cli_calibrate, cli_capture, cli_gateway

app = typer.Typer(
    name="sse-sim",
    help="Simulate and measure SSE delivery through Redis pub/sub: loss by cause, latency, buffer sizing.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    # plain help: typer's rich panels print boolean flags as "--help <bool>" and load rich
    rich_markup_mode=None,
)
schema_app = typer.Typer(help="Print a JSON Schema.", no_args_is_help=True, rich_markup_mode=None)
app.add_typer(schema_app, name="schema")

ScenarioArg = Annotated[Path, typer.Argument(help="Scenario YAML file.", show_default=False)]
SeedOpt = Annotated[int, typer.Option("--seed", help="Seed of the run; the same seed gives the same records.")]


def fail(message: str, code: int = 2) -> typer.Exit:
    """Print a user-facing error on stderr and return the Exit to raise."""
    typer.echo(f"sse-sim: {message}", err=True)
    return typer.Exit(code)


def _load(path: Path):  # type: ignore[no-untyped-def]
    from .scenario import load_scenario

    return load_scenario(path)


@app.command()
def validate(scenario: ScenarioArg) -> None:
    """Check a scenario file; print what is wrong, or a one-line description of it."""
    sc = _load(scenario)
    pop = sc.population
    typer.echo(
        f"{scenario}: valid ({sc.name}: {sc.duration_s:g} s, {pop.n_players} players, "
        f"{pop.n_clients} clients, {len(sc.publishers)} publishers, buffer {sc.gateway.buffer_size} "
        f"{sc.gateway.overflow_policy})"
    )


@app.command()
def run(
    scenario: ScenarioArg,
    seed: SeedOpt = 0,
    out: Annotated[Path | None, typer.Option("--out", help="Folder for records.parquet, summary.json, throughput.csv.")] = None,
    plots: Annotated[bool, typer.Option("--plots/--no-plots", help="Also write PNG figures into --out.")] = True,
    records: Annotated[
        bool | None,
        typer.Option(
            "--records/--no-records",
            help="Keep one row per attempt (records.parquet, written block by block) or only the aggregates. "
            "Default: records up to 20 M attempts.",
            show_default=False,
        ),
    ] = None,
    workers: Annotated[int, typer.Option("--workers", min=1, help="Local worker processes the run's blocks are spread over.")] = 1,
    scheduler: Annotated[
        str | None, typer.Option("--scheduler", help="Dask scheduler address (tcp://host:8786): run the blocks on that cluster.")
    ] = None,
) -> None:
    """Run a scenario through the simulator, print its summary, and write its outputs."""
    from .metrics import format_summary
    from .simulation import records_fit, simulate

    sc = _load(scenario)
    small = records_fit(sc)
    keep = small if records is None else records
    client = _dask_client(scheduler) if scheduler else None
    try:
        # records of a large run go to Parquet block by block as it runs: memory stays bounded
        records_to = None
        if out is not None and keep and not small:
            out.mkdir(parents=True, exist_ok=True)
            records_to = out / "records.parquet"
        result = simulate(
            sc, seed=seed, progress=True, records=keep and small, records_to=records_to, workers=workers, client=client
        )
    finally:
        if client is not None:
            client.close()
    summary = result.summary()
    typer.echo(format_summary(summary, f"{sc.name} (seed {seed}, backend sim)"))
    if sc.delivery.keeps_anything and result.records is not None:
        from .costs import DELIVERY_COSTS

        typer.echo(format_summary(result.delivery_costs(), "delivery costs", DELIVERY_COSTS))
    if out is not None:
        paths = result.save(out, summary=summary)
        if records_to is not None:
            paths = {"records": records_to, **paths}
        if plots:
            paths.update(_write_plots(result, out))
        for name, path in paths.items():
            typer.echo(f"wrote {name}: {path}")


def _dask_client(address: str):  # type: ignore[no-untyped-def]
    """A client of the Dask scheduler at ``address``, or a one-line error if it cannot be reached."""
    try:
        from distributed import Client

        return Client(address, timeout="10s")
    except (OSError, TimeoutError, ValueError) as exc:
        raise fail(f"cannot reach the Dask scheduler at {address}: {exc}") from None


def _write_plots(result, out: Path) -> dict[str, Path]:  # type: ignore[no-untyped-def]
    try:
        from .plots import save_standard_figures
    except ImportError:
        return {}
    return save_standard_figures(result, out)


@app.command()
def check(
    scenario: ScenarioArg,
    max_loss: Annotated[float | None, typer.Option("--max-loss", help="Largest allowed loss rate (fraction, e.g. 0.0001).")] = None,
    max_p99: Annotated[float | None, typer.Option("--max-p99", help="Largest allowed p99 latency, seconds.")] = None,
    max_cause: Annotated[
        list[str] | None,
        typer.Option("--max-cause", help="Per-cause limit CAUSE=FRACTION, e.g. dropped_overflow=0; repeatable."),
    ] = None,
    seed: SeedOpt = 0,
) -> None:
    """Fail (exit 1) when a run breaks the SLO, naming what broke; for CI pipelines."""
    from .metrics import format_summary
    from .outcomes import LOSS_CAUSES
    from .simulation import simulate

    if max_loss is None and max_p99 is None and not max_cause:
        raise fail("check needs at least one of --max-loss, --max-p99, --max-cause")
    limits: dict[str, float] = {}
    for item in max_cause or []:
        name, _, value = item.partition("=")
        if name not in LOSS_CAUSES:
            raise fail(f"--max-cause {item!r}: unknown cause {name!r} (allowed: {', '.join(LOSS_CAUSES)})")
        try:
            limits[name] = float(value)
        except ValueError:
            raise fail(f"--max-cause {item!r}: the limit must be a number, as in {name}=0.001") from None
    sc = _load(scenario)
    summary = simulate(sc, seed=seed).summary()
    broken = []
    if max_loss is not None and not summary["loss_rate"] <= max_loss:
        broken.append(f"loss rate {summary['loss_rate']:.6%} > {max_loss:.6%}")
    if max_p99 is not None and not summary["latency_p99_s"] <= max_p99:
        broken.append(f"p99 latency {summary['latency_p99_s'] * 1000:.3f} ms > {max_p99 * 1000:.3f} ms")
    for cause, limit in limits.items():
        value = summary[f"loss_rate_{cause}"]
        if not value <= limit:
            broken.append(f"{cause} {value:.6%} > {limit:.6%}")
    typer.echo(format_summary(summary, f"{sc.name} (seed {seed})"))
    if broken:
        typer.echo("SLO BROKEN: " + "; ".join(broken), err=True)
        raise typer.Exit(1)
    typer.echo("SLO met")


@app.command()
def replicate(
    scenario: ScenarioArg,
    seeds: Annotated[int, typer.Option("--seeds", min=2, help="Number of seeds (0..N-1).")] = 10,
    level: Annotated[float, typer.Option("--level", min=0.5, max=0.999, help="Confidence level.")] = 0.95,
    out: Annotated[Path | None, typer.Option("--out", help="Write per_seed.csv and ci.csv here.")] = None,
) -> None:
    """Run several seeds and print each summary metric's mean with its confidence interval."""
    import pandas as pd

    from .simulation import replicate as run_replications

    sc = _load(scenario)
    per_seed, ci = run_replications(sc, seeds, level=level, progress=True)
    with pd.option_context("display.width", 120, "display.max_rows", 100, "display.float_format", "{:.6g}".format):
        typer.echo(f"{sc.name}: {seeds} seeds, {level:.0%} intervals")
        typer.echo(ci.to_string(index=False))
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        per_seed.to_csv(out / "per_seed.csv", index=False)
        ci.to_csv(out / "ci.csv", index=False)
        typer.echo(f"wrote {out / 'per_seed.csv'} and {out / 'ci.csv'}")


@schema_app.command("scenario")
def schema_scenario() -> None:
    """The JSON Schema of a scenario file."""
    from .scenario import scenario_json_schema

    typer.echo(json.dumps(scenario_json_schema(), indent=2))


@app.command()
def columns(table: Annotated[str | None, typer.Argument(help="records, summary, throughput, ...")] = None) -> None:
    """Print the documented columns of the returned DataFrames as Markdown."""
    from .tables import TABLES, columns_markdown

    if table is not None and table not in TABLES:
        raise fail(f"unknown table {table!r} (allowed: {', '.join(TABLES)})")
    typer.echo(columns_markdown(table))


# Commands that live beside the subsystems they drive; each module imports its subsystem only
# inside its commands, so that ``--help`` stays quick.
analysis_cli.register(app)
compare_cli.register(app)
events_cli.register(app, schema_app)
cli_gateway.register(app)
cli_capture.register(app)
cli_calibrate.register(app)


def _click_error_types() -> tuple[type[BaseException], ...]:
    """The base classes of click's errors, whether typer uses click or its own copy of it."""
    types: list[type[BaseException]] = []
    typer_error = getattr(typer, "TyperException", None)  # typer >= 0.26 vendors click
    if isinstance(typer_error, type):
        types.append(typer_error)
    try:
        import click
    except ImportError:
        pass
    else:
        types.append(click.exceptions.ClickException)
    return tuple(types)


def usage_error_line(exc: BaseException) -> str:
    """One line for a command-line mistake: what was wrong, and where to read the usage."""
    message = exc.format_message() if hasattr(exc, "format_message") else str(exc)
    message = " ".join(message.split())
    ctx = getattr(exc, "ctx", None)
    path = getattr(ctx, "command_path", None) if ctx is not None else None
    hint = f" (see '{path} --help')" if path else ""
    return f"sse-sim: {message}{hint}"


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the app; a user error is one line on stderr and exit 2, never a traceback.

    Exit codes: 0 success, 1 an SLO or check failed (the command says which), 2 a usage error
    or bad input, 130 interrupted.
    """
    try:
        # `sse-sim token` is run by scripts and pages' backends: skip typer's option
        # coercion (it loads pydantic) when the arguments are plain; see token_without_typer.
        token = cli_gateway.token_without_typer(sys.argv[1:] if argv is None else list(argv))
        if token is not None:
            typer.echo(token)
            sys.exit(0)
        # without standalone mode click returns the code of a typer.Exit instead of exiting
        rc = app(args=argv, prog_name="sse-sim", standalone_mode=False)
        sys.exit(rc if isinstance(rc, int) else 0)
    except SseSimError as exc:
        typer.echo(f"sse-sim: {exc}", err=True)
        sys.exit(2)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except (typer.Abort, KeyboardInterrupt):
        typer.echo("sse-sim: interrupted", err=True)
        sys.exit(130)
    except _click_error_types() as exc:
        typer.echo(usage_error_line(exc), err=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
