"""The target genes: HEST-bench's protocol, or a list given in the config.

HEST (mahmoodlab/HEST ``src/hest/utils.py``, ``get_k_genes(..., criteria='var',
min_cells_pct=0.10)``) keeps the genes with a non-zero count in at least
``ceil(0.10 * n_spots)`` spots of *every* sample, drops names containing ``BLANK`` or
``Control`` (Xenium probes; it excludes no mitochondrial or ribosomal genes), stacks the
samples' raw counts, applies log1p and takes scanpy's ``highly_variable_genes(n_top_genes=k)``
(Seurat flavour) — returned in the common genes' sorted order, as HEST does.

HEST chooses the genes once from all samples, test samples included (``genes.scope: study``).
``genes.scope: fold`` runs the same protocol per fold on its training and validation samples
only (:func:`select_fold_genes`), so no fold's targets depend on the counts it is tested on;
the test samples' gene names still keep out genes they do not measure.

genes.json records how its genes were chosen under "scope" (:data:`GENE_SCOPES`); the
prediction files carry it on to every table, so no score hides its gene protocol.

Its "genes" are the benchmark genes, the ones every score averages. Its "biomarkers" are the
genes a study names for its figures (``figures.genes``, e.g. ERBB2 in HER2+ breast cancer) that
the protocol left out: they are trained and predicted as extra targets, so they can be drawn
and scored, but are scored on their own and never enter the benchmark mean
(:func:`biomarker_targets`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import scipy.sparse as sp
from tqdm import tqdm

from stflow.atomic import write_json
from stflow.choices import MIN_FRACTION
from stflow.data.splits import fold_of, read_splits
from stflow.errors import StflowError, input_error

log = logging.getLogger(__name__)

EXCLUDED_SUBSTRINGS = ("BLANK", "Control")
# Xenium features that are no gene beyond HEST's two: unassigned and deprecated codewords,
# genomic (intergenic) control probes
XENIUM_NON_GENES = ("Codeword", "Intergenic_Region")
GENE_SCOPES = {  # genes.json "scope" → what it means for the scores made on those genes
    "study": "chosen once by HEST's protocol from every section, test sections included "
             "(optimistic for a new patient; comparable with HEST-bench and the paper)",
    "fold": "chosen per fold by HEST's protocol from its training and validation sections "
            "only, as for a new patient",
    "hest-bench": "HEST-bench's published genes (chosen by HEST from every section, test "
                  "sections included)",
    "list": "a fixed list from the config",
}


def is_xenium_gene(name: str) -> bool:
    """Whether a Xenium feature is a panel gene: HEST's exclusions (control probes, blank
    codewords) and Xenium's other non-gene features dropped."""
    return not any(s in name for s in (*EXCLUDED_SUBSTRINGS, *XENIUM_NON_GENES))


def _check_exists(path: Path) -> None:
    if not path.exists():
        raise input_error(path, "ingested sample does not exist", "run the ingest stage first")


def _read_counts(path: Path) -> tuple[sp.csr_matrix, np.ndarray]:
    """Raw counts (CSR) and gene names of one ingested sample."""
    import anndata as ad

    _check_exists(path)
    adata = ad.read_h5ad(path)
    x = sp.csr_matrix(adata.X)
    if x.nnz and (x.data < 0).any():
        raise input_error(path, "X holds negative values", "ingest raw counts, not scaled data")
    return x, np.asarray(adata.var_names, dtype=str)


def _gene_names(path: Path) -> set[str]:
    """Gene names of a sample without loading its counts (backed mode)."""
    import anndata as ad

    _check_exists(path)
    adata = ad.read_h5ad(path, backed="r")
    try:
        return {str(g) for g in adata.var_names}
    finally:
        adata.file.close()


def expressed_genes(counts: sp.csr_matrix, genes: np.ndarray,
                    min_fraction: float = MIN_FRACTION) -> np.ndarray:
    """Genes with a count > 0 in at least ``ceil(min_fraction * n_spots)`` spots."""
    positive = counts.indices[counts.data > 0]
    n_expressed = np.bincount(positive, minlength=counts.shape[1])
    return genes[n_expressed >= np.ceil(min_fraction * counts.shape[0])]


