"""``ribin ingest``: extract casing files and add them to a store."""

from __future__ import annotations

import click

from ribin.cli._common import echo_json, user_errors
from ribin.cli._correlation import NETWORK, NO_CORRELATE, correlate_ingested
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
@extraction_options
@NO_CORRELATE
@NETWORK
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@user_errors
def ingest(store: str, files: tuple[str, ...], **params) -> None:
    """Extract signatures from FILES and add them to STORE (created if absent).

    The batch is one write: either every file lands or none does.
    """
    from ribin.ingest import ingest as ingest_files
    from ribin.store import SignatureStore

    as_json = params.pop("as_json")
    correlation = {k: params.pop(k) for k in ("no_correlate", "network_file")}
    exhibit_id = params.pop("exhibit_id")
    if exhibit_id and len(files) != 1:
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
    with SignatureStore.open(store, "a") as opened, progress_bar("extracting", len(files)) as bar:
        results = ingest_files(
            opened,
            list(files),
            metadata,
            exhibit_ids=[exhibit_id] if exhibit_id else None,
            pixel_size_um=pixel_size,
            progress=advance(bar),
            **options,
        )
    leads = correlate_ingested(store, results, metadata["country"], **correlation)
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
            }
        )
        return leads.finish()
    for result in results:
        status = "added" if result.added else result.message
        click.echo(f"{result.exhibit_id}\t{status}\t{quality_line(result)}")
    leads.finish(echo=True)


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
