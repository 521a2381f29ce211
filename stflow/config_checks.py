"""Every mistake in a workflow config, found before any job and reported all at once.

The Snakefile calls :func:`check_config` once, before Snakemake plans a job, and stops with
one message listing every :class:`~stflow.config.Problem`: each schema error (by key, with
a fix, no schema dump), the cross-field rules the schema cannot say, ``model_params`` and
``search`` against the models' catalogue, and the files the config names (mirror, encoder
weights). Otherwise a wrong learning rate would surface in the train job, hours later.

Light on purpose: standard library, PyYAML and jsonschema only (no torch, numpy or pandas),
because the workflow imports it to parse the Snakefile. Each check is a pure function of
the config (with the schema's defaults filled in) so it is tested without Snakemake.
"""

from __future__ import annotations

import copy
import difflib
import math
import os
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator, validators
from jsonschema.exceptions import ValidationError

from stflow.catalogue import SOURCE_FACTS, SourceFacts
from stflow.config import Problem
from stflow.data.sample_sheet import dataset_problems
from stflow.data.sheet_table import SheetError
from stflow.data.slide_sheet import PLAIN_IMAGES, read_slide_sheet
from stflow.layout import COHORT
from stflow.models.model_specs import MODELS
from stflow.models.param_checks import model_param_problems, space_problems, trials_problems

SCHEMA_FILE = "config/schema.yaml"


# --- the schema ---------------------------------------------------------------------------

def _key(path: Sequence[Any]) -> str:
    """A dotted key path as the config spells it: ``tasks[0].name``."""
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else f".{part}" if text else str(part)
    return text or "config"


def _alternatives(pattern: str) -> list[str] | None:
    """The names of a ``^(a|b|c...)$`` pattern, the part a person can read."""
    match = re.fullmatch(r"\^\((.*)\)\$", pattern)
    return match.group(1).split("|") if match else None


def _near(name: Any, names: Sequence[str]) -> str:
    near = difflib.get_close_matches(str(name), [str(n) for n in names], n=1)
    return f" (the nearest: '{near[0]}')" if near else ""


def _schema_problems(error: ValidationError) -> list[Problem]:
    """One jsonschema error as the problems a person fixes (one per unknown key)."""
    key, schema, kind = _key(error.absolute_path), error.schema, error.validator
    if kind == "additionalProperties" and isinstance(error.instance, dict):
        known = sorted(schema.get("properties", {}))
        extra = sorted(set(error.instance) - set(known))
        return [Problem(_key([*error.absolute_path, name]), error.instance[name],
                        "unknown key",
                        f"correct the spelling{_near(name, known)} or remove it; "
                        f"{'the config' if key == 'config' else key} takes {known}")
                for name in extra]
    if "propertyNames" in error.relative_schema_path:
        name = error.instance
        names = (schema.get("enum") or _alternatives(schema.get("pattern", "")) or [])
        what = (schema.get("description") or "name").split(";")[0].split(" (")[0]
        return [Problem(f"{key}.{name}", name, f"'{name}' is not {what}",
                        f"use one of {names}{_near(name, names)}" if names else
                        f"match {schema.get('pattern')}")]
    if kind == "enum":
        fix = f"use one of {error.validator_value}{_near(error.instance, error.validator_value)}"
    elif kind == "type":
        fix = f"give {key} a value of type {' or '.join(_as_list(error.validator_value))}"
    elif kind == "required":
        fix = f"add it under {key}" if key != "config" else "add it to the config"
    elif kind == "pattern" and _alternatives(error.validator_value):
        names = _alternatives(error.validator_value) or []
        return [Problem(key, error.instance, f"'{error.instance}' is not a known name",
                        f"use one of {names}{_near(error.instance, names)}")]
    elif kind in ("oneOf", "anyOf"):
        fix = schema.get("description") or "see the choices in " + SCHEMA_FILE
        if "type" not in schema and not schema.get("description"):
            fix = "a list of choices [a, b] or a range {low: x, high: y, log: false}"
    else:
        fix = schema.get("description") or f"see {key} in {SCHEMA_FILE}"
    return [Problem(key, error.instance, error.message, str(fix).strip())]


def _as_list(value: Any) -> list[str]:
    return list(value) if isinstance(value, list) else [str(value)]