def hest_genes(st_paths: Sequence[str | Path], n_top: int = 50,
               min_fraction: float = MIN_FRACTION,
               measured_in: Sequence[str | Path] = ()) -> list[str]:
    """HEST's top-``n_top`` highly variable genes among those expressed in every sample,
    and measured (present among the genes, whatever their counts) in ``measured_in`` too."""
    import anndata as ad
    import scanpy as sc

    if n_top < 1:
        raise StflowError(f"--n-top {n_top}. Fix: ask for at least one gene")
    paths = [Path(p) for p in st_paths]
    if not paths:
        raise input_error("--st", "no ingested samples given", "pass the st/*.h5ad files")
    common: np.ndarray | None = None
    for path in tqdm(paths, desc="expressed genes", leave=False):
        counts, genes = _read_counts(path)
        kept = expressed_genes(counts, genes, min_fraction)
        common = kept if common is None else np.intersect1d(common, kept)
    for path in map(Path, measured_in):  # their gene names only, never their counts
        common = np.intersect1d(common, sorted(_gene_names(path)))
    common = np.array([g for g in np.unique(common)
                       if not any(s in g for s in EXCLUDED_SUBSTRINGS)], dtype=str)
    if len(common) < n_top:
        raise input_error(", ".join(p.name for p in paths),
                          f"only {len(common)} genes are expressed in >= {min_fraction:.0%} of "
                          f"the spots of every sample, fewer than n_top = {n_top}",
                          f"lower --n-top to at most {len(common)} or drop sparse samples")
    blocks = []
    for path in tqdm(paths, desc="stack counts", leave=False):
        counts, genes = _read_counts(path)
        index = {g: i for i, g in enumerate(genes)}
        blocks.append(counts[:, [index[g] for g in common]].astype(np.float32))
    stacked = ad.AnnData(X=sp.vstack(blocks).tocsr())
    stacked.var_names = common
    sc.pp.log1p(stacked)
    sc.pp.highly_variable_genes(stacked, n_top_genes=n_top)
    return [str(g) for g in stacked.var_names[stacked.var["highly_variable"].to_numpy()][:n_top]]


def check_gene_list(genes: Sequence[str], st_paths: Sequence[str | Path]) -> list[str]:
    """An explicit list, checked to exist in every sample (else name what is missing where)."""
    genes = [str(g) for g in genes]
    if not genes:
        raise input_error("--list", "the gene list is empty", "name at least one gene")
    duplicates = sorted({g for g in genes if genes.count(g) > 1})
    if duplicates:
        raise input_error("--list", f"genes listed twice: {duplicates}", "list each gene once")
    missing: dict[str, list[str]] = {}
    for path in map(Path, st_paths):
        names = _gene_names(path)
        for gene in genes:
            if gene not in names:
                missing.setdefault(gene, []).append(path.stem)
    if missing:
        detail = "; ".join(f"{g} (missing in {', '.join(s)})" for g, s in missing.items())
        raise input_error("--list", f"{len(missing)} genes are not in every sample: {detail}",
                          "remove them from genes.list in the config, or use the HEST protocol")
    return genes


def with_included(genes: Sequence[str], include: Sequence[str],
                  st_paths: Sequence[str | Path]) -> list[str]:
    """``genes`` plus the ``include`` genes not already there (checked in every sample).

    For genes a study wants in its benchmark mean beside HEST's highly variable ones; a
    biomarker only to be predicted, drawn and scored apart is one of :func:`biomarker_targets`.
    """
    extra = [g for g in include if g not in genes]
    return list(genes) + (check_gene_list(extra, st_paths) if extra else [])


def biomarker_targets(biomarkers: Sequence[str], benchmark: Sequence[str],
                      st_paths: Sequence[str | Path]) -> list[str]:
    """The ``biomarkers`` trained beside the ``benchmark`` genes: those not among them and
    measured in every sample of ``st_paths`` (a model needs its truth everywhere). So a
    study's biomarker is always predicted, yet the benchmark genes (and their mean) stay
    those of the protocol; one not measured everywhere is left out with a warning."""
    wanted = [g for g in dict.fromkeys(map(str, biomarkers)) if g not in set(benchmark)]
    if not wanted:
        return []
    names = [_gene_names(Path(p)) for p in st_paths]
    extra = [g for g in wanted if all(g in n for n in names)]
    missing = [g for g in wanted if g not in extra]
    if missing:
        log.warning("biomarkers not measured in every sample, so not predicted: %s",
                    ", ".join(missing))
    return extra


def write_bench_genes(bench_dir: str | Path, st_paths: Sequence[str | Path],
                      out: str | Path, biomarkers: Sequence[str] = ()) -> list[str]:
    """HEST-bench's published gene list as ``out`` (genes.json), checked against the
    ingested samples ``st_paths``, with the ``biomarkers`` it lacks as extra targets."""
    import anndata as ad

    from stflow.data.sources import hest

    genes = hest.read_bench_genes(bench_dir)
    for path in st_paths:
        adata = ad.read_h5ad(path, backed="r")
        try:
            missing = [g for g in genes["genes"] if g not in set(adata.var_names)]
        finally:
            adata.file.close()
        if missing:
            raise input_error(path, f"lacks {len(missing)} of HEST-bench's genes, e.g. "
                              f"{missing[:5]}", "ingest the bench task's own samples, or set "
                              "genes.source: config")
    extra = biomarker_targets(biomarkers, genes["genes"], st_paths)
    write_json({**genes, "scope": "hest-bench", "biomarkers": extra}, out)
    log.info("%d HEST-bench genes (+ biomarkers %s) -> %s", len(genes["genes"]), extra, out)
    return list(genes["genes"])


def gene_scope(data: dict, path: str | Path) -> str:
    """How the genes.json at ``path`` chose its genes: its "scope" (every writer records it)."""
    if data.get("scope") not in GENE_SCOPES:
        raise input_error(path, f"records no gene scope of {list(GENE_SCOPES)} (scope: "
                          f"{data.get('scope')!r})", "re-run the genes stage")
    return str(data["scope"])


