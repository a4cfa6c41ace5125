"""The sections of the run report, each built from the record as escaped HTML."""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Mapping
from datetime import datetime
from html import escape
from io import BytesIO
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from PIL import Image as PILImage

from ..measure._sizes import SizeCounts
from ._figures import size_histogram
from ._markup import Html, cell, duration, link, mapping, note, section, table

# What each figure of an instance stitch means (pipeline.stitch.SeamReport).
_SEAM_NOTES = {
    "seam_pieces": "pieces of objects that reach into a neighbouring chunk",
    "matched": "seam pieces joined to a piece of a neighbour (IoU above the threshold)",
    "fragments": "seam pieces left unmatched, each an object cut at the seam; "
    "few fragments mean the halo was wide enough",
    "merged_objects": "final objects made of more than one piece",
    "iou_threshold": "the IoU a pair of pieces needed to be joined",
}


def subtitle(record: Mapping[str, Any]) -> str:
    started, finished = record.get("started"), record.get("finished")
    if started and finished:
        return f"started {started}, finished {finished}"
    return f"started {started}" if started else "run times not recorded"


def summary(record: Mapping[str, Any], source: Mapping[str, Any]) -> Html:
    cards = [
        ("objects", record.get("objects")),
        ("wall time", _wall_time(record)),
        ("chunks", mapping(record.get("chunks_written")).get("total")),
        ("image", " \u00d7 ".join(str(s) for s in source.get("shape") or []) or None),
    ]
    body = "".join(
        f'<div class="card"><b>{cell(value)}</b>{escape(name)}</div>' for name, value in cards
    )
    return Html(f'<div class="cards" id="summary">{body}</div>')


def _wall_time(record: Mapping[str, Any]) -> str | None:
    try:
        started = datetime.fromisoformat(str(record["started"]))
        finished = datetime.fromisoformat(str(record["finished"]))
    except (KeyError, ValueError):
        timings = mapping(record.get("timings_s"))
        seconds = [v for v in timings.values() if isinstance(v, int | float)]
        return duration(sum(seconds)) if seconds else None
    return duration((finished - started).total_seconds())


def preview(png: bytes | None) -> Html:
    if png is None:
        return section("preview", "Preview", note("No preview was given for this report."))
    picture = PILImage.open(BytesIO(png))
    width, height = picture.size
    about = mapping(_png_about(picture))
    caption = "Labels coloured by id over the image, outlines in full colour"
    if "labels_level" in about:
        caption += f"; labels read at level {about['labels_level']}, {_every(about.get('step'))}"
    if about.get("image_level") is not None:
        caption += f"; image at level {about['image_level']}"
    if about.get("z") is not None:
        caption += f"; z plane {about['z']}"
    data = base64.b64encode(png).decode("ascii")
    return section(
        "preview",
        "Preview",
        f'<figure><img alt="Preview of the labels" width="{width}" height="{height}" '
        f'src="data:image/png;base64,{data}"><figcaption>{escape(caption)}.</figcaption></figure>',
    )


def _every(step: Any) -> str:
    """``every pixel``, ``every 2nd pixel``, ``every 13th pixel``."""
    if not isinstance(step, int) or step <= 1:
        return "every pixel"
    suffix = "th" if 10 <= step % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(step % 10, "th")
    return f"every {step}{suffix} pixel"


def _png_about(picture: PILImage.Image) -> Any:
    text = getattr(picture, "text", {}).get("segpipe")
    try:
        return json.loads(text) if text else None
    except json.JSONDecodeError:
        return None


def inputs(record: Mapping[str, Any], source: Mapping[str, Any]) -> Html:
    rows = [
        ("source", source.get("path")),
        ("shape", source.get("shape")),
        ("dtype", source.get("dtype")),
        ("chunks", record.get("chunks")),
        ("halo", record.get("halo")),
    ]
    return section("inputs", "Inputs", table(rows))


def workflow(record: Mapping[str, Any]) -> Html:
    steps = record.get("steps")
    content: list[str] = []
    if isinstance(steps, list) and steps:
        items = "".join(f"<li><code>{cell(step)}</code></li>" for step in steps)
        content.append(f"<h3>Steps</h3><ol>{items}</ol>")
    else:
        content.append(note("Steps not recorded."))
    fitted = mapping(record.get("fitted"))
    content.append("<h3>Fitted values</h3>")
    content.append(
        table(fitted.items(), ("step", "fitted"))
        if fitted
        else note("No step was fitted to the whole image.")
    )
    if record.get("workflow") is not None:
        plain = json.loads(json.dumps(record["workflow"], default=str))  # what YAML can say
        text = yaml.safe_dump(plain, sort_keys=False, default_flow_style=False)
        content.append(f"<h3>Workflow as run (YAML)</h3><pre>{escape(text)}</pre>")
    return section("workflow", "Workflow", *content)


