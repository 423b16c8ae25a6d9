"""``ribin search``: ranked candidates for a query exhibit within a scope."""

from __future__ import annotations

import click

from ribin.cli._common import echo_json, user_errors
from ribin.cli._options import (
    advance,
    extract_kwargs,
    extraction_options,
    is_casing_file,
    kernels_ready,
    progress_bar,
)


@click.command()
@click.argument("store", type=click.Path(exists=True, file_okay=False))
@click.argument("query")
@click.option("--country", help="Searching country (default: the stored query's country).")
@click.option(
    "--scope",
    required=True,
    help="country, cluster:NAME, network, or country codes (BB,JM).",
)
@click.option("--top", type=click.IntRange(min=1), default=20, show_default=True)
@click.option("--exhaustive", is_flag=True, help="Fully compare every candidate in scope.")
@click.option(
    "--network",
    "network_file",
    type=click.Path(exists=True, dir_okay=False),
    help="Network file (default: the example shipped with RIBIN).",
)
@click.option("--filter-caliber", help="Only candidates of this caliber.")
@click.option(
    "--modality",
    type=click.Choice(["3d", "2d"]),
    help="Default: the query's (the other: not validated; scores only, no LR).",
)
@click.option("--role", type=click.Choice(["known", "questioned", "other"]))
@click.option("--from", "date_from", help="Acquired on or after (ISO 8601).")
@click.option("--to", "date_to", help="Acquired on or before (ISO 8601).")
@click.option(
    "--engine",
    type=click.Choice(["embedded", "dask"]),
    default="embedded",
    show_default=True,
    help="dask: spread the store's segments over a Dask cluster (same results).",
)
@click.option(
    "--scheduler",
    metavar="ADDRESS",
    help="Dask scheduler, e.g. tcp://host:8786 (implies --engine dask; "
    "without it, dask starts a local cluster).",
)
@extraction_options
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.option(
    "--report",
    "report_path",
    type=click.Path(dir_okay=False),
    help="Also write a self-contained HTML report to this file.",
)
@click.option(
    "--report-top",
    type=click.IntRange(min=0),
    default=5,
    show_default=True,
    help="Candidates compared in full in the report.",
)
@click.option("--png", "png_dir", type=click.Path(file_okay=False), help="Report figures here.")
@user_errors
def search(store: str, query: str, **params) -> None:
    """Rank the exhibits of STORE against QUERY (a casing file or a stored exhibit ID)."""
    from ribin.calibration import models_for_store
    from ribin.ingest import extract_file
    from ribin.network import load_network
    from ribin.search import Filters
    from ribin.search import search as run_search
    from ribin.store import SignatureStore

    as_json = params.pop("as_json")
    report = {k: params.pop(k) for k in ("report_path", "report_top", "png_dir")}
    if report["report_path"]:
        from ribin.report import check_writable

        check_writable(report["report_path"])
    pixel_size = params.pop("pixel_size")
    options = extract_kwargs(params)
    # everything the user typed is checked before any file is read or the store opened
    network = load_network(params["network_file"])
    filters = Filters(
        caliber=params["filter_caliber"],
        modality=params["modality"],
        role=params["role"],
        acquired_from=params["date_from"],
        acquired_to=params["date_to"],
    )
    country = params["country"].upper() if params["country"] else None
    query_is_file = is_casing_file(query)
    if country is not None:
        network.require_country(country)
        network.scope_countries(params["scope"], country)
    elif query_is_file:
        raise click.ClickException("a casing file query needs the searching country: --country CC")
    else:
        network.check_scope(params["scope"])
    models, calibration_source = models_for_store(store)
    kernels_ready()
    with SignatureStore.open(store, "r") as opened:
        target = (
            extract_file(query, pixel_size_um=pixel_size, **options) if query_is_file else query
        )
        with progress_bar("comparing", 1) as bar:
            result = run_search(
                opened,
                target,
                scope=params["scope"],
                searcher=country,
                top=params["top"],
                exhaustive=params["exhaustive"],
                network=network,
                filters=filters,
                calibration=models,
                progress=advance(bar),
                engine=params["engine"],
                scheduler=params["scheduler"],
            )
    if report["report_path"] or report["png_dir"]:
        from ribin.report import write_search_report

        write_search_report(
            store, target, result, models, report_path=report["report_path"],
            png_dir=report["png_dir"], top=report["report_top"],
            calibration_source=calibration_source,
            parameters={"command": "ribin search", "store": store, "query": query, **params},
        )  # fmt: skip
        for what, where in (("report", report["report_path"]), ("figures", report["png_dir"])):
            if where:
                click.echo(f"{what} written to {where}", err=True)
    if as_json:
        document = result.to_json()
        document["provenance"]["calibration_file"] = calibration_source
        echo_json(document)
        return
    click.echo(format_table(result))


def format_table(result) -> str:
    """The human table of a :class:`ribin.search.SearchResult`."""
    lines = [
        f"query {result.query}, searched by {result.searcher}, scope {result.scope} "
        f"({', '.join(result.countries)}): {result.compared} full comparisons of "
        f"{result.considered} candidates in {result.seconds:.1f} s",
        f"{'rank':>4}  {'exhibit':<20} {'cc':<3} {'score':>7} {'log10 LR':>9}  "
        f"{'BF rank/score/CMC':<20} {'FP rank/score/CMC':<20}",
    ]
    for c in result.candidates:
        lr = f"{c.log_lr:+9.2f}" if c.log_lr is not None else f"{'uncalib.':>9}"
        lines.append(
            f"{c.rank:>4}  {c.exhibit_id:<20} {c.country:<3} {c.score:7.2f} {lr}  "
            f"{_region(c.breech_face):<20} {_region(c.firing_pin):<20}"
        )
    if not result.candidates:
        lines.append("      (no candidate in scope)")
    names = sorted({c.calibration for c in result.candidates if c.calibration})
    lines.append(
        "      ranked by score (sum of the regions' scores); log10 LR: "
        + ("; ".join(names) if names else "uncalibrated")
        + (
            ""
            if all(c.calibration for c in result.candidates)
            else " (uncalibrated: no LR for that region/modality; `ribin calibrate` on the "
            "lab's own test fires)"
        )
    )
    return "\n".join(lines)


def _region(match) -> str:
    if match is None or match.score is None:
        return "-"
    return f"{match.rank} / {match.score:.2f} / {match.cmc_count}"
