"""Mosaics: lists of scenes, GDAL VRTs and STAC items read as one image, against
``rasterio.merge.merge`` and GDAL's own reprojection, then labelled whole by scipy."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio
from affine import Affine
from rasterio.crs import CRS
from rasterio.merge import merge
from rasterio.warp import Resampling, calculate_default_transform, reproject, transform_bounds
from rasterio.windows import Window
from scipy import ndimage
from skimage.filters import threshold_otsu

from pipeline import InputValueError, ReadError, UnsupportedInputError, Workflow, open_image
from pipeline.data import sample_path
from pipeline.io import _mosaic
from pipeline.io._zarr import open_label_array
from tests.conftest import assert_same_partition, run_segpipe
from tests.mosaics import composite, nearest

SCENE = sample_path("L7_ETMs.tif")
EIGHT = np.ones((3, 3), dtype=bool)


def cut(
    folder: Path,
    name: str,
    rows: tuple[int, int],
    cols: tuple[int, int],
    *,
    fill: str | None = None,
    nodata: float | None = None,
    crs: int | None = None,
) -> str:
    """A scene cut from the Landsat sample: its window, a zero wedge along its east edge
    (``fill="wedge"``, as a scene's edge looks), tiled, optionally warped to EPSG ``crs``."""
    with rasterio.open(SCENE) as src:
        window = Window(cols[0], rows[0], cols[1] - cols[0], rows[1] - rows[0])
        data = src.read(window=window)
        transform = src.transform @ Affine.translation(cols[0], rows[0])
        source_crs = src.crs
        profile = {**src.profile, "tiled": True, "blockxsize": 64, "blockysize": 64}
    if fill == "wedge":
        height, width = data.shape[1:]
        row, col = np.mgrid[:height, :width]
        data[:, col > width - 15 - row // 8] = 0
    if crs is not None:
        target = CRS.from_epsg(crs)
        bounds = rasterio.transform.array_bounds(*data.shape[1:], transform)
        warped_transform, width, height = calculate_default_transform(
            source_crs, target, data.shape[2], data.shape[1], *bounds
        )
        warped = np.zeros((data.shape[0], height, width), data.dtype)
        reproject(
            data,
            warped,
            src_transform=transform,
            src_crs=source_crs,
            dst_transform=warped_transform,
            dst_crs=target,
            resampling=Resampling.nearest,
            dst_nodata=0,
        )
        data, transform, source_crs, nodata = warped, warped_transform, target, 0
    profile.update(
        width=data.shape[2],
        height=data.shape[1],
        transform=transform,
        crs=source_crs,
        nodata=nodata,
    )
    path = folder / name
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
    return str(path)


@pytest.fixture(scope="module")
def scenes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Three overlapping scenes in the sample's CRS (two with a zero wedge, one of them
    tagged nodata 0), and one warped to EPSG:4326."""
    folder = tmp_path_factory.mktemp("scenes")
    return {
        "west": cut(folder, "west.tif", (0, 352), (0, 200), fill="wedge", nodata=0),
        "east": cut(folder, "east.tif", (40, 352), (150, 349), fill="wedge"),
        "north": cut(folder, "north.tif", (0, 120), (120, 349)),
        "wgs84": cut(folder, "wgs84.tif", (5, 130), (100, 340), crs=4326),
    }


def same_grid(scenes: dict[str, str]) -> list[str]:
    return [scenes["west"], scenes["east"], scenes["north"]]


@pytest.mark.parametrize("chunks", [64, (100, 37), 1000])
def test_a_list_of_scenes_is_rasterio_merge(scenes: dict[str, str], chunks: Any) -> None:
    files = same_grid(scenes)
    image = open_image(files, chunks=chunks)
    merged, transform = merge(files)  # the first valid pixel wins; nodata where none
    assert image.transform == transform and image.shape == merged.shape
    assert image.crs == rasterio.open(files[0]).crs.to_wkt() and image.nodata == 0
    np.testing.assert_array_equal(image.data.compute(), merged)
    assert image.mosaic is not None and [s.name for s in image.mosaic.scenes] == files


def test_declared_nodata_overrides_every_scene(scenes: dict[str, str]) -> None:
    files = same_grid(scenes)  # west tags 0: its zero wedge is no data, filled by the others
    declared = open_image(files, nodata=255)  # now zero is data, and 255 is no data
    layers = []
    for file in files:
        with rasterio.open(file) as src:
            values = np.zeros((src.count, 352, 349), np.uint8)
            valid = np.zeros(values.shape, bool)
            row = round((src.transform.f - declared.transform.f) / declared.transform.e)
            col = round((src.transform.c - declared.transform.c) / declared.transform.a)
            place = (slice(None), slice(row, row + src.height), slice(col, col + src.width))
            values[place], valid[place] = src.read(), True
            layers.append((values, valid & (values != 255)))
    found = declared.data.compute()
    np.testing.assert_array_equal(found, composite(layers, 255))
    assert declared.nodata == 255 and (found == 255).any()  # the corner no scene covers
    assert not np.array_equal(found, merge(files)[0])  # the wedge stays zero


def test_objects_crossing_scene_seams_are_one(
    scenes: dict[str, str], tmp_path: Path, cluster_client: object
) -> None:
    files = same_grid(scenes)
    steps = [
        {"threshold": {"method": "otsu", "foreground": "below"}},
        {"label": {"connectivity": 2}},
    ]
    flow = Workflow({"path": files, "bands": [5], "nodata": 0}, steps, str(tmp_path / "l.zarr"), 64)
    result = flow.run(cluster_client)
    band = merge(files, indexes=[5], nodata=0)[0][0]
    valid = band != 0
    reference, count = ndimage.label((band <= threshold_otsu(band[valid])) & valid, EIGHT)
    assert_same_partition(open_label_array(result.outputs["labels"])[...], reference)
    assert result.num == count
    # the seams: objects of the reference that lie in two scenes
    west, east = np.zeros(band.shape, bool), np.zeros(band.shape, bool)
    west[:, :200], east[40:, 150:] = True, True
    crossing = np.intersect1d(reference[west & ~east], reference[east & ~west])
    assert crossing[crossing > 0].size >= 3
    assert result.record["source"]["scenes"] == files


def test_a_vrt_reads_as_gdal_reads_it(scenes: dict[str, str], tmp_path: Path) -> None:
    files = same_grid(scenes)
    path = tmp_path / "mosaic.vrt"
    path.write_text(vrt(list(reversed(files)), merge(files, nodata=0)[1], (352, 349)))
    image = open_image(str(path), bands=[5], chunks=(70, 90))
    with rasterio.open(path) as src:
        gdal = src.read([5])
    np.testing.assert_array_equal(image.data.compute(), gdal)
    # GDAL paints the last source on top: the list reversed is merge's first-wins.
    np.testing.assert_array_equal(gdal, merge(files, indexes=[5], nodata=0)[0])


def vrt(files: list[str], transform: Any, shape: tuple[int, int]) -> str:
    """A GDAL VRT of band 5 of ``files`` (same grid), written as gdalbuildvrt would."""
    crs = rasterio.open(files[0]).crs.to_wkt()
    sources = []
    for file in files:
        with rasterio.open(file) as src:
            col = round((src.transform.c - transform.c) / transform.a)
            row = round((src.transform.f - transform.f) / transform.e)
            sources.append(
                f"<ComplexSource><SourceFilename>{file}</SourceFilename><SourceBand>5</SourceBand>"
                f'<SrcRect xOff="0" yOff="0" xSize="{src.width}" ySize="{src.height}"/>'
                f'<DstRect xOff="{col}" yOff="{row}" xSize="{src.width}" ySize="{src.height}"/>'
                "<NODATA>0</NODATA></ComplexSource>"
            )
    bands = "".join(
        f'<VRTRasterBand dataType="Byte" band="{b}"><NoDataValue>0</NoDataValue>'
        + ("".join(sources) if b == 5 else "")
        + "</VRTRasterBand>"
        for b in range(1, 7)
    )
    return (
        f'<VRTDataset rasterXSize="{shape[1]}" rasterYSize="{shape[0]}"><SRS>{crs}</SRS>'
        f"<GeoTransform>{', '.join(map(str, transform.to_gdal()))}</GeoTransform>"
        f"{bands}</VRTDataset>"
    )


def test_scenes_in_another_crs_are_refused_by_name(scenes: dict[str, str]) -> None:
    with pytest.raises(
        InputValueError, match=r"do not share one grid: .*wgs84\.tif is in EPSG:4326; give crs:"
    ):
        open_image([scenes["west"], scenes["wgs84"]])


def test_reprojected_scenes_are_gdal_reprojection(scenes: dict[str, str]) -> None:
    files = [scenes["west"], scenes["wgs84"], scenes["east"]]
    image = open_image(files, crs="EPSG:31985", chunks=(90, 80), resampling="nearest")
    # The grid keeps the first scene's pixels and covers every footprint.
    west = rasterio.open(files[0])
    assert image.transform.a == west.transform.a and image.transform.e == west.transform.e
    offset = ~image.transform @ (west.transform.c, west.transform.f)
    assert offset == (round(offset[0]), round(offset[1]))
    left, top = image.transform.c, image.transform.f
    right = left + image.shape[2] * image.transform.a
    bottom = top + image.shape[1] * image.transform.e
    for file in files:
        with rasterio.open(file) as src:
            box = transform_bounds(src.crs, "EPSG:31985", *src.bounds)
        assert left <= box[0] and bottom <= box[1] and box[2] <= right and box[3] <= top
    layers = [nearest(file, image.crs, image.transform, image.shape[1:]) for file in files]
    np.testing.assert_array_equal(image.data.compute(), composite(layers, 0))
    assert [p.warped for placed in image.mosaic.placements for p in placed] == [False, True, False]


@pytest.mark.parametrize("resampling", ["bilinear", "cubic"])
def test_reprojection_does_not_depend_on_the_chunks(
    scenes: dict[str, str], resampling: str
) -> None:
    files = [scenes["wgs84"], scenes["east"]]
    grids = [
        open_image(files, crs="EPSG:31985", resolution=30, resampling=resampling, chunks=chunks)
        for chunks in (1000, (41, 67), 64)
    ]
    first = grids[0].data.compute()
    assert (first > 0).mean() > 0.5
    for image in grids[1:]:
        np.testing.assert_array_equal(image.data.compute(), first)


def test_each_chunk_opens_only_the_scenes_it_touches(
    scenes: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    files = same_grid(scenes)
    opened: list[str] = []
    original = _mosaic.open_raster

    def counting(path: str, *args: Any, **kwargs: Any) -> Any:
        opened.append(path)
        return original(path, *args, **kwargs)

    image = open_image(files, chunks=64)
    monkeypatch.setattr(_mosaic, "open_raster", counting)
    image.data.blocks[0, 5, 0].compute(scheduler="sync")  # rows 320-352, cols 0-64: west only
    assert opened == [scenes["west"]]
    opened.clear()
    image.data.blocks[0, 0, 4].compute(scheduler="sync")  # rows 0-64, cols 256-320
    assert sorted(opened) == sorted([scenes["east"], scenes["north"]])


def test_the_graph_holds_no_pixels(scenes: dict[str, str]) -> None:
    import cloudpickle  # type: ignore[import-untyped]

    image = open_image(same_grid(scenes), chunks=64)
    graph = dict(image.data.__dask_graph__())
    assert len(graph) == image.data.npartitions
    assert len(cloudpickle.dumps(graph)) < image.data.nbytes / 20


# --- STAC -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def stac(scenes: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An ItemCollection of the three same-grid scenes, one single-band COG per asset
    (B4, B5), hrefs relative to the JSON."""
    folder = tmp_path_factory.mktemp("stac")
    features = []
    for name in ("west", "east", "north"):
        assets = {}
        with rasterio.open(scenes[name]) as src:
            for band in (4, 5):
                file = folder / f"{name}_B{band}.tif"
                profile = {**src.profile, "count": 1}
                with rasterio.open(file, "w", **profile) as dst:
                    dst.write(src.read([band]))
                assets[f"B{band}"] = {
                    "href": f"./{file.name}",
                    "type": "image/tiff; application=geotiff",
                }
            assets["thumbnail"] = {"href": "./thumb.png", "type": "image/png"}
            bounds = transform_bounds(src.crs, "EPSG:4326", *src.bounds)
        features.append(_item(name, bounds, assets))
    path = folder / "items.json"
    path.write_text(json.dumps({"type": "FeatureCollection", "features": features}))
    return path


def _item(name: str, bounds: tuple[float, ...], assets: dict[str, Any]) -> dict[str, Any]:
    west, south, east, north = bounds
    ring = [[west, south], [east, south], [east, north], [west, north], [west, south]]
    return {
        "type": "Feature",
        "stac_version": "1.0.0",
        "id": name,
        "geometry": {"type": "Polygon", "coordinates": [ring]},
        "bbox": list(bounds),
        "properties": {"datetime": "2024-01-01T00:00:00Z"},
        "links": [],
        "assets": assets,
    }


def test_a_stac_item_collection_is_a_mosaic_of_its_items(
    scenes: dict[str, str], stac: Path
) -> None:
    image = open_image(str(stac), assets=["B5", "B4"], chunks=100)
    merged = merge(same_grid(scenes), indexes=[5, 4])[0]
    np.testing.assert_array_equal(image.data.compute(), merged)
    assert [scene.name for scene in image.mosaic.scenes] == ["west", "east", "north"]
    one = json.loads(stac.read_text())["features"][1]
    item = stac.with_name("east.json")
    item.write_text(json.dumps(one))
    np.testing.assert_array_equal(
        open_image(str(item), assets=["B5"]).data.compute(),
        rasterio.open(scenes["east"]).read([5]),
    )


def test_stac_asks_for_assets_it_cannot_guess(stac: Path) -> None:
    with pytest.raises(InputValueError, match=r"item 'west' has 2 GeoTIFF assets \(B4, B5 of"):
        open_image(str(stac))
    with pytest.raises(InputValueError, match=r"item 'west' has no asset 'B8'; its assets are B4"):
        open_image(str(stac), assets=["B8"])


def test_a_json_that_is_not_stac(tmp_path: Path) -> None:
    path = tmp_path / "x.json"
    path.write_text('{"type": "Topology"}')
    with pytest.raises(UnsupportedInputError, match="a JSON source must be a STAC Item"):
        open_image(str(path))
    path.write_text("{")
    with pytest.raises(ReadError, match="not valid JSON"):
        open_image(str(path))


# --- a mosaic in a workflow file, and what inspect shows ---------------------------------------


def test_a_workflow_file_lists_its_scenes_relative_to_itself(
    scenes: dict[str, str], tmp_path: Path
) -> None:
    folder = Path(scenes["west"]).parent
    path = folder / "flow.yaml"
    path.write_text(
        "source: {path: [west.tif, east.tif, north.tif], bands: [5], nodata: 0}\n"
        "steps: [threshold, label]\n"
        f"output: {tmp_path / 'out.zarr'}\n"
    )
    flow = Workflow.from_yaml(path)
    assert flow.spec.source.resolved(flow.base) == same_grid(scenes)
    image = flow.spec.source.open(flow.base, None)
    assert image.shape == (1, 352, 349) and image.nodata == 0
    with pytest.raises(InputValueError, match=r"source\.path is a list of 3 scenes"):
        flow.source_path()


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ({"path": []}, "the list of scenes is empty"),
        ({"path": ["a.tif", "b*.tif"]}, r"'b\*\.tif': a mosaic lists its scenes one by one"),
        ({"path": "a.tif", "resolution": -3}, "resolution is one positive pixel size"),
        ({"path": "a.tif", "resampling": "fancy"}, "resampling"),
        ({"path": "a.tif", "level": 1, "crs": "EPSG:4326"}, "level and crs"),
        ({"path": "a.tif", "nodata": "none"}, "nodata"),
    ],
)
def test_bad_sources_are_refused_when_read(source: dict[str, Any], message: str) -> None:
    with pytest.raises(InputValueError, match=message):
        Workflow(source, ["threshold", "label"], "out.zarr")


