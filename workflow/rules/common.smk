# What every stage shares: the config checked, the plan built from it (specbasis.plan: what the workflow builds),
# the wildcards' constraints, the style file. Each stage's own input functions sit in its .smk.
import re
import sys
from pathlib import Path

sys.path.insert(0, workflow.basedir)  # the specbasis package beside the Snakefile
from snakemake.logging import logger

from specbasis.config import validate_config
from specbasis.io.lock import lock_path
from specbasis.plan import Plan, Suite, check_local_sources, check_lock, fetch_params, lock_sections

validate_config(config)  # fails at parse time, naming each bad key and what is allowed
SUITE = Suite.of(config, workflow.configfiles)  # where it writes: results/ (config.yaml), else results/<name>/
PLAN = Plan(config, results=SUITE.results)  # read by the rules; `config` itself is never changed
check_local_sources(PLAN)  # local: paths that do not exist, files that are not their sha256: before any job
LOCK = lock_path(SUITE.config)  # config/paper.lock.yaml beside config/paper.yaml: hub commits (the `lock` target)
check_lock(PLAN, LOCK)  # a lock that names another source than the config, or resources/ at another commit
for warning in PLAN.warnings:  # what the suite leaves out
    logger.warning(warning)
PROVENANCE = SUITE.provenance  # a figure's or table's params: the config that made it (the commit: at run time)
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


def R(path):
    """A path in the suite's results folder."""
    return f"{SUITE.results}/{path}"


def L(path):
    """A path in the suite's logs folder."""
    return f"{SUITE.logs}/{path}"