def timings(record: Mapping[str, Any]) -> Html:
    chunks = [
        (name, *(mapping(record.get(key)).get(k) for k in ("total", "written", "skipped")))
        for name, key in (("first pass", "first_pass"), ("write", "chunks_written"))
        if isinstance(record.get(key), Mapping)
    ]
    content: list[str] = [_stage_times(record.get("timings_s"))]
    if chunks:
        content.append("<h3>Chunks</h3>")
        header = ("pass", "chunks", "computed", "resumed (done before)")
        content.append(table(chunks, header, {1: "num", 2: "num", 3: "num"}))
    return section("timings", "Timings", *content)


def _stage_times(timings: Any) -> Html:
    stages = {
        str(k): float(v)
        for k, v in mapping(timings).items()
        if isinstance(v, int | float) and not isinstance(v, bool)
    }
    if not stages:
        return note("Timings not recorded.")
    longest = max(max(stages.values()), 1e-9)
    total = sum(stages.values())
    rows: list[tuple[Any, ...]] = [
        (
            stage,
            Html(escape(duration(seconds))),
            f"{100 * seconds / total:.0f}%" if total else "",
            Html(f'<div style="width:{100 * seconds / longest:.1f}%"></div>'),
        )
        for stage, seconds in stages.items()
    ]
    rows.append((Html("<b>total</b>"), Html(escape(duration(total))), "", ""))
    return table(rows, ("stage", "time", "share", ""), {1: "num", 2: "num", 3: "bar"})


def objects(record: Mapping[str, Any], sizes: SizeCounts | None) -> Html:
    count = record.get("objects")
    content: list[str] = [f"<p><b>{cell(count)}</b> objects.</p>"]
    per_class = mapping(record.get("objects_per_class"))
    if per_class:
        content.append("<h3>Objects per class</h3>")
        content.append(table(per_class.items(), ("class", "objects"), {1: "num"}))
    content.append("<h3>Object sizes</h3>")
    if sizes is None:
        content.append(note("Object sizes were not recorded for this run."))
    elif sizes.count == 0:
        content.append(note("No objects, so no sizes."))
    else:
        stats = [
            ("smallest", sizes.pixels[0]),
            ("median", _median(sizes)),
            ("mean", float((sizes.pixels * sizes.objects).sum() / sizes.count)),
            ("largest", sizes.pixels[-1]),
        ]
        content.append(Html(f"<figure>{size_histogram(sizes)}</figure>"))
        rows = [(name, f"{value:,.6g}") for name, value in stats]
        content.append(table(rows, ("object size", "pixels"), {1: "num"}))
    return section("objects", "Objects", *content)


def _median(sizes: SizeCounts) -> float:
    """The median object size, as ``np.median`` of every object's size."""
    ranks = np.cumsum(sizes.objects)
    middle = [(sizes.count - 1) // 2, sizes.count // 2]
    return float(sizes.pixels[np.searchsorted(ranks, middle, side="right")].mean())


def seams(seams: Any) -> Html:
    found = mapping(seams)
    if not found:
        return section("seams", "Seams", note("Seam stitching not recorded."))
    content: list[str] = [f"<p>Method: <b>{cell(found.get('method'))}</b></p>"]
    figures = [(k, v, _SEAM_NOTES.get(k, "")) for k, v in found.items() if k != "method"]
    pieces, matched = found.get("seam_pieces"), found.get("matched")
    if isinstance(pieces, int) and isinstance(matched, int) and pieces:
        figures.append(("matched share", f"{100 * matched / pieces:.1f}%", "matched / seam pieces"))
    if figures:
        content.append(table(figures, ("figure", "value", "meaning"), {1: "num"}))
    elif "exact" in str(found.get("method", "")):
        content.append(note("Exact: objects are joined across seams pixel by pixel."))
    return section("seams", "Seams", *content)


def outputs(outputs: Any, folder: Path) -> Html:
    found = mapping(outputs)
    if not found:
        return section("outputs", "Outputs", note("Outputs not recorded."))
    rows = [(kind, link(str(target), folder)) for kind, target in found.items()]
    return section("outputs", "Outputs", table(rows, ("output", "path (relative to this page)")))


def performance(path: Path | None, folder: Path) -> Html:
    if path is None:
        return section(
            "performance", "Dask performance", note("No Dask performance report was given.")
        )
    return section(
        "performance",
        "Dask performance",
        f"<p>Dask's performance report (task stream, worker profiles, bandwidth): "
        f"{link(str(path), folder)}</p>",
        note(f"It is a separate page at {os.path.abspath(path)}; open it from here."),
    )


def versions(versions: Any) -> Html:
    found = mapping(versions)
    if not found:
        return section("versions", "Versions", note("Versions not recorded."))
    return section("versions", "Versions", table(found.items(), ("package", "version")))


def raw(record: Mapping[str, Any]) -> Html:
    shown = dict(record)
    if "object_sizes" in shown:
        shown["object_sizes"] = "in the histogram above"
    text = json.dumps(shown, indent=2, default=str)
    return section(
        "record",
        "Run record",
        f"<details><summary>the whole record, as JSON</summary><pre>{escape(text)}</pre></details>",
    )