def test_bad_mosaics_are_refused_before_any_work(scenes: dict[str, str], tmp_path: Path) -> None:
    with pytest.raises(InputValueError, match=r"nodata -1 does not fit the scenes' type uint8"):
        open_image(same_grid(scenes), nodata=-1)
    one_band = tmp_path / "one_band.tif"
    with (
        rasterio.open(scenes["east"]) as src,
        rasterio.open(one_band, "w", **{**src.profile, "count": 1}) as dst,
    ):
        dst.write(src.read([1]))
    with pytest.raises(
        InputValueError, match=r"different numbers of bands \(.*west\.tif: 6, .*one_band\.tif: 1\)"
    ):
        open_image([scenes["west"], str(one_band)])
    with pytest.raises(InputValueError, match="level 1 cannot be read from a mosaic"):
        open_image(same_grid(scenes), level=1)
    with pytest.raises(ReadError, match=r"nowhere\.tif: no such file"):
        open_image([scenes["west"], str(tmp_path / "nowhere.tif")])
    with pytest.raises(InputValueError, match="give resolution:"):
        open_image([scenes["wgs84"]], crs="EPSG:32725")


def test_inspect_shows_the_mosaic(scenes: dict[str, str], tmp_path: Path) -> None:
    done = run_segpipe("inspect", scenes["west"], scenes["wgs84"], "--crs", "EPSG:31985")
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "mosaic of 2 scenes" in out and "EPSG:31985" in out
    assert f"{scenes['west']}: rows 0-352, cols 0-200, EPSG:31985, read as is" in out
    assert "wgs84.tif: rows" in out and "EPSG:4326, reprojected (nearest)" in out
    assert "covered" in out


def test_segpipe_run_refuses_scenes_on_two_grids_before_any_cluster_starts(
    scenes: dict[str, str], tmp_path: Path
) -> None:
    path = tmp_path / "flow.yaml"
    path.write_text(
        f"source: [{scenes['west']}, {scenes['wgs84']}]\n"
        f"steps: [threshold, label]\noutput: {tmp_path / 'out.zarr'}\n"
    )
    done = run_segpipe("run", str(path))
    assert done.returncode == 1
    assert "cluster:" not in done.stdout  # no cluster was started
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "wgs84.tif is in EPSG:4326; give crs: and resolution:" in lines[0]
    assert not (tmp_path / "out.zarr").exists()
