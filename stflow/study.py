"""The study a checked workflow config describes: its datasets, samples and their patients,
folds, seeds, and the settings each rule hands to its library function.

rules/*.smk are input functions that ask a :class:`Study`; every derivation lives here so it
is a plain method, unit-tested without Snakemake (tests/test_study.py). Sample and fold names
are known when the DAG is built: samples from the config or the source's defaults, fold
names from the config, the number of patients, or (splits.scheme: section) the number of
samples. Which samples a fold trains and tests on is known once the splits checkpoint has
run (:func:`fold_members`).

Light on purpose (standard library, PyYAML and jsonschema through the config checks): the
Snakefile imports it while Snakemake parses the workflow.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from stflow import layout
from stflow.catalogue import (
    DEFAULT_BIOMARKERS,
    HEST_BENCH_REPO,
    PAPER_TABLES,
    SOURCE_FACTS,
    SourceFacts,
)
from stflow.config import Problem
from stflow.config_checks import (
    fold_count_problems,
    patient_calibration_problems,
    stop_on,
)
from stflow.data.sample_sheet import sheet_patients, sheet_row, sheet_samples
from stflow.data.slide_sheet import SlideRow, read_slide_sheet
from stflow.layout import result
from stflow.models.model_specs import reads_graph


def synthetic_samples(patients: int, sections: int) -> list[str]:
    """The simulator's sample names: P{patient}S{section}, patient by patient."""
    return [f"P{p}S{s}" for p in range(1, patients + 1) for s in range(1, sections + 1)]


def fold_members(splits: str | Path, fold: str, parts: Iterable[str]) -> list[str]:
    """The samples of ``parts`` (train, val, test) of ``fold`` in a splits.json, sorted."""
    folds = json.loads(Path(splits).read_text())["folds"]
    entry = next((f for f in folds if f.get("name") == fold), None)
    if entry is None:
        raise ValueError(f"{splits}: no fold named {fold} (it has "
                         f"{[f.get('name') for f in folds]}). Fix: delete it to build the "
                         "folds again from the config")
    return sorted({s for part in parts for s in entry.get(part) or []})


