"""The suite's lock (specbasis.io.lock): the commit each hub source at a moving revision was fetched at.

Snakemake: input (named section.name: the resources/ folder of each such source, holding fetched.json), output[0]
(the lock file beside the config), log[0].
"""
import json
import logging
from pathlib import Path

from specbasis.io.fetch import RECORD
from specbasis.io.lock import lock_document, write_lock
from specbasis.logs import setup_logging


def main(folders: dict[str, str], out: str) -> None:
    records = {"models": {}, "datasets": {}}
    for key, folder in folders.items():
        section, name = key.split(".", 1)
        records[section][name] = json.loads((Path(folder) / RECORD).read_text())
    document = lock_document(records)
    write_lock(out, document)
    for section, entries in document.items():
        for name, entry in entries.items():
            logging.getLogger("specbasis").info("%s.%s: %s at %s", section, name, entry["source"], entry["commit"])


if __name__ == "__main__":
    setup_logging(snakemake.log[0])  # noqa: F821 - injected by Snakemake
    main(dict(snakemake.input.items()), snakemake.output[0])  # noqa: F821