def target_genes(st_paths: Sequence[str | Path], *, n_top: int = 50,
                 min_fraction: float = MIN_FRACTION, listed: Sequence[str] | None = None,
                 include: Sequence[str] = (), measured_in: Sequence[str | Path] = (),
                 biomarkers: Sequence[str] = ()) -> dict:
    """genes.json's content (docs/artifacts.md): HEST's ``n_top`` highly variable genes of
    ``st_paths`` that ``measured_in`` also measure (or the ``listed`` ones, checked in every
    sample) plus ``include``; then the ``biomarkers`` among neither, measured in all of
    ``st_paths`` and ``measured_in``, as extra targets outside the benchmark."""
    if listed:
        genes = check_gene_list(listed, st_paths)
        protocol, n_top = "list", len(genes)
    else:
        genes = hest_genes(st_paths, n_top, min_fraction, measured_in)
        protocol = "hest-hvg"
    genes = with_included(genes, include or [], st_paths)
    extra = biomarker_targets(biomarkers, genes, [*st_paths, *measured_in])
    return {"genes": genes, "protocol": protocol if len(genes) == n_top else f"{protocol}+include",
            "n_top": int(n_top), "biomarkers": extra}


def write_target_genes(st_paths: Sequence[str | Path], out: str | Path, *, n_top: int = 50,
                       min_fraction: float = MIN_FRACTION, listed: Sequence[str] | None = None,
                       include: Sequence[str] = (), biomarkers: Sequence[str] = ()) -> list[str]:
    """The genes stage: :func:`target_genes` of every sample, written to ``out`` (genes.json)."""
    data = target_genes(st_paths, n_top=n_top, min_fraction=min_fraction, listed=listed,
                        include=include, biomarkers=biomarkers)
    data["scope"] = "list" if listed else "study"
    write_json(data, out)
    log.info("%d target genes (+ biomarkers %s) → %s", len(data["genes"]), data["biomarkers"],
             out)
    return data["genes"]


def fold_training_paths(st_paths: Sequence[str | Path], splits_path: str | Path,
                        fold: str) -> list[Path]:
    """The st files of ``fold``'s training and validation samples among ``st_paths``, sorted
    by sample: what its genes may be chosen from (their counts; the test samples give their
    gene names alone)."""
    entry = fold_of(read_splits(splits_path), fold, splits_path)
    chosen_from = sorted({str(s) for part in ("train", "val") for s in entry.get(part) or []})
    if not chosen_from:
        raise input_error(splits_path, f"fold '{fold}' has no training samples",
                          "re-create the splits with `stflow splits`")
    by_sample = {Path(p).stem: Path(p) for p in st_paths}
    missing = [s for s in chosen_from if s not in by_sample]
    if missing:
        raise input_error("--st", f"fold '{fold}' trains on {missing}, whose st files are not "
                          "given", "pass the st/{sample}.h5ad file of every training and "
                          "validation sample of the fold")
    return [by_sample[s] for s in chosen_from]


def select_fold_genes(st_paths: Sequence[str | Path], *, splits_path: str | Path, fold: str,
                      out: str | Path, n_top: int = 50, min_fraction: float = MIN_FRACTION,
                      include: Sequence[str] = (), biomarkers: Sequence[str] = ()) -> list[str]:
    """genes.scope fold: HEST's protocol on ``fold``'s training and validation samples only,
    written to ``out`` (genes/{fold}.json) with the fold and those samples, so the genes a
    fold is scored on were chosen without the counts of its test samples. The other samples
    of ``st_paths`` (its test samples) are read for their gene names alone: a gene they do
    not measure cannot be a target (her2st's sections measure different gene sets)."""
    paths = fold_training_paths(st_paths, splits_path, fold)
    others = [Path(p) for p in st_paths if Path(p) not in paths]
    data = target_genes(paths, n_top=n_top, min_fraction=min_fraction, include=include,
                        measured_in=others, biomarkers=biomarkers)
    write_json({**data, "scope": "fold", "fold": fold, "samples": [p.stem for p in paths]},
               out)
    log.info("%s: %d target genes (+ biomarkers %s) from %s → %s", fold, len(data["genes"]),
             data["biomarkers"], ", ".join(p.stem for p in paths), out)
    return data["genes"]


def select_target_genes(st_paths: Sequence[str | Path], out: str | Path, *,
                        bench_dir: str | Path | None = None, n_top: int = 50,
                        min_fraction: float = MIN_FRACTION, listed: Sequence[str] | None = None,
                        include: Sequence[str] = (), biomarkers: Sequence[str] = ()
                        ) -> list[str]:
    """The genes stage as the workflow runs it: HEST-bench's published list when
    ``bench_dir`` is given (genes.source: hest-bench), else :func:`write_target_genes`;
    either with the ``biomarkers`` it lacks as extra targets."""
    if bench_dir is not None:
        return write_bench_genes(bench_dir, st_paths, out, biomarkers)
    return write_target_genes(st_paths, out, n_top=n_top, min_fraction=min_fraction,
                              listed=listed, include=include, biomarkers=biomarkers)