def datasets(config: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Dataset name -> settings: the ``dataset`` entry, or one per HEST-style task (with the
    task's samples and folds, else the splits section's)."""
    base, splits = config["dataset"], config["splits"]
    if not config["tasks"]:
        return {base["name"]: {**base, "task": None, "folds": splits["folds"],
                               "n_folds": splits["n_folds"]}}
    return {t["name"]: {**base, "name": t["name"], "task": t["name"], "samples": t["samples"],
                        "folds": t.get("folds") or splits["folds"],
                        "n_folds": t.get("n_folds") or splits["n_folds"]}
            for t in config["tasks"]}


class Study:
    """A checked config (schema defaults filled in) as datasets, samples, folds and settings.

    Methods take dataset, sample, fold and model
    names, never Snakemake wildcards; what differs by source is read from its
    :class:`~stflow.catalogue.SourceFacts`, never from its name.
    """

    def __init__(self, config: Mapping[str, Any]) -> None:
        self.config = config
        self.datasets = datasets(config)
        self.scheme: str = config["splits"]["scheme"]
        self.seeds = list(config["seeds"])

    # --- samples and patients -------------------------------------------------------------

    def source(self, dataset: str) -> SourceFacts:
        """What the dataset's source brings (stflow.catalogue.SOURCE_FACTS)."""
        return SOURCE_FACTS[self.datasets[dataset]["source"]]

    def samples(self, dataset: str) -> list[str]:
        """Sample ids of a dataset: from the config, else the source's defaults."""
        entry, source = self.datasets[dataset], self.source(dataset)
        if source.samples == "sample_sheet":
            return sheet_samples(entry["sheet"], entry["samples"])
        if entry["samples"]:
            return list(entry["samples"])
        if source.samples == "simulated":
            sim = self.config["simulate"]
            return synthetic_samples(sim["patients"], sim["sections"])
        if source.samples == "known_sections":
            return list(source.sections)
        raise ValueError(f"config: dataset.samples is null for source '{entry['source']}'. "
                         "Fix: list the sample ids in dataset.samples (or tasks[].samples)")

    def patient(self, dataset: str, sample: str) -> str | None:
        """The sample's patient as known before ingest (dataset.patients first), else None:
        the sheet's, or the one in the sample's name (synthetic P{p}S{s} is patient P{p}, a
        her2st section's letter is its patient)."""
        entry, source = self.datasets[dataset], self.source(dataset)
        mapped = (entry.get("patients") or {}).get(sample)
        if mapped is not None:
            return str(mapped)
        if source.samples == "sample_sheet":
            return sheet_patients(entry["sheet"]).get(sample)
        if source.patient_in_name:
            match = re.fullmatch(source.patient_in_name, sample)
            return match.group(1) if match else None
        return None

    @staticmethod
    def features(encoder: str) -> str:
        """features/{encoder}/{sample}.zarr of one encoder (``{sample}`` left to fill)."""
        return layout.FEATURES.replace("{encoder}", encoder)

    def sample_files(self, dataset: str, pattern: str) -> list[str]:
        """``pattern`` (under results/{dataset}/, with ``{sample}``) for every sample."""
        return [result(dataset, pattern.format(sample=s)) for s in self.samples(dataset)]

    # --- folds ------------------------------------------------------------------------------

    def bench_splits(self) -> bool:
        """Whether the folds are HEST-bench's published splits/ files (splits.source)."""
        return self.config["splits"]["source"] == "hest-bench"

    def bench_genes(self) -> bool:
        """Whether the genes are HEST-bench's var_50genes.json (genes.source)."""
        return self.config["genes"]["source"] == "hest-bench"

    def explicit_folds(self, dataset: str) -> bool:
        """Folds that do not come from patient ids (config folds or HEST-bench's files)."""
        return bool(self.datasets[dataset]["folds"]) or self.bench_splits()

    def bench_dir(self, dataset: str) -> str:
        """The HEST-bench task folder in the raw data (raw/{task}, or raw/ without tasks)."""
        task = self.datasets[dataset]["task"]
        return result(dataset, f"{layout.RAW}/{task}" if task else layout.RAW)

    def dataset_fold_problems(self, dataset: str) -> list[Problem]:
        """What stops the folds of ``dataset`` being counted before ingest."""
        entry = self.datasets[dataset]
        if self.source(dataset).samples == "listed" and not entry["samples"]:
            return [Problem("dataset.samples", None, f"null for source '{entry['source']}'",
                            "list the sample ids in dataset.samples (or tasks[].samples)")]
        names = self.samples(dataset)
        patients = {s: self.patient(dataset, s) for s in names}
        folds = {"scheme": self.scheme, "explicit": self.explicit_folds(dataset),
                 "n_folds": entry["n_folds"]}
        return (fold_count_problems(dataset, entry["source"], names, patients, **folds)
                or patient_calibration_problems(
                    dataset, patients, calibration=self.config["intervals"]["calibration"],
                    **folds))

    def fold_problems(self) -> list[Problem]:
        """Every dataset's fold problems, to list at once."""
        return [problem for name in self.datasets for problem in self.dataset_fold_problems(name)]

    def n_folds(self, dataset: str) -> int:
        """Explicit folds, else n_folds, else one fold per patient (leave one patient out);
        splits.scheme section: one fold per sample (leave one section out).

        Stops on every dataset's fold problems at once: they are raised only where folds are
        asked for (the DAG of `all`, not a run of one sample's st/ file or of final_models).
        """
        stop_on(self.fold_problems())
        entry = self.datasets[dataset]
        if self.scheme == "section":
            return len(self.samples(dataset))
        if entry["folds"]:
            return len(entry["folds"])
        if entry["n_folds"]:
            return entry["n_folds"]
        return len({self.patient(dataset, s) for s in self.samples(dataset)})

    def folds(self, dataset: str) -> list[str]:
        """Fold names: the configured ones (fold\\d+, by the schema), else fold0..fold{n-1}."""
        explicit = self.datasets[dataset]["folds"]
        if not explicit:
            return [f"fold{i}" for i in range(self.n_folds(dataset))]
        return [f.get("name", f"fold{i}") for i, f in enumerate(explicit)]  # unique: checked

    def runs(self, dataset: str, pattern: str) -> list[str]:
        """``pattern`` filled for every encoder x model x seed x fold of the dataset."""
        config = self.config
        return [result(dataset, pattern.format(encoder=e, model=m, seed=s, fold=f))
                for e in config["encoders"] for m in config["models"] for s in self.seeds
                for f in self.folds(dataset)]

    # --- each rule's settings ---------------------------------------------------------------

    def download_inputs(self, dataset: str) -> list[str]:
        """The sample sheet of source sheet (editing it redoes raw/sheet.tsv)."""
        entry = self.datasets[dataset]
        return [entry["sheet"]] if self.source(dataset).samples == "sample_sheet" else []

    def download_settings(self, dataset: str) -> dict[str, Any]:
        """Keyword arguments of stflow.data.download.download_source; only these (not model
        settings) rerun the download. A patient-shift scale left at its default of 1 is not
        listed, so studies made before the setting existed keep their download."""
        entry, source = self.datasets[dataset], self.source(dataset)
        settings: dict[str, Any] = {"mirror": entry["mirror"], "task": entry["task"]}
        if source.samples == "simulated":
            sim = self.config["simulate"]
            settings.update(patients=sim["patients"], sections=sim["sections"],
                            grid=sim["grid"], genes=sim["genes"], seed=sim["seed"])
            settings.update({key: sim[key] for key in ("expression_shift", "stain_shift")
                             if sim[key] != 1.0})
        else:
            settings["samples"] = self.samples(dataset)
        if source.samples == "sample_sheet":
            settings["sheet"] = entry["sheet"]
        if source.hest_bench and (self.bench_splits() or self.bench_genes()):
            # the published splits and gene lists live in hest-bench's task folders, not in
            # HEST-1k: fetch the task folders (their patches are the bench samples' images)
            settings["repo_id"] = HEST_BENCH_REPO
        return settings

    def sheet_files(self, dataset: str, sample: str) -> list[str] | None:
        """Source sheet: the files of the sample's row, which ingest reads in place; other
        sources: None (ingest reads the download)."""
        entry = self.datasets[dataset]
        if self.source(dataset).samples != "sample_sheet":
            return None
        return [str(p) for p in sheet_row(entry["sheet"], sample).files()]

    def ingest_options(self, dataset: str, sample: str) -> dict[str, Any]:
        """Keyword arguments of stflow.data.ingest.ingest_sample: the sheet's row, or the task,
        the configured patient / image of the sample, and require_patient where
        patient-stratified folds are built from the ingested patients (the sources that take
        dataset.patients; one that cannot find them at ingest is checked when the DAG is
        built)."""
        entry, source = self.datasets[dataset], self.source(dataset)
        if source.samples == "sample_sheet":  # a changed row reruns this ingest only
            return {"row": sheet_row(entry["sheet"], sample).to_params()}
        patient = (entry.get("patients") or {}).get(sample)
        return {"task": entry["task"],
                "patient": None if patient is None else str(patient),
                "image": (entry.get("images") or {}).get(sample),
                "require_patient": (source.takes_patients
                                    and not self.explicit_folds(dataset)
                                    and self.scheme == "patient")}

    def splits_settings(self, dataset: str) -> dict[str, Any]:
        """Keyword arguments of stflow.data.splits.write_splits: explicit folds from the
        config, else HEST-bench's files, else n_folds when configured, else leave one patient
        out (the fold count the DAG was built with); scheme section leaves one section out.
        Stops on fold problems, as :meth:`n_folds` does."""
        return {**self._fold_settings(dataset),
                "calibration": self.config["intervals"]["calibration"],
                "calibration_patients": self.config["intervals"]["calibration_patients"]}

    def _fold_settings(self, dataset: str) -> dict[str, Any]:
        entry = self.datasets[dataset]
        if self.scheme == "section":
            self.n_folds(dataset)  # refuses a single-sample dataset
            return {"scheme": "section"}
        if entry["folds"]:
            return {"folds": [{"name": f.get("name", f"fold{i}"),
                               **{k: v for k, v in f.items() if k != "name"}}
                              for i, f in enumerate(entry["folds"])]}
        if self.bench_splits():
            return {"hest_bench": self.bench_dir(dataset), "n_folds": self.n_folds(dataset)}
        if entry["n_folds"]:
            return {"n_folds": self.n_folds(dataset)}
        self.n_folds(dataset)  # refuses a dataset whose patients are unknown or single
        return {}  # leave one patient out: as many folds as n_folds() counted

    def genes_settings(self, dataset: str) -> dict[str, Any]:
        """Keyword arguments of stflow.data.genes.select_target_genes: HEST-bench's gene list,
        a configured list, or HEST's highly variable genes (plus genes.include)."""
        genes = self.config["genes"]
        if self.bench_genes():
            return {"bench_dir": self.bench_dir(dataset), "biomarkers": self.biomarker_genes}
        return {"n_top": genes["n_top"], "listed": genes["list"] or None,
                "include": genes["include"] or [], "biomarkers": self.biomarker_genes}

    def fold_genes_settings(self) -> dict[str, Any]:
        """Keyword arguments of stflow.data.genes.select_fold_genes (genes.scope fold)."""
        genes = self.config["genes"]
        return {"n_top": genes["n_top"], "include": genes["include"] or [],
                "biomarkers": self.biomarker_genes}

    @property
    def biomarker_genes(self) -> list[str]:
        """The genes the study draws (figures.genes, then predict.genes), else the
        catalogue's default biomarkers: trained as extra targets wherever the gene protocol
        leaves them out, so a study's biomarker is always predicted, yet scored apart from
        the benchmark genes (stflow.data.genes.biomarker_targets)."""
        named = [*self.config["figures"]["genes"], *(self.config["predict"]["genes"] or [])]
        return list(dict.fromkeys(named or DEFAULT_BIOMARKERS))

    def genes_per_fold(self) -> bool:
        """genes.scope fold with genes to choose: a fixed list (genes.list, HEST-bench's
        var_50genes.json) is one list for every fold, chosen before any slide was seen, so
        under either scope the study's genes.json holds it."""
        genes = self.config["genes"]
        return (genes["scope"] == "fold" and not genes["list"]
                and genes["source"] != "hest-bench")

    def genes_file(self, dataset: str, fold: str) -> str:
        """The genes a fold trains, predicts and is scored on: the study's genes.json, or
        the fold's own genes/{fold}.json where they are chosen per fold."""
        if self.genes_per_fold():
            return result(dataset, layout.FOLD_GENES.format(fold=fold))
        return result(dataset, layout.GENES)

    def encoder_weights(self, encoder: str) -> str | None:
        """The encoder's local checkpoint, None for the published weights."""
        return self.config["encoder_weights"].get(encoder)

    def model_params(self, model: str) -> dict[str, Any]:
        """The model's parameters (a change reruns train); the models that read the graph get
        graph.k as ``k``, so the graph and the model always agree."""
        params = dict(self.config["model_params"].get(model, {}))
        if reads_graph(model):
            params["k"] = self.config["graph"]["k"]
        return params

    # --- settings the rules hand on: the rules read the config only through these -------
    # (the Snakefile typed it once, as the schema says: a number given with --config, at
    # any depth, arrives here as a number; tests/test_config_types.py walks the schema)

    @property
    def threads(self) -> int:
        return self.config["threads"]

    @property
    def device(self) -> str:
        return self.config["device"]

    @property
    def slurm(self) -> dict[str, Any]:
        return self.config["slurm"]

    @property
    def encoders(self) -> list[str]:
        return list(self.config["encoders"])

    @property
    def models(self) -> list[str]:
        return list(self.config["models"])

    @property
    def refit(self) -> bool:
        return self.config["refit"]

    @property
    def interval_level(self) -> float:
        return self.config["intervals"]["level"]

    @property
    def embed_batch_size(self) -> int:
        return self.config["embed"]["batch_size"]

    @property
    def graph_k(self) -> int:
        return self.config["graph"]["k"]

    @property
    def figure_genes(self) -> list[str]:
        return list(self.config["figures"]["genes"])

    def search(self, model: str) -> dict[str, Any] | None:
        """The model's hyper-parameter search, None where it has none."""
        return self.config["search"].get(model) or None

    def patch_settings(self) -> dict[str, Any]:
        """size_um, size_px and min_tissue of stflow.data.patches.patches_from_h5ad."""
        patches = self.config["patches"]
        return {key: patches[key] for key in ("size_um", "size_px", "min_tissue")}

    def bootstrap_settings(self) -> dict[str, Any]:
        """The spatial block bootstrap of each fold score (stflow.evaluation.bootstrap)."""
        evaluation = self.config["evaluation"]
        return {"n": evaluation["bootstrap"], "block_um": evaluation["block_um"],
                "seed": evaluation["seed"]}

    def slides(self) -> dict[str, SlideRow]:
        """Every slide to predict: predict.slides (with predict.um_per_px) and the rows of
        predict.sheet, in that order (a name in both was refused by the config check)."""
        predict = self.config["predict"]
        slides = {name: SlideRow(name, Path(path), predict["um_per_px"].get(name))
                  for name, path in predict["slides"].items()}
        if predict["sheet"]:
            slides.update((row.slide, row) for row in read_slide_sheet(predict["sheet"]))
        return slides

    def slide_file(self, slide: str) -> str:
        """The image file of a slide to predict."""
        return str(self.slides()[slide].image)

    def slide_um_per_px(self, slide: str) -> float | None:
        """The slide's µm per level-0 pixel (predict.um_per_px or the sheet's), None: the
        file's own."""
        return self.slides()[slide].um_per_px

    def slide_metadata(self) -> dict[str, dict[str, str]]:
        """slide -> its sheet's further columns (none for predict.slides), for the cohort."""
        return {name: row.metadata for name, row in self.slides().items()}

    def graph_dir(self, dataset: str, model: str) -> str | None:
        """The graph folder for the models that read the graph, None for the others."""
        return result(dataset, layout.GRAPH_DIR) if reads_graph(model) else None

    def targets(self) -> list[str]:
        """What `all` builds: every dataset's tables and figures, and the per-sample
        artifacts (deleting one, e.g. a features store, redoes it and what follows)."""
        targets = []
        for dataset in self.datasets:
            targets.append(result(dataset, layout.DOWNLOAD_DONE))
            targets += [result(dataset, layout.table(t)) for t in layout.RUN_TABLES]
            targets += [result(dataset, layout.table(f"{t}.{ext}")) for t in PAPER_TABLES
                        for ext in ("tsv", "md")]
            targets += [result(dataset, layout.figure(f)) for f in layout.RUN_FIGURES]
            targets += self.sample_files(dataset, layout.QC)
            targets += self.sample_files(dataset, layout.GRAPH)
            targets += [path for e in self.config["encoders"]
                        for path in self.sample_files(dataset, self.features(e))]
        return targets

    # --- new slides (the predict section) ---------------------------------------------------

    def predict_dataset(self) -> str:
        """Whose final model predicts the slides: predict.dataset, else the first dataset."""
        return self.config["predict"]["dataset"] or next(iter(self.datasets))

    def predict_encoder(self) -> str:
        """The encoder of the predicting model: predict.encoder, else the first encoder."""
        return self.config["predict"]["encoder"] or self.config["encoders"][0]

    def final_model_dir(self, dataset: str | None = None) -> str:
        """models/{encoder}/{model}/final of the model named by the predict section."""
        return result(dataset or self.predict_dataset(), layout.FINAL_MODEL.format(
            encoder=self.predict_encoder(), model=self.config["predict"]["model"]))

    def out_of_fold(self, dataset: str, encoder: str, model: str, kind: str) -> list[str]:
        """The first seed's fold ``predictions`` (or ``models``) of ``encoder`` × ``model``,
        which calibrate the final model across patients; none under intervals.calibration
        within, or where the folds are not patient-stratified (scheme section)."""
        if self.config["intervals"]["calibration"] == "within" or self.scheme == "section":
            return []
        run = {"predictions": layout.PREDICTIONS, "models": layout.MODEL}[kind]
        return [result(dataset, run.format(encoder=encoder, model=model, seed=self.seeds[0],
                                           fold=fold))
                for fold in self.folds(dataset)]

    def slide_targets(self) -> list[str]:
        """Each slide's check, h5ad and maps, and the cohort's table, AnnData and maps;
        nothing when no slide is named. A slide that cannot be read fails its own
        predict_slide job; the cohort (built from the slides that read) lists it as missing."""
        slides = self.slides()
        if not slides:
            return []
        dataset = self.predict_dataset()
        return ([result(dataset, path.format(slide=name)) for name in slides
                 for path in (layout.SLIDE_CHECK, layout.SLIDE, layout.SLIDE_MAPS)]
                + [result(dataset, path) for path in
                   (layout.COHORT_H5AD, layout.COHORT_TSV, layout.COHORT_MAPS)])

    @staticmethod
    def readable_slides(checks: Mapping[str, str | Path]) -> list[str]:
        """The slides whose check (slide -> its slides/checks/{slide}.json) read them."""
        return [name for name, path in checks.items()
                if json.loads(Path(path).read_text()).get("readable")]

    def view_targets(self) -> list[str]:
        """The zoomable views (rules/view.smk): one beside each slide's h5ad, and one folder
        per encoder x model x fold of the first seed's fold predictions, holding a view of
        each of the fold's test sections (measured beside predicted)."""
        targets = [result(self.predict_dataset(), layout.SLIDE_VIEW.format(slide=name))
                   for name in self.slides()]
        return targets + [result(dataset, layout.SECTION_VIEWS.format(
                              encoder=e, model=m, seed=self.seeds[0], fold=fold))
                          for dataset in self.datasets for e in self.config["encoders"]
                          for m in self.config["models"] for fold in self.folds(dataset)]

    def slide_options(self) -> dict[str, Any]:
        """Fields of stflow.deploy.predict_slide.SlideOptions but the device: sampling,
        interval level, spot lattice, tissue filter, genes drawn as maps and the encoder's
        local weights."""
        config, predict = self.config, self.config["predict"]
        options = {"n_samples": predict["n_samples"], "seed": self.seeds[0],
                   "level": config["intervals"]["level"],
                   "batch_size": config["embed"]["batch_size"],
                   "weights": self.encoder_weights(self.predict_encoder()),
                   "spatialdata": True}  # slides/{slide}.zarr beside the h5ad
        options.update({key: predict[key] for key in ("pitch_um", "layout", "min_tissue")
                        if predict[key] is not None})
        genes = predict["genes"] if predict["genes"] is not None else config["figures"]["genes"]
        options["genes"] = tuple(genes or ())
        return options
