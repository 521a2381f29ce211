"""Fuzzed input (issue 28): every reader a user feeds either reads a file correctly or
refuses it with the project's own error (``StflowError``: file, problem, fix); never another
exception, a hang, or a wrong number passed on.

A short fuzz (``STFLOW_FUZZ_EXAMPLES``, 60 examples per reader, derandomised) runs with the
tests; ``benchmarks/fuzz_readers.py --examples 10000`` runs the long one with this file.
"""

from __future__ import annotations

import json
import math
import os
import string
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from snakemake.cli import parse_config
from spaceranger_layout import write_10x_h5
from test_config_types import LEAVES, SCHEMA, flow
from test_intervals import _calibration
from workflow_fixtures import TINY

from stflow.config import typed_like_schema
from stflow.config_checks import check_config, with_defaults
from stflow.errors import StflowError

EXAMPLES = int(os.environ.get("STFLOW_FUZZ_EXAMPLES", "60"))
LONG = "STFLOW_FUZZ_EXAMPLES" in os.environ
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=not LONG,
                database=None if not LONG else settings.default.database,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

# what users type by mistake, and what a damaged file holds
NUMBERS = st.sampled_from(["nan", "NaN", "inf", "-inf", "1e999", "-0", "0", "0.0", "-1", "1",
                           "0.5", "1_000", " 2 ", "0x10", "1e-320", "٣", "true", "null", "~"])
CELLS = st.one_of(NUMBERS, st.text(max_size=12),
                  st.text(alphabet=string.printable + "\0\x85\u2028é", max_size=12))
JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
                    lambda inner: st.lists(inner, max_size=4)
                    | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=12)


