"""The ``sse-sim size`` and ``sse-sim sweep`` commands: buffer sizing and parameter sweeps from a shell."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

ScenarioArg = Annotated[Path, typer.Argument(help="Scenario YAML file.", show_default=False)]
SeedsOpt = Annotated[int, typer.Option("--seeds", min=1, help="Seeds per point (0..N-1), the same at every point.")]
WorkersOpt = Annotated[int | None, typer.Option("--workers", min=1, help="Local worker processes (default: the CPUs available).")]


def _fail(message: str) -> typer.Exit:
    typer.echo(f"sse-sim: {message}", err=True)
    return typer.Exit(2)


def parse_sizes(text: str) -> list[int]:
    """'10,20,50' -> [10, 20, 50]; a clear error for anything else."""
    out = []
    for part in text.split(","):
        part = part.strip()
        if not part.isdigit() or int(part) < 1:
            raise _fail(f"--sizes {text!r}: {part!r} is not a whole number >= 1 (write e.g. --sizes 10,20,50,100)")
        out.append(int(part))
    return out


def parse_param(text: str) -> tuple[str, list[Any]]:
    """'gateway.buffer_size=10,20,50' -> ('gateway.buffer_size', [10, 20, 50]); values are read as YAML.

    A value list in brackets is read as one YAML list, for values that contain commas:
    ``clients.drain_time=[{kind: exponential, mean: 0.02}, {kind: exponential, mean: 0.05}]``.
    """
    import yaml

    name, sep, values = text.partition("=")
    name = name.strip()
    if not sep or not name or not values.strip():
        raise _fail(f"--param {text!r}: write NAME=V1,V2,... with a dotted scenario key, e.g. gateway.buffer_size=20,50,100")
    try:
        if values.strip().startswith("["):
            parsed = yaml.safe_load(values)
            if not isinstance(parsed, list):
                raise ValueError("not a list")
        else:
            parsed = [yaml.safe_load(v) for v in values.split(",")]
    except (yaml.YAMLError, ValueError) as exc:
        raise _fail(f"--param {text!r}: cannot read the values ({exc})") from None
    return name, parsed


def _size_history(scenario: Path, max_loss: float, by: str, sizes: str | None, seeds: int, workers: int | None, level: float, out: Path | None) -> None:
    """``sse-sim size --history``: the replay window's sizing, printed and written to --out."""
    from .history_sizing import size_history
    from .scenario import load_scenario

    values = None
    if sizes is not None:
        try:
            values = [float(v) for v in sizes.split(",") if v.strip()]
        except ValueError:
            raise _fail(f"--sizes {sizes!r}: write numbers separated by commas, e.g. 10,50,100") from None
    result = size_history(load_scenario(scenario), max_loss, by=by, values=values, seeds=seeds, n_workers=workers, level=level)  # type: ignore[arg-type]
    typer.echo(result.report())
    if out is not None:
        from .plots import detached, plot_loss_vs_history

        out.mkdir(parents=True, exist_ok=True)
        result.table.to_csv(out / "history_sizing.csv", index=False)
        with detached():
            fig, _ = plot_loss_vs_history(result)
            fig.savefig(out / "loss_vs_history.png", dpi=110)
        for name in ("history_sizing.csv", "loss_vs_history.png"):
            typer.echo(f"wrote {out / name}")


def _fit(trace: Path, out: Path, replay: bool, players: int | None, name: str | None) -> None:
    """``sse-sim fit``: a scenario (and its data files) written next to ``out``, checked by loading it."""
    import pandas as pd
    import yaml

    from .fit import FitError, fit_trace, replay_trace
    from .scenario import load_scenario

    if out.suffix not in (".yaml", ".yml"):
        raise _fail(f"--out {out}: the scenario is written as YAML; name it *.yaml")
    try:
        frame = pd.read_parquet(trace)
    except (OSError, ValueError) as exc:
        raise _fail(f"{trace}: cannot read the trace ({exc})") from None
    label = name or out.stem
    try:
        fitted = replay_trace(frame, name=label) if replay else fit_trace(frame, name=label, players=players)
    except FitError as exc:
        raise _fail(f"{trace}: {exc}") from None
    out.parent.mkdir(parents=True, exist_ok=True)
    for rel, data in fitted.files.items():
        (out.parent / rel).parent.mkdir(parents=True, exist_ok=True)
        data.to_csv(out.parent / rel, index=False)
    out.write_text(f"# {'Replays' if replay else 'Fitted to'} {trace.name} by sse-sim fit\n" + yaml.safe_dump(fitted.scenario, sort_keys=False))
    load_scenario(out)  # what was written is a valid scenario, data files included
    if not fitted.report.empty:
        with pd.option_context("display.width", 160, "display.max_columns", 20):
            typer.echo(fitted.report.set_index("event_type").T.to_string())
    for note in fitted.notes:
        typer.echo(note)
    typer.echo(f"wrote {out} ({len(fitted.scenario['publishers'])} publisher(s)) and {len(fitted.files)} data file(s)")


