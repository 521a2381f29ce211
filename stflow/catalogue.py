"""The project's cross-cutting facts, defined once: sources, encoders, paper tables, default
biomarkers and the her2st sections the download knows.

The rules, the library, config/schema.yaml (its encoder names put in by stflow.schema) and
the tests all read these, so no fact is restated and kept in sync by hand. Model facts
live beside the models (:mod:`stflow.models.catalogue`). Standard library only: the Snakefile
imports this while Snakemake parses it.
"""

from __future__ import annotations

from pathlib import Path

SOURCES = ("her2st", "hest", "visium", "sheet", "synthetic")  # stflow.data.sources.<name>
# the Hugging Face dataset of HEST-bench's task folders (their splits, gene lists, patches)
HEST_BENCH_REPO = "MahmoodLab/hest-bench"

# The encoder registry's names (stflow.data.encoders.registry.ENCODERS, which needs torch);
# any timm model is reached as TIMM_PREFIX + its name.
ENCODERS = ("efficientnet_lite0", "ciga", "uni", "uni2_h", "gigapath", "h_optimus_0",
            "virchow2")
TIMM_PREFIX = "timm:"

# The share held out of each training slide for validation when a fold has no validation
# sample (stflow.data.holdout; STFlow's val_fraction parameter defaults to it)
VAL_FRACTION = 0.2

# The paper's experiments as tables (stflow.evaluation.paper_tables): tables/{name}.tsv, .md
PAPER_TABLES = ("methods", "priors", "denoisers", "ablations", "inference_time")

# HER2+ breast cancer biomarkers (the paper's Figure 3): drawn as maps unless genes are named
DEFAULT_BIOMARKERS = ("ERBB2", "GATA3")

HER2ST_CHECKSUMS = Path(__file__).parent / "data" / "sources" / "her2st_sha256.tsv"
_HER2ST_COUNTS = "data/ST-cnts/"


def her2st_sections(listing: str | Path = HER2ST_CHECKSUMS) -> list[str]:
    """The her2st sections the download can fetch: the count tables of its checksum list
    (``<sha256>\\t data/ST-cnts/<section>.tsv.gz`` lines), in the list's order."""
    sections = []
    for line in Path(listing).read_text().splitlines():
        fields = line.split()
        if len(fields) != 2 or line.startswith("#"):
            continue
        path = fields[1]
        if path.startswith(_HER2ST_COUNTS) and path.endswith(".tsv.gz"):
            sections.append(path[len(_HER2ST_COUNTS):-len(".tsv.gz")])
    return sections