def refused_or_read(read: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """What ``read`` returns, or None when it refuses with the project's error; any other
    exception fails the test (hypothesis shrinks it to the smallest such input)."""
    try:
        return read(*args, **kwargs)
    except StflowError as err:
        assert "Fix:" in str(err), f"a refusal without a fix: {err}"
        return None


@contextmanager
def folder() -> Iterator[Path]:
    """A fresh folder per example (a test's tmp_path is shared by all its examples)."""
    with tempfile.TemporaryDirectory() as name:
        yield Path(name)


def json_text(value: Any) -> bytes:
    """``value`` as a JSON file's bytes (NaN and Infinity too, as Python writes them)."""
    return json.dumps(value).encode()


def file_bytes(valid: bytes) -> st.SearchStrategy[bytes]:
    """``valid`` cut short, a byte flipped, random bytes, or as it is."""
    return st.one_of(st.just(valid), st.binary(max_size=64),
                     st.integers(0, len(valid)).map(lambda n: valid[:n]),
                     st.tuples(st.integers(0, max(len(valid) - 1, 0)), st.integers(1, 255)).map(
                         lambda flip: valid[:flip[0]] + bytes([valid[flip[0]] ^ flip[1]])
                         + valid[flip[0] + 1:]))


def finite_positive(value: float) -> bool:
    return isinstance(value, float) and math.isfinite(value) and value > 0


# --- the sample sheet ------------------------------------------------------------------------

SHEET_COLUMNS = ["sample", "patient", "spaceranger", "image", "counts", "positions",
                 "um_per_px", "bin_um"]
PLACES = st.sampled_from(["image.jpg", "counts.tsv", "positions.csv", "outs", ".", "missing",
                          "~nobody-here/x", "/dev/null", "a\0b"])


@st.composite
def sheets(draw: st.DrawFn) -> bytes:
    """A sample sheet: a header of (mostly) known columns, rows of paths, names and numbers."""
    header = draw(st.lists(st.sampled_from(SHEET_COLUMNS) | st.text(max_size=6),
                           min_size=1, max_size=9))
    rows = draw(st.lists(st.lists(PLACES | CELLS, max_size=10), max_size=4))
    text = "\n".join("\t".join(cells) for cells in [header, *rows])
    return draw(st.sampled_from(["utf-8", "latin-1", "utf-16"]).map(
        lambda codec: text.encode(codec, errors="replace")) | st.binary(max_size=80))


@FUZZ
@given(sheets())
def test_a_fuzzed_sample_sheet_reads_or_is_refused(sheet):
    from stflow.data.sample_sheet import read_sheet
    from stflow.data.sheet_table import NAME

    with folder() as base:
        for name in ("image.jpg", "counts.tsv", "positions.csv"):
            (base / name).write_text("x")
        (base / "outs").mkdir()
        path = base / "samples.tsv"
        path.write_bytes(sheet)
        rows = refused_or_read(read_sheet, path) or []
    assert len({row.sample for row in rows}) == len(rows)
    for row in rows:
        assert NAME.match(row.sample) and row.patient
        assert row.um_per_px is None or finite_positive(row.um_per_px)


SLIDE_COLUMNS = ["slide", "image", "um_per_px", "mpp", "Slide", "spots", "arm"]


@st.composite
def slide_sheets(draw: st.DrawFn) -> bytes:
    """A slide sheet: known, look-alike and metadata columns, rows of paths, names, numbers."""
    header = draw(st.lists(st.sampled_from(SLIDE_COLUMNS) | st.text(max_size=6),
                           min_size=1, max_size=6))
    rows = draw(st.lists(st.lists(PLACES | CELLS, max_size=7), max_size=4))
    text = "\n".join("\t".join(cells) for cells in [header, *rows])
    return draw(st.sampled_from(["utf-8", "latin-1", "utf-16"]).map(
        lambda codec: text.encode(codec, errors="replace")) | st.binary(max_size=80))


@FUZZ
@given(slide_sheets())
def test_a_fuzzed_slide_sheet_reads_or_is_refused(sheet):
    from stflow.data.sheet_table import NAME
    from stflow.data.slide_sheet import PLAIN_IMAGES, read_slide_sheet

    with folder() as base:
        (base / "image.jpg").write_text("x")
        path = base / "slides.tsv"
        path.write_bytes(sheet)
        rows = refused_or_read(read_slide_sheet, path) or []
    assert len({row.slide for row in rows}) == len(rows)
    for row in rows:
        assert NAME.match(row.slide) and row.slide != "cohort"
        assert row.um_per_px is None or finite_positive(row.um_per_px)
        assert row.um_per_px is not None or row.image.suffix.lower() not in PLAIN_IMAGES


# --- the config and --config strings -----------------------------------------------------------

@st.composite
def config_arguments(draw: st.DrawFn) -> str:
    """``key=value`` as a user passes it to ``snakemake --config``: a setting of the schema
    (at any depth) or an unknown one, given any text."""
    path, _ = draw(st.sampled_from(LEAVES))
    value = draw(CELLS.filter(lambda text: "\0" not in text))
    if draw(st.booleans()):
        return f"{path[0]}={flow(path[1:], value)}"
    return f"{draw(st.sampled_from([p[0] for p, _ in LEAVES]) | st.text(max_size=5))}={value}"


@FUZZ
@given(st.lists(config_arguments(), min_size=1, max_size=3))
@example(["predict={slides: {C4: /etc/hostname}, um_per_px: {C4: nan}}"])  # found: passed on
@example(["patches={min_tissue: 1e999}"])  # found: inf passed the schema's maximum
def test_a_fuzzed_config_is_checked_and_a_passing_one_holds_only_finite_numbers(arguments):
    from stflow.study import Study

    with folder() as cwd:
        try:
            given_config = parse_config(arguments)
        except Exception:  # Snakemake's own refusal of the argument, before stflow sees it
            return
        typed = typed_like_schema(dict(given_config), SCHEMA)
        config = {**json.loads(json.dumps(TINY)), **typed}
        problems = check_config(config, SCHEMA, cwd=cwd)
        if problems:
            assert all(str(p).count("Fix:") == 1 for p in problems)
            return
        assert_finite(config)
        Study(with_defaults(config, SCHEMA))


def assert_finite(value: Any) -> None:
    """Every number in a config is finite (NaN or inf would be passed on to the stages)."""
    if isinstance(value, dict):
        for item in value.values():
            assert_finite(item)
    elif isinstance(value, list):
        for item in value:
            assert_finite(item)
    elif isinstance(value, float):
        assert math.isfinite(value), "a non-finite number passed the config checks"


# --- Space Ranger positions and scale factors ---------------------------------------------------

BARCODES = [f"AC{i}-1" for i in range(5)]
POSITIONS_HEADER = "barcode,in_tissue,array_row,array_col,pxl_row_in_fullres,pxl_col_in_fullres"
FACTORS = {"spot_diameter_fullres": 100.0, "tissue_hires_scalef": 0.1,
           "fiducial_diameter_fullres": 150.0, "tissue_lowres_scalef": 0.03}


def spaceranger_outs(root: Path, positions: str, factors: bytes) -> Path:
    """A tiny Visium ``outs/``: 5 spots x 3 genes, the given positions and scale factors."""
    outs = root / "outs"
    (outs / "spatial").mkdir(parents=True)
    write_10x_h5(outs / "filtered_feature_bc_matrix.h5",
                 np.arange(15).reshape(5, 3) % 4, BARCODES, ["G1", "G2", "G3"])
    (outs / "spatial" / "tissue_positions.csv").write_text(positions)
    (outs / "spatial" / "scalefactors_json.json").write_bytes(factors)
    return outs


@st.composite
def positions_files(draw: st.DrawFn) -> str:
    """The positions CSV of the 5 barcodes, some cells replaced by fuzzed text."""
    rows = [[b, "1", str(i), str(i), f"{10.0 * i}", f"{20.0 * i}"]
            for i, b in enumerate(BARCODES)]
    for _ in range(draw(st.integers(0, 3))):
        row, column = draw(st.integers(0, 4)), draw(st.integers(0, 5))
        rows[row][column] = draw(CELLS.filter(lambda c: "\0" not in c))
    kept = draw(st.integers(1, 5))
    return "\n".join([POSITIONS_HEADER, *(",".join(r) for r in rows[:kept])]) + "\n"


@FUZZ
@given(positions_files(), st.one_of(file_bytes(json_text(FACTORS)),
                                    JSON.map(lambda v: json_text({**FACTORS,
                                                                  "spot_diameter_fullres": v}))),
       st.sampled_from([None, 0.5]))
@example(positions=f"{POSITIONS_HEADER}\nAC0-1,1,0,0,nan,0\n", factors=json_text(FACTORS),
         um=None)  # found: a NaN pixel position was passed on
@example(positions=f"{POSITIONS_HEADER}\nAC0-1,1e999,0,0,0,0\n", factors=json_text(FACTORS),
         um=None)  # found: ValueError from pandas
@example(positions=f"{POSITIONS_HEADER}\nAC0-1,1,nan,0,0,0\n", factors=json_text(FACTORS),
         um=None)  # found: IntCastingNaNError
def test_fuzzed_space_ranger_positions_and_scale_factors_read_or_are_refused(positions,
                                                                             factors, um):
    from stflow.data.sources.spaceranger import read_outs

    with folder() as root:
        outs = spaceranger_outs(root, positions, factors)
        sample = refused_or_read(read_outs, outs, sample="s", patient="p",
                                 image=root / "he.jpg", um_per_px=um)
    if sample is not None:
        assert finite_positive(sample.mpp)
        assert np.isfinite(sample.spatial_px).all() and sample.spatial_px.shape[1] == 2
        assert len(sample.spatial_px) == sample.counts.n_obs > 0


# --- HEST-bench patch files ---------------------------------------------------------------------

@st.composite
def bench_patch_files(draw: st.DrawFn) -> dict[str, Any]:
    """What ``patches/{id}.h5`` may hold: ``img`` and ``barcode`` of any shape and type, or
    groups, or nothing."""
    n = draw(st.integers(0, 4))
    side = draw(st.sampled_from([4, 8]))
    shape = draw(st.sampled_from([(n, side, side, 3), (n, side, side), (n, side, side + 1, 3),
                                  (n, side, side, 4)]))
    img_type = draw(st.sampled_from(["u1", "f4", "i8", "group", None]))
    barcode_type = draw(st.sampled_from(["S", "U", "i8", "f4", "group", None]))
    return {"n": n, "shape": shape, "img": img_type, "barcode": barcode_type,
            # HDF5 cannot store a NUL inside a variable-length string: no file holds one
            "barcodes": draw(st.lists(st.sampled_from(BARCODES[:3]) | st.text(
                st.characters(blacklist_characters="\x00"), max_size=3),
                min_size=n, max_size=n)),
            "fill": draw(st.sampled_from([0.0, 255.0, 300.0, -1.0, float("nan")]))}


def stored(spec: dict[str, Any]) -> np.ndarray:
    """The value every pixel of the bench file holds."""
    with np.errstate(invalid="ignore"):
        return np.array(spec["fill"]).astype(spec["img"])


def write_bench_file(path: Path, spec: dict[str, Any]) -> None:
    with h5py.File(path, "w") as h5:
        if spec["img"] == "group":
            h5.create_group("img")
        elif spec["img"]:
            h5["img"] = np.full(spec["shape"], stored(spec))
        if spec["barcode"] == "group":
            h5.create_group("barcode")
        elif spec["barcode"] in ("S", "U"):
            h5["barcode"] = (np.array([b.encode() for b in spec["barcodes"]], dtype="S")
                             if spec["barcode"] == "S" else
                             np.array(spec["barcodes"], dtype=h5py.string_dtype()))
        elif spec["barcode"]:
            h5["barcode"] = np.arange(spec["n"]).astype(spec["barcode"])


@FUZZ
@given(bench_patch_files(), st.booleans() | st.binary(max_size=32))
def test_a_fuzzed_hest_bench_patch_file_is_read_or_refused(spec, damage):
    from stflow.data.patches.bench import patches_from_bench_h5

    with folder() as root:
        source, out = root / "bench.h5", root / "patches.h5"
        if isinstance(damage, bytes):
            source.write_bytes(damage)
        else:
            write_bench_file(source, spec)
        centres = np.arange(6, dtype=float).reshape(3, 2) * 10
        summary = refused_or_read(patches_from_bench_h5, source, centres, mpp=0.5,
                                  barcodes=BARCODES[:3], out=out, sample="s", size_um=4.0,
                                  size_px=4)
        if summary is None:
            assert not out.exists()
            return
        with h5py.File(out, "r") as h5:
            img = h5["img"][:]
    assert img.dtype == np.uint8 and img.shape == (summary.n_kept, 4, 4, 3)
    assert spec["img"] == "u1" and (img == stored(spec)).all()


# --- features stores ----------------------------------------------------------------------------

@st.composite
def feature_stores(draw: st.DrawFn) -> dict[str, Any]:
    n = draw(st.integers(0, 3))
    shapes = st.sampled_from([(n, 4), (n,), (n + 1, 4), (n, 2), (n, 3), (n, 2, 1), ()])
    return {"complete": draw(JSON), "arrays": {
        name: draw(st.none() | st.tuples(shapes, st.sampled_from(["f4", "f8", "i4", "U3", "b1"]),
                                         st.sampled_from([0.0, 1.5, float("nan"), float("inf")])))
        for name in ("features", "barcode", "coords_um")}}


def write_store(path: Path, spec: dict[str, Any]) -> None:
    import zarr

    group = zarr.open_group(str(path), mode="w")
    for name, array in spec["arrays"].items():
        if array is not None:
            shape, dtype, fill = array
            data = np.full(shape, fill)
            group.create_array(name, data=data.astype(dtype) if dtype != "U3" else
                               data.astype(str).astype(dtype))
    group.attrs["complete"] = spec["complete"]


@FUZZ
@given(feature_stores())
def test_a_fuzzed_features_store_is_read_or_refused(spec):
    from stflow.data.dataset import load_slide

    with folder() as root:
        write_store(root / "s.zarr", spec)
        slide = refused_or_read(load_slide, "s", root / "s.zarr")
    if slide is not None:
        assert slide.features.ndim == 2 and np.isfinite(slide.features).all()
        assert slide.coords_um.shape == (slide.n_spots, 2)
        assert np.isfinite(slide.coords_um).all()


# --- model folders' JSON ------------------------------------------------------------------------

DEPLOY = {"format": "stflow-deploy", "version": 1, "stflow_version": "0", "model": "ridge",
          "genes": ["G1", "G2"], "encoder": "efficientnet_lite0", "weights_sha256": "ab",
          "feature_dim": 4, "patch_size_um": 112.0, "patch_size_px": 64, "min_tissue": 0.5,
          "graph_k": 4, "pitch_um": 100.0, "layout": "square", "trained_on": ["P1S1"],
          "fold": "final"}


def mutated(record: dict[str, Any]) -> st.SearchStrategy[Any]:
    """``record`` with a field changed to any JSON value or dropped, or any JSON at all."""
    keys = st.sampled_from(sorted(record))
    return st.one_of(JSON, st.tuples(keys, JSON).map(lambda kv: {**record, kv[0]: kv[1]}),
                     keys.map(lambda k: {key: v for key, v in record.items() if key != k}))


@FUZZ
@given(st.one_of(mutated(DEPLOY).map(json_text), file_bytes(json_text(DEPLOY))))
@example(json_text({**DEPLOY, "pitch_um": "100"}))
@example(json_text({**DEPLOY, "graph_k": 4.5}))
@example(json_text({**DEPLOY, "genes": "G1"}))
@example(json_text({**DEPLOY, "patch_size_um": float("inf")}))
def test_a_fuzzed_deploy_json_is_read_or_refused(content):
    from stflow.data.spot_layout import LAYOUTS
    from stflow.records.deployment import read_deployment

    with folder() as model:
        (model / "deploy.json").write_bytes(content)
        deployment = refused_or_read(read_deployment, model)
    if deployment is not None:
        assert deployment.layout in LAYOUTS and isinstance(deployment.genes, list)
        assert all(isinstance(g, str) for g in deployment.genes)
        for name in ("pitch_um", "patch_size_um"):
            assert finite_positive(float(getattr(deployment, name)))
            assert isinstance(getattr(deployment, name), int | float)
        for name in ("patch_size_px", "graph_k", "feature_dim"):
            assert type(getattr(deployment, name)) is int and getattr(deployment, name) > 0


@pytest.fixture(scope="module", name="calibration_npz")
def calibration_npz_fixture(tmp_path_factory) -> tuple[bytes, dict[str, Any]]:
    """The files of a valid calibration, to mutate."""
    from stflow.intervals.calibration import save_calibration

    where = tmp_path_factory.mktemp("calibration")
    save_calibration(_calibration(np.random.default_rng(0)), where)
    return ((where / "calibration.npz").read_bytes(),
            json.loads((where / "calibration.json").read_text()))


@FUZZ
@given(data=st.data())
def test_a_fuzzed_calibration_json_is_read_or_refused(calibration_npz, data):
    from stflow.intervals.calibration import DIFFICULTIES, SCOPES, load_calibration

    npz, record = calibration_npz
    found = st.sampled_from([{"shift_median": float("inf")}, {"shift_median": float("nan")},
                             {"shift_median": -1.0}])  # found: passed on
    content = data.draw(st.one_of(mutated(record).map(json_text), file_bytes(json_text(record)),
                                  found.map(lambda change: json_text({**record, **change}))))
    with folder() as model:
        (model / "calibration.npz").write_bytes(npz)
        (model / "calibration.json").write_bytes(content)
        calibration = refused_or_read(load_calibration, model)
    if calibration is not None:
        assert calibration.difficulty in DIFFICULTIES and calibration.scope in SCOPES
        assert math.isfinite(calibration.shift_median) and calibration.shift_median >= 0


@FUZZ
@given(st.one_of(mutated({"model": "ridge"}).map(json_text), file_bytes(b'{"model": "ridge"}'),
                 st.integers(1, 3000).map(lambda depth: b"[" * depth + b"]" * depth)))
@example(b"[" * 100_000 + b"]" * 100_000)  # found: RecursionError
def test_a_fuzzed_model_manifest_is_read_or_refused(content):
    from stflow.models.registry import MODELS, trained_model_name

    with folder() as model:
        (model / "manifest.json").write_bytes(content)
        name = refused_or_read(trained_model_name, model)
    assert name is None or name in MODELS


PARAMS = {"genes": ["G1", "G2"], "features": {"encoder": None, "weights_sha256": None}}


@FUZZ
@given(st.one_of(mutated(PARAMS).map(json_text), file_bytes(json_text(PARAMS))))
@example(json_text({**PARAMS, "genes": 5}))  # found: TypeError
def test_a_fuzzed_params_json_is_read_or_refused(content):
    from stflow.inference.model_folder import TrainedOn, check_trained_with

    with folder() as model:
        (model / "params.json").write_bytes(content)
        trained = refused_or_read(check_trained_with, model,
                                  TrainedOn(model / "genes.json", ["G1", "G2"], model, []))
    assert trained is None or isinstance(trained, dict)


def test_a_json_path_that_is_a_folder_is_refused(tmp_path):
    from stflow.atomic import read_json

    (tmp_path / "params.json").mkdir()
    with pytest.raises(StflowError, match="params.json: .*Fix: re-run"):
        read_json(tmp_path / "params.json", "model parameters", "re-run the train stage")