def register(app: typer.Typer) -> None:
    """Add ``size`` and ``sweep`` to the sse-sim command line."""

    @app.command()
    def size(
        scenario: ScenarioArg,
        max_loss: Annotated[float, typer.Option("--max-loss", help="Largest allowed overflow loss, a fraction (0.0001 = 0.01 %).")],
        seeds: SeedsOpt = 5,
        sizes: Annotated[str | None, typer.Option("--sizes", help="Evaluate exactly these buffer sizes, e.g. 10,20,50,100 (default: search).")] = None,
        max_size: Annotated[int, typer.Option("--max-size", min=1, help="Largest buffer size the search tries.")] = 10000,
        level: Annotated[float, typer.Option("--level", min=0.5, max=0.999, help="Confidence level of the bands.")] = 0.95,
        workers: WorkersOpt = None,
        out: Annotated[Path | None, typer.Option("--out", help="Folder for sizing.csv, sizing_per_seed.csv and loss_vs_buffer.png.")] = None,
        history: Annotated[
            bool,
            typer.Option("--history", help="Size the replay window (stream delivery) instead: --max-loss is then lost_history_expired."),
        ] = False,
        by: Annotated[str, typer.Option("--by", help="With --history: size 'entries' (history_size) or 'ttl' (history_ttl_s).")] = "entries",
    ) -> None:
        """Find the smallest buffer_size that keeps overflow loss under --max-loss; show the loss no size fixes.

        With --history, the smallest replay window (history entries, or TTL with --by ttl) that
        keeps lost_history_expired under --max-loss, and the Redis memory it costs.
        """
        from .scenario import load_scenario

        if not 0 <= max_loss < 1:
            raise _fail(f"--max-loss {max_loss}: must be a fraction in [0, 1), e.g. 0.0001 for 0.01 %")
        if by not in ("entries", "ttl"):
            raise _fail(f"--by {by!r}: use entries or ttl")
        if history:
            _size_history(scenario, max_loss, by, sizes, seeds, workers, level, out)
            return
        from .sizing import size_buffer

        size_list = parse_sizes(sizes) if sizes is not None else None
        sc = load_scenario(scenario)
        result = size_buffer(sc, max_loss, sizes=size_list, seeds=seeds, n_workers=workers, level=level, max_size=max_size)
        typer.echo(result.report())
        if out is not None:
            from .plots import detached, plot_loss_vs_buffer

            out.mkdir(parents=True, exist_ok=True)
            result.table.to_csv(out / "sizing.csv", index=False)
            result.per_seed.to_csv(out / "sizing_per_seed.csv", index=False)
            with detached():
                fig, _ = plot_loss_vs_buffer(result)
                fig.savefig(out / "loss_vs_buffer.png", dpi=110)
            for name in ("sizing.csv", "sizing_per_seed.csv", "loss_vs_buffer.png"):
                typer.echo(f"wrote {out / name}")

    @app.command("fit")
    def fit_cmd(
        trace: Annotated[Path, typer.Argument(help="A trace written by sse-sim capture (.parquet).", show_default=False)],
        out: Annotated[Path, typer.Option("--out", help="The scenario to write (.yaml); its data files go next to it.")],
        replay: Annotated[bool, typer.Option("--replay", help="Replay the trace exactly instead of fitting a model.")] = False,
        players: Annotated[
            int | None, typer.Option("--players", min=1, help="Players per brand, when more exist than the trace shows.")
        ] = None,
        name: Annotated[str | None, typer.Option("--name", help="The scenario's name (default: the file's).")] = None,
    ) -> None:
        """Fit a scenario to captured traffic (rates and their spread, bursts, daily cycle, payload sizes), or replay it."""
        _fit(trace, out, replay, players, name)

    @app.command("sweep")
    def sweep_cmd(
        scenario: ScenarioArg,
        param: Annotated[
            list[str],
            typer.Option("--param", help="NAME=V1,V2,... with a dotted scenario key; repeat for a grid of every combination."),
        ],
        seeds: SeedsOpt = 1,
        workers: WorkersOpt = None,
        out: Annotated[Path | None, typer.Option("--out", help="Write every (point, seed) row to this .csv or .parquet file.")] = None,
    ) -> None:
        """Run a scenario over a grid of parameters and seeds; print the mean of the key metrics per point."""
        import pandas as pd

        from .scenario import load_scenario
        from .sweep import sweep

        if out is not None and out.suffix not in (".csv", ".parquet"):
            raise _fail(f"--out {out}: the file must end in .csv or .parquet")
        grid: dict[str, list[Any]] = {}
        for p in param:
            name, values = parse_param(p)
            if name in grid:
                raise _fail(f"--param {name} is given twice; put all its values in one --param")
            grid[name] = values
        sc = load_scenario(scenario)
        frame = sweep(sc, grid, seeds=seeds, n_workers=workers)
        shown = ["loss_rate", "loss_rate_dropped_overflow", "loss_rate_lost_disconnected", "latency_p99_s"]
        names = list(grid)
        # group on text keys: parameter values may be mappings, which pandas cannot group on
        keys = frame[names].astype(str)
        means = frame[shown].groupby([keys[n] for n in names], sort=False).mean().reset_index()
        with pd.option_context("display.width", 160, "display.max_rows", 500, "display.float_format", "{:.6g}".format):
            typer.echo(f"{sc.name}: {len(frame) // seeds} points x {seeds} seed(s); mean over seeds")
            typer.echo(means.to_string(index=False))
        if out is not None:
            out.parent.mkdir(parents=True, exist_ok=True)
            if out.suffix == ".csv":
                frame.to_csv(out, index=False)
            else:
                frame.astype({n: str for n in names if frame[n].dtype == object}).to_parquet(out, index=False)
            typer.echo(f"wrote {out}")


__all__ = ["register", "parse_param", "parse_sizes"]
