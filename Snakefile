# stflow: predict spatial gene expression from H&E histology with STFlow.
#   snakemake --profile profiles/local                       # offline synthetic default
#   snakemake --profile profiles/local --configfile config/her2st.yaml
#   snakemake --report results/synthetic/report.html         # figures and tables as HTML
import os
import sys

from snakemake.utils import min_version

min_version("9.0")
# the workflow's own library (also when used as a module, or with --directory elsewhere)
sys.path.insert(0, str(workflow.current_basedir))
from stflow.config import replace_search_spaces, typed_like_schema
from stflow.config_checks import check_config, stop_on, with_defaults
from stflow.schema import load_schema


configfile: "config/config.yaml"


# a search space given on the command line replaces the default study's, not merges into it
replace_search_spaces(config, workflow.config_settings.overwrite_config)

# --config 'genes={n_top: 50}' gives '50': read such values as the schema types them first
# (the schema with the catalogues' model and encoder names and patch defaults put in)
SCHEMA = load_schema(workflow.current_basedir.join("config/schema.yaml"))
config.update(typed_like_schema(dict(config), SCHEMA))
# every mistake at once (schema, cross-field rules, model parameters, search spaces, files),
# before any job: one message, no traceback (stflow/config_checks.py)
stop_on(check_config(config, SCHEMA, cwd=os.getcwd(), remote=workflow.remote_exec))
config.update(with_defaults(config, SCHEMA))  # the schema's defaults filled in


report: "workflow/report/workflow.rst"


include: "rules/common.smk"
include: "rules/download.smk"
include: "rules/ingest.smk"
include: "rules/splits.smk"
include: "rules/genes.smk"
include: "rules/patches.smk"
include: "rules/embed.smk"
include: "rules/graph.smk"
include: "rules/train.smk"
include: "rules/evaluate.smk"
include: "rules/figures.smk"
include: "rules/slides.smk"
include: "rules/view.smk"


rule all:
    input:
        STUDY.targets(),
        slide_targets(),
        view_targets,
    default_target: True


rule final_models:
    # a target only: every encoder x model trained on all samples (rules/slides.smk)
    input:
        [res(d, L.FINAL_MODEL.format(encoder=e, model=m)) for d in DATASETS
         for e in STUDY.encoders for m in STUDY.models],
