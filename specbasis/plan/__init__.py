"""What the workflow builds, computed from the validated config; torch-free (the workflow imports it while it
parses the config). `Plan(config)` (suite.py) is what the rules read; interventions.py and peft.py plan their
sections and register those sections' checks with specbasis.config (importing this package registers them)."""
from specbasis.plan import interventions, peft  # noqa: F401 (their section checks register on import)
from specbasis.plan.outputs import Suite
from specbasis.plan.suite import Plan, check_local_sources, check_lock, fetch_params, lock_sections, reads_svd_store

__all__ = ["Plan", "Suite", "check_local_sources", "check_lock", "fetch_params", "lock_sections", "reads_svd_store",
           "interventions", "peft"]