def schema_problems(config: Mapping[str, Any], schema: Mapping[str, Any]) -> list[Problem]:
    """Every schema error of ``config`` (not just the first), sorted by key."""
    errors = Draft202012Validator(schema).iter_errors(config)
    problems = [p for error in errors for p in _schema_problems(error)]
    return sorted(problems, key=lambda p: p.key)


def _numbers(value: Any, path: tuple = ()) -> Iterator[tuple[tuple, float]]:
    """(key path, number) of every float in a config, at any depth."""
    if isinstance(value, Mapping):
        for key, item in value.items():
            yield from _numbers(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _numbers(item, (*path, index))
    elif isinstance(value, float):
        yield path, value


def nonfinite_problems(config: Mapping[str, Any]) -> list[Problem]:
    """NaN or infinity anywhere (YAML's ``.nan``, ``--config x=nan``, ``1e999``): the schema's
    bounds do not refuse them (every comparison with NaN is false), so a stage would be
    handed a number that is none."""
    return [Problem(_key(path), value, f"{value} is not a finite number",
                    f"give {_key(path)} a finite number")
            for path, value in _numbers(config) if not math.isfinite(value)]


def with_defaults(config: Mapping[str, Any], schema: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of ``config`` with the schema's defaults filled in, as Snakemake's
    ``validate`` fills them (the cross-field checks read the config the rules will)."""
    base = Draft202012Validator
    set_properties = base.VALIDATORS["properties"]

    def properties(validator: Any, props: dict, instance: Any, sub: dict) -> Iterator[Any]:
        if isinstance(instance, dict):
            for name, subschema in props.items():
                if "default" in subschema:
                    instance.setdefault(name, copy.deepcopy(subschema["default"]))
        yield from set_properties(validator, props, instance, sub)

    filled = copy.deepcopy(dict(config))
    for _ in validators.extend(base, {"properties": properties})(schema).iter_errors(filled):
        pass
    return filled


# --- rules the schema cannot say ----------------------------------------------------------

def _taking(fact: str) -> str:
    """The sources that have ``fact`` (a SourceFacts flag), as a message names them."""
    return " and ".join(name for name, facts in SOURCE_FACTS.items() if getattr(facts, fact))


def sample_map_problems(config: Mapping[str, Any]) -> list[Problem]:
    """Settings that apply only to some sources, splits sources or schemes."""
    dataset, splits, tasks = config["dataset"], config["splits"], config["tasks"]
    source, problems = dataset["source"], []
    facts = SOURCE_FACTS.get(source, SourceFacts(source))
    if dataset.get("patients") and not facts.takes_patients:
        problems.append(Problem("dataset.patients", dataset["patients"],
                                f"does not apply to source '{source}' (it knows its patients)",
                                "remove dataset.patients"))
    if dataset.get("images") and not facts.takes_images:
        problems.append(Problem("dataset.images", dataset["images"],
                                f"does not apply to source '{source}'",
                                f"remove dataset.images (only {_taking('takes_images')} "
                                "takes full-res images)"))
    if config["genes"]["source"] == "hest-bench" and not facts.hest_bench:
        problems.append(Problem("genes.source", "hest-bench", f"hest-bench needs "
                                f"dataset.source {_taking('hest_bench')}, not '{source}'",
                                "set genes.source: config"))
    folds_listed = bool(splits["folds"]) or any(t.get("folds") for t in tasks)
    if splits["source"] == "hest-bench" and folds_listed:
        problems.append(Problem("splits.source", "hest-bench", "hest-bench takes the folds "
                                "from HEST-bench, but folds are listed too",
                                "remove the folds, or set splits.source: config"))
    if splits["source"] == "hest-bench" and not facts.hest_bench:
        problems.append(Problem("splits.source", "hest-bench", f"hest-bench needs "
                                f"dataset.source {_taking('hest_bench')}, not '{source}'",
                                "set splits.source: config"))
    if splits["scheme"] == "section":
        given = [key for key, on in (
            ("splits.folds", splits["folds"]), ("splits.n_folds", splits["n_folds"]),
            ("splits.source: hest-bench", splits["source"] == "hest-bench"),
            ("tasks[].folds", any(t.get("folds") for t in tasks)),
            ("tasks[].n_folds", any(t.get("n_folds") for t in tasks))) if on]
        if given:
            problems.append(Problem("splits.scheme", "section", "section leaves one section "
                                    f"out (one fold per sample), but {', '.join(given)} set",
                                    "remove them, or use splits.scheme: patient"))
    return problems


def known_section_problems(config: Mapping[str, Any]) -> list[Problem]:
    """Section names the download of a source with known sections does not know (it fetches
    its checksum list's)."""
    dataset = config["dataset"]
    facts = SOURCE_FACTS.get(dataset["source"])
    if facts is None or facts.samples != "known_sections" or not dataset["samples"]:
        return []
    unknown = sorted(set(dataset["samples"]) - set(facts.sections))
    if not unknown:
        return []
    return [Problem("dataset.samples", dataset["samples"], f"lists {facts.name} sections {unknown} "
                    "that the download does not know",
                    f"choose among {list(facts.sections)} (or set samples: null for all of them)")]


def _local(path: str, cwd: str | Path) -> Path:
    """A configured path as the jobs read it: relative to the working directory."""
    return Path(cwd) / os.path.expanduser(path)  # '~nobody' stays as written


def mirror_problems(config: Mapping[str, Any], cwd: str | Path) -> list[Problem]:
    """A mirror folder that is not there would fail the download job."""
    mirror = config["dataset"].get("mirror")
    if not mirror or _local(mirror, cwd).is_dir():
        return []
    state = "does not exist" if not _local(mirror, cwd).exists() else "is not a folder"
    return [Problem("dataset.mirror", mirror, f"{mirror!r} {state} (a relative path is read "
                    f"from the working directory, {cwd})", "give the folder that holds the "
                    "pre-downloaded files, or mirror: null to download them")]


def encoder_weight_problems(config: Mapping[str, Any], cwd: str | Path) -> list[Problem]:
    """Local encoder checkpoints that are not there would fail every embed job."""
    problems = []
    for encoder, path in (config.get("encoder_weights") or {}).items():
        if isinstance(path, str) and not _local(path, cwd).exists():
            problems.append(Problem(f"encoder_weights.{encoder}", path, f"{path!r} does not "
                                    f"exist (a relative path is read from the working "
                                    f"directory, {cwd})", "give the downloaded checkpoint "
                                    "(file or hub snapshot folder), or remove the entry to "
                                    "load the published weights"))
    return problems


def one_k_problems(config: Mapping[str, Any]) -> list[Problem]:
    """One setting for one thing: the neighbour count is graph.k, not also model_params.k."""
    return [Problem(f"model_params.{model}.k", params["k"], f"k is set beside graph.k "
                    f"({config['graph']['k']})", "remove k from model_params; set graph.k, "
                    "which the graph stage and every model that reads the graph use")
            for model, params in sorted(config["model_params"].items())
            if isinstance(params, Mapping) and "k" in params]


def model_params_problems(config: Mapping[str, Any]) -> list[Problem]:
    """Every model_params entry against the model's catalogue (names, types, ranges)."""
    return [problem for model, params in config["model_params"].items()
            if model in MODELS and isinstance(params, Mapping)
            for problem in model_param_problems(model, {k: v for k, v in params.items()
                                                        if k != "k"})]


def search_problems(config: Mapping[str, Any]) -> list[Problem]:
    """Every search entry: trials, and each space entry against the model's catalogue."""
    problems = []
    for model, entry in (config.get("search") or {}).items():
        if model not in MODELS or not isinstance(entry, Mapping):
            continue
        if "trials" in entry:
            problems += trials_problems(model, entry["trials"])
        if isinstance(entry.get("space"), Mapping):
            problems += space_problems(model, entry["space"])
    return problems


def fold_name_problems(config: Mapping[str, Any]) -> list[Problem]:
    """Explicit folds whose names repeat (fold wildcards must be unique)."""
    listed = [("splits.folds", config["splits"]["folds"])]
    listed += [(f"tasks[{i}].folds", t.get("folds")) for i, t in enumerate(config["tasks"])]
    problems = []
    for key, folds in listed:
        names = [f.get("name", f"fold{i}") for i, f in enumerate(folds or [])]
        if len(set(names)) != len(names):
            problems.append(Problem(key, names, f"the folds repeat a name ({names})",
                                    "give each fold a unique name fold0, fold1, ..."))
    return problems


def bench_fold_count_problems(config: Mapping[str, Any]) -> list[Problem]:
    """HEST-bench's split files are read after the download, but the DAG needs the number
    of folds before it: each task (or splits.n_folds) must say it."""
    splits = config["splits"]
    if splits["source"] != "hest-bench" or splits["scheme"] != "patient" or splits["n_folds"]:
        return []
    tasks = config["tasks"] or [{"name": config["dataset"]["name"]}]
    return [Problem(f"tasks[{i}].n_folds" if config["tasks"] else "splits.n_folds", None,
                    f"splits.source hest-bench needs the fold count of dataset "
                    f"'{task['name']}' before download",
                    "set n_folds of the task (HEST-bench's number of train_k/test_k files)")
            for i, task in enumerate(tasks) if not task.get("n_folds")]




def predict_problems(config: Mapping[str, Any]) -> list[Problem]:
    """New slides to predict: whose final model (a dataset and encoder of this run), and a
    scale for every plain image (it records none) but for no slide that is not listed."""
    predict, problems = config["predict"], []
    datasets = [t["name"] for t in config["tasks"]] or [config["dataset"]["name"]]
    if predict["dataset"] is not None and predict["dataset"] not in datasets:
        problems.append(Problem("predict.dataset", predict["dataset"], f"'{predict['dataset']}'"
                                f" is not a dataset of this run ({sorted(datasets)})",
                                "name one of them or leave it null"))
    if predict["encoder"] is not None and predict["encoder"] not in config["encoders"]:
        problems.append(Problem("predict.encoder", predict["encoder"], f"'{predict['encoder']}'"
                                f" is not among encoders {config['encoders']}",
                                "add it there or leave it null"))
    slides, scales = predict["slides"], predict["um_per_px"]
    if COHORT in slides:
        problems.append(Problem("predict.slides", slides, "names a slide 'cohort', the cohort "
                                "table's own name (slides/cohort.h5ad)", "rename the slide"))
    unknown = sorted(set(scales) - set(slides))
    if unknown:
        problems.append(Problem("predict.um_per_px", scales, f"names slides {unknown} that "
                                "are not in predict.slides",
                                "add them to predict.slides or remove them"))
    plain = sorted(name for name, path in slides.items()
                   if Path(path).suffix.lower() in PLAIN_IMAGES and name not in scales)
    if plain:
        problems.append(Problem("predict.slides", slides, f"{plain} are plain images, which "
                                "record no reliable scale", "give their microns per pixel in "
                                "predict.um_per_px ({name: value})"))
    return problems


def slide_sheet_problems(config: Mapping[str, Any]) -> list[Problem]:
    """Every problem of the slide sheet (predict.sheet), and slides named both there and in
    predict.slides (which of the two images is meant is unknowable)."""
    sheet, slides = config["predict"]["sheet"], config["predict"]["slides"]
    if not sheet:
        return []
    try:
        rows = read_slide_sheet(sheet)
    except SheetError as err:
        return [Problem(f"predict.sheet {sheet}", sheet, str(p).partition(". Fix: ")[0], p.fix)
                for p in err.problems]
    both = sorted({row.slide for row in rows} & set(slides))
    if both:
        return [Problem("predict.slides", slides, f"{both} are also rows of predict.sheet "
                        f"{sheet}", "name each slide once: in the sheet or in predict.slides")]
    return []


Check = Callable[[Mapping[str, Any]], list[Problem]]
CROSS_FIELD: tuple[Check, ...] = (
    sample_map_problems, known_section_problems, one_k_problems,
    fold_name_problems, bench_fold_count_problems, model_params_problems, search_problems,
    predict_problems)


def check_config(config: Mapping[str, Any], schema: Mapping[str, Any], *, cwd: str | Path,
                 remote: bool = False) -> list[Problem]:
    """Every problem of ``config``: schema errors first, then every cross-field rule that
    can read the config. ``cwd``: where relative paths are read from; ``remote``: inside a
    cluster job, whose node need not see the mirror or the weights (checked on submit)."""
    problems = schema_problems(config, schema) + nonfinite_problems(config)
    filled = with_defaults(config, schema)
    checks: list[Check] = list(CROSS_FIELD)
    if not remote:
        checks += [lambda c: mirror_problems(c, cwd), lambda c: encoder_weight_problems(c, cwd),
                   lambda c: dataset_problems(c["dataset"]), slide_sheet_problems]
    for check in checks:
        try:
            problems += check(filled)
        except (KeyError, TypeError, AttributeError, ValueError):
            if not problems:
                raise  # a config the schema accepts must not break a check
            # a part the schema already refused: its problem is listed
    return _unique(problems)


def _unique(problems: list[Problem]) -> list[Problem]:
    seen, unique = set(), []
    for problem in problems:
        if str(problem) not in seen:
            seen.add(str(problem))
            unique.append(problem)
    return unique


def problems_message(problems: Sequence[Problem], source: str = "config") -> str:
    """One message that lists every problem, for the run to stop with."""
    count = f"{len(problems)} problem{'s' if len(problems) != 1 else ''}"
    lines = "\n".join(f"  - {problem}" for problem in problems)
    return f"{source}: {count} found before any job ran; nothing was run.\n{lines}"


def stop_on(problems: Sequence[Problem], source: str = "config") -> None:
    """Stop the run with one message listing every problem, if there are any: Snakemake's
    WorkflowError (shown without a traceback) where Snakemake runs, else ValueError."""
    if not problems:
        return
    try:
        from snakemake.exceptions import WorkflowError  # only where the workflow runs
    except ImportError:
        raise ValueError(problems_message(problems, source)) from None
    raise WorkflowError(problems_message(problems, source))


def fold_count_problems(dataset: str, source: str, samples: Sequence[str],
                        patients: Mapping[str, str | None], *, scheme: str, explicit: bool,
                        n_folds: int | None) -> list[Problem]:
    """Whether the folds of ``dataset`` can be counted before ingest: leave-one-section-out
    needs two samples; patient-stratified folds (not ``explicit`` ones) need every visium
    sample's patient, and without ``n_folds`` every patient and at least two of them.
    ``patients``: sample -> patient as known before ingest (None: unknown)."""
    where = f"dataset '{dataset}'"
    if scheme == "section":
        if len(samples) < 2:
            return [Problem("dataset.samples", list(samples), f"{where} has one sample; "
                            "leave-one-section-out needs two", "add samples")]
        return []
    if explicit:
        return []
    unmapped = [s for s in samples if patients.get(s) is None]
    facts = SOURCE_FACTS.get(source, SourceFacts(source))
    if facts.takes_patients and not facts.patients_at_ingest and unmapped:
        return [Problem("dataset.patients", None, f"{source} samples {unmapped} of {where} have "
                        "no patient, so two sections of one patient could land in train and "
                        "test", "map each sample to its patient in dataset.patients "
                        "({sample: patient}), or list explicit splits.folds")]
    if n_folds:
        return []
    if unmapped:
        return [Problem("dataset.patients", None, f"cannot tell the patients of {where} "
                        f"(source {source}) before ingest", "map each sample to its patient "
                        "in dataset.patients, set splits.n_folds, or list splits.folds")]
    if len(set(patients[s] for s in samples)) < 2:
        return [Problem("dataset.samples", list(samples), f"{where} has one patient; "
                        "patient-stratified folds need two",
                        "add samples of another patient")]
    return []


def patient_calibration_problems(dataset: str, patients: Mapping[str, str | None], *,
                                 scheme: str, explicit: bool, n_folds: int | None,
                                 calibration: str) -> list[Problem]:
    """``intervals.calibration: patient`` needs two training patients in every patient fold
    (one to validate and calibrate on, one to train on); refused before any job where the
    patients are known, naming them. Explicit folds are checked by the splits stage."""
    known = {p for p in patients.values() if p is not None}
    if calibration != "patient" or scheme == "section" or explicit or not known:
        return []
    fewest = len(known) - math.ceil(len(known) / (n_folds or len(known)))
    if fewest >= 2:
        return []
    return [Problem("intervals.calibration", calibration,
                    f"dataset '{dataset}' has the patients {sorted(known)}, so a fold trains "
                    f"on {fewest} patient(s) and cannot calibrate on another",
                    "set intervals.calibration to auto (across patients where a fold has two, "
                    "else within, and said so) or within, or add patients")]
