"""Reading and writing artifacts: fetching sources, extracting checkpoints' matrices by canonical id (name maps),
atomic writes and tidy tables. Generic: imports no capability of specbasis."""
