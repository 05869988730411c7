# What every stage shares: the config checked, the plan built from it (specbasis.plan: what the workflow builds),
# the wildcards' constraints, the style file. Each stage's own input functions sit in its .smk.
import re
import sys
from pathlib import Path

sys.path.insert(0, workflow.basedir)  # the specbasis package beside the Snakefile
from snakemake.logging import logger

from specbasis.config import validate_config
from specbasis.plan import Plan, check_local_sources, fetch_params

validate_config(config)  # fails at parse time, naming each bad key and what is allowed
PLAN = Plan(config)  # read by the rules; `config` itself is never changed
check_local_sources(PLAN)  # local: paths that do not exist, files that are not their sha256: before any job
for warning in PLAN.warnings:  # what the suite leaves out
    logger.warning(warning)
STYLE = str(Path(workflow.basedir) / "workflow" / "style" / "specbasis.mplstyle")  # part of the workflow, not of the run


def alternatives(names):
    """A wildcard constraint matching exactly these names (never an empty alternation)."""
    return "|".join(re.escape(n) for n in names) or "(?!)"


wildcard_constraints:
    model=alternatives(PLAN.models),
    fetched=alternatives(PLAN.fetched),
    finetuned=alternatives(PLAN.finetuned),
    dataset=alternatives(PLAN.datasets),
    pair=alternatives(PLAN.pairs),
    edited=alternatives(PLAN.edited),
