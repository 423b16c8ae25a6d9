"""``ribin ingest``: extract casing files and add them to a store."""

from __future__ import annotations

import click

from ribin.cli._common import echo_json, user_errors
from ribin.cli._correlation import NO_CORRELATE, correlate_ingested, site_network_file
from ribin.cli._options import advance, extract_kwargs, extraction_options, progress_bar


@click.command()
@click.argument("store", type=click.Path(file_okay=False))
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("--country", required=True, help="Owning country (ISO 3166 alpha-2, e.g. JM).")
@click.option("--site", default="", help="Owning site (laboratory).")
@click.option("--exhibit-id", help="Exhibit ID (one file only; default: the file name).")
@click.option("--role", type=click.Choice(["known", "questioned", "other"]), default="other")
@click.option("--case-ref", default="", help="The lab's case reference.")
@click.option("--acquired-at", default="", help="Acquisition date (ISO 8601).")
@click.option(
    "--sharing",
    type=click.Choice(["local", "cluster", "network"]),
    default="network",
    show_default=True,
    help="Who may find the exhibit in a search.",
)
@click.option(
    "--network",
    "network_file",
    type=click.Path(exists=True, dir_okay=False),
    help="Network file the country must belong to and correlation scopes come from "
    "(default: the site's, else the example shipped with RIBIN).",
)
@click.option(
    "--keep-going",
    is_flag=True,
    help="Store the files that extract and list the bad ones (exit 1 if any failed).",
)
@extraction_options
@NO_CORRELATE
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@user_errors
def ingest(store: str, files: tuple[str, ...], **params) -> None:
    """Extract signatures from FILES and add them to STORE (created if absent).

    The batch is one write: either every file lands or none does (with --keep-going, every
    file that extracts lands and each bad file is reported on its own line). Nothing is
    written, and no store is created, before every file has been read.
    """
    from ribin.ingest import batch_metadata, extract_files, store_extracted
    from ribin.network import load_network
    from ribin.store import SignatureStore

    as_json = params.pop("as_json")
    correlation = {k: params.pop(k) for k in ("no_correlate", "network_file")}
    exhibit_id = params.pop("exhibit_id")
    if exhibit_id is not None and len(files) != 1:
        raise click.UsageError("--exhibit-id needs exactly one file")
    pixel_size = params.pop("pixel_size")
    options = extract_kwargs(params)
    metadata = {
        "country": params["country"].upper(),
        "site": params["site"],
        "caliber": options.get("caliber", ""),
        "role": params["role"],
        "case_ref": params["case_ref"],
        "acquired_at": params["acquired_at"],
        "sharing": params["sharing"],
    }
    # checked before any file is read: the country against the network, every field
    metadata = batch_metadata(metadata, options)
    network_file = site_network_file(store, correlation["network_file"])
    load_network(network_file).require_country(metadata.country)
    with progress_bar("extracting", len(files)) as bar:
        exhibits, failures = extract_files(
            list(files),
            exhibit_ids=[exhibit_id] if exhibit_id is not None else None,
            pixel_size_um=pixel_size,
            progress=advance(bar),
            keep_going=params["keep_going"],
            **options,
        )
    for _, reason in failures:
        click.echo(f"error: {reason}", err=True)
    results = []
    if exhibits:
        with SignatureStore.open(store, "a") as opened:
            results = store_extracted(opened, exhibits, metadata)
    correlation["network_file"] = network_file
    leads = correlate_ingested(store, results, metadata.country, **correlation)
    if as_json:
        echo_json(
            {
                "store": store,
                "correlation": leads.document,
                "exhibits": [
                    {
                        "exhibit_id": r.exhibit_id,
                        "content_id": r.content_id,
                        "added": r.added,
                        "quality": r.quality,
                        "detection": r.detection,
                        "missing": r.missing,
                        "warnings": list(r.warnings),
                    }
                    for r in results
                ],
                "failed": [{"file": f, "error": reason} for f, reason in failures],
            }
        )
        _fail_if(failures, files)
        return leads.finish()
    for result in results:
        status = "added" if result.added else result.message
        click.echo(f"{result.exhibit_id}\t{status}\t{quality_line(result)}")
    _fail_if(failures, files)
    leads.finish(echo=True)


def _fail_if(failures: list[tuple[str, str]], files: tuple[str, ...]) -> None:
    if failures:
        raise click.ClickException(
            f"{len(failures)} of {len(files)} files failed; the others were stored"
        )


def quality_line(result) -> str:
    """Valid share and area of each region, what is missing, and any warning."""
    parts = []
    for region, label in (("breech_face", "BF"), ("firing_pin", "FP")):
        q = result.quality.get(region)
        if q is not None:
            parts.append(
                f"{label} {100 * q['valid_fraction']:.0f} % valid, {q['valid_area_mm2']:.1f} mm2"
            )
        elif region in result.missing:
            parts.append(f"{label} missing: {result.missing[region]}")
    parts += [f"warning: {w}" for w in result.warnings]
    return "; ".join(parts)
