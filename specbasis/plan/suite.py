"""The plan of a suite: everything the workflow builds, computed once from the validated config.

    plan = Plan(validate_config(config))
    plan.models        # every model: the config's, then the peft grid's runs (finetunes like any other)
    plan.fetched, plan.finetuned, plan.pairs, plan.edited       # the names the rules' wildcards take
    plan.scales, plan.dynamics_modes, plan.prefix_caches        # the dynamics and PEFT stages' wildcards
    plan.figures, plan.tables, plan.all_targets()               # what `snakemake all` builds
    plan.warnings      # what the suite leaves out, said when the workflow parses it

Each stage's rules read it (workflow/rules/<stage>.smk): names and settings come from here, paths are written in the
rules. The config is read, never changed: a Plan holds its own collections. Torch-free.
"""
from __future__ import annotations

from specbasis.config import ConfigError, dynamics_datasets, dynamics_settings, model_modality, modality, scale_name
from specbasis.io.lock import floating, lock_problems, read_lock
from specbasis.methods import parse as parse_method
from specbasis.plan import interventions, peft

# Figures of every suite, in the order `all` lists them; fig18 needs MIN_TESTED_PAIRS pairs with a held-out accuracy.
FIGURES = ("fig2", "fig3", "fig6", "fig7", "fig8", "fig10", "fig11", "fig12", "fig13", "fig14", "fig15", "fig16",
           "fig17", "fig18", "fig19", "fig20")
DYNAMICS_FIGURES = ("fig4", "fig9", "fig21")  # with a `dynamics:` section
PEFT_FIGURES = ("fig5", "fig22")  # with a `peft:` section (fig22, table6: beyond the paper)
TABLES = ("table2", "table3", "table4")
PEFT_TABLES = ("table1", "table5", "table6")
DEFAULT_THREADS = 8  # a torch job's threads where the config's `threads:` names no other
MIN_TESTED_PAIRS = 3  # a Spearman test of fewer pairs has no p below 1
# fig12-15: one rule (interventions.smk), drawing one matrix group's swaps from some sources
_NOT_CROSS = ["pretrained", "random", "random_orthogonal", "zero"]
SWAP_FIGURES = {"fig12": {"group": "ffn", "sources": _NOT_CROSS}, "fig13": {"group": "ffn", "sources": ["cross"]},
                "fig14": {"group": "attn", "sources": _NOT_CROSS}, "fig15": {"group": "attn", "sources": ["cross"]}}


def fetch_params(entry: dict, lock: tuple | None = None) -> dict:
    """source, sha256 and member of a fetched model or dataset (a change of any re-fetches it). lock: (the suite's
    lock file, section, name), added for a hub source at a moving revision (specbasis.io.lock): the fetch reads the
    file when it runs, so writing a lock after the first fetch changes no params and re-fetches nothing."""
    params = {k: entry.get(k) for k in ("source", "sha256", "member")}
    if lock is not None and lock[0] is not None and floating(entry["source"]):
        params["lock"] = {"file": str(lock[0]), "section": lock[1], "name": lock[2]}
    return params


def lock_sections(plan: "Plan") -> dict[str, dict[str, dict]]:
    """The suite's fetched entries by lock section: {"models": {...}, "datasets": {...}} (dynamics' own too)."""
    return {"models": {m: plan.models[m] for m in plan.fetched},
            "datasets": {**plan.datasets, **plan.dynamics_only_datasets}}


def check_lock(plan: "Plan", lock_file) -> None:
    """Raise ConfigError where the suite and its lock disagree (specbasis.io.lock.lock_problems), naming each key."""
    problems = lock_problems(read_lock(lock_file), lock_file, lock_sections(plan))
    if problems:
        raise ConfigError("the config and its lock disagree:\n  - " + "\n  - ".join(problems))


def reads_svd_store(entry: dict) -> bool:
    """Whether a finetuned model's training reads its base model's SVD store (spectral: U_r, V_r from there)."""
    return parse_method(entry["finetune"].get("method")).reads_svd_store


def check_local_sources(plan: "Plan") -> None:
    """Raise ConfigError listing every `local:` source of the suite that its fetch would refuse: a path that does
    not exist, a file that is not its `sha256` (specbasis.io.fetch.local_source_problems). The workflow calls it
    when it parses the config, so that no job starts from a config that cannot run."""
    from specbasis.io.fetch import local_source_problems

    problems = (local_source_problems(plan.models, "models") + local_source_problems(plan.datasets, "datasets")
                + local_source_problems(plan.dynamics_only_datasets, "dynamics.datasets"))
    if problems:
        raise ConfigError("invalid configuration:\n  - " + "\n  - ".join(problems))


class Plan:
    """What the workflow builds from one validated config (see the module's docstring)."""

    def __init__(self, config: dict, results: str = "results"):
        self.config = config
        self.results = results  # the suite's results folder (specbasis.plan.outputs.Suite.results)
        self.peft = config.get("peft")  # the section, or None: the PEFT stage (table1, table5, fig5) is off
        self.dynamics = config.get("dynamics")  # the section, or None: the dynamics stage (fig4, fig9, fig21) is off
        self.models = {**config["models"], **(peft.model_entries(config) if self.peft else {})}
        self.datasets = config["datasets"]
        self.pairs = config["pairs"]
        self.fetched = [m for m, spec in self.models.items() if "source" in spec]
        self.finetuned = [m for m, spec in self.models.items() if "finetune" in spec]
        self.warnings: list[str] = []

        # interventions: the config seen with the grid's runs among its models (a default `interventions.models`
        # is every finetune of the workflow)
        self._suite = {**config, "models": self.models}
        self.interventions = config["interventions"]
        self.edited = interventions.intervention_models(self._suite)  # the models the swap and mask rules edit
        no_donor = [m for m in self.edited if "cross" in self.interventions["sources"] and not self.cross_donor(m)]
        if no_donor:
            self.warnings.append(f"interventions: no cross donor (interventions.cross) for {', '.join(no_donor)}: "
                                 "their cross-task swaps are left out (fig13, fig15 say so)")

        # fig18 correlates alignment with held-out accuracy: measured for the models this workflow finetunes, taken
        # from the config (`accuracy:`) for hub models; pairs with neither are left out of its tests.
        self.without_accuracy = sorted(p for p, m in self.pair_finetuned().items()
                                       if m not in self.finetuned and self.models[m].get("accuracy") is None)
        self.tested_pairs = [p for p in self.pairs if p not in self.without_accuracy]
        figures = list(FIGURES)
        if len(self.tested_pairs) < MIN_TESTED_PAIRS:
            figures.remove("fig18")
            self.warnings.append(
                f"fig18 is left out of `all`: only {len(self.tested_pairs)} pairs have a held-out accuracy (fewer "
                f"than {MIN_TESTED_PAIRS}); without one: {', '.join(self.without_accuracy)} (add `accuracy:` to "
                "their finetuned models in the config)")
        elif self.without_accuracy:
            self.warnings.append(f"fig18 leaves out pairs without a held-out accuracy: {', '.join(self.without_accuracy)} "
                                 "(add `accuracy:` to their finetuned models in the config to include them)")

        # pretraining dynamics: one MAE per data scale, post-trained in each mode
        dyn = self.dynamics or {}
        self.dynamics_only_datasets = dyn.get("datasets", {}) if self.dynamics else {}  # fetched by their own rule
        self.scales = {scale_name(n): n for n in dyn.get("scales", [])}  # path spelling -> images
        self.dynamics_modes = list(dyn.get("modes", []))

        # PEFT: fig5's runs by name; prefix cache name -> the first sweep run that reads it (its settings say how
        # the cache is cut and tokenised)
        self.sweep_runs = {r.name: r for r in peft.sweep_runs(config)} if self.peft else {}
        self.prefix_caches: dict[str, peft.Run] = {}
        for run in self.sweep_runs.values():
            if peft.uses_cache(config, run):
                self.prefix_caches.setdefault(self.prefix_cache_name(run), run)

        self.figures = figures + (list(DYNAMICS_FIGURES) if self.dynamics else []) + (
            list(PEFT_FIGURES) if self.peft else [])
        self.tables = list(TABLES) + (list(PEFT_TABLES) if self.peft else [])

    def threads(self, rule: str) -> int:
        """Torch threads of each job of `rule`: the config's `threads.<rule>`, else DEFAULT_THREADS (Snakemake caps
        a job's threads at --cores)."""
        return int(self.config.get("threads", {}).get(rule, DEFAULT_THREADS))

    def all_targets(self) -> list[str]:
        """Everything `snakemake all` builds: every figure (PDF and PNG) and table (CSV, Markdown, LaTeX)."""
        return ([f"{self.results}/{fig}.{ext}" for fig in self.figures for ext in ("pdf", "png")]
                + [f"{self.results}/{table}.{ext}" for table in self.tables for ext in ("csv", "md", "tex")])

    # ------------------------------------------------------------------ models and their finetunes

    reads_svd_store = staticmethod(reads_svd_store)

    def finetune_settings(self, model: str) -> dict:
        """A finetune's training settings: the modality's, the dataset's reader, the seeds, the method, overrides."""
        spec = self.models[model]
        finetune = spec["finetune"]
        dataset = self.datasets[finetune["dataset"]]
        return {
            "family": spec["family"],
            "format": dataset["format"],
            "task": dataset.get("task"),
            "seed": self.config["seed"],  # the split's
            "train_seed": finetune.get("seed", self.config["seed"]),  # the head's init, the batch order, dropout
            "device": self.config["device"],
            "method": finetune.get("method"),
            **({"validation_only": True} if finetune.get("validation_only") else {}),  # the lr selection's runs
            **self.config["finetune"].get(modality(spec["family"]), {}),
            **finetune.get("train", {}),
        }

    # ------------------------------------------------------------------ pairs

    def pair_finetuned(self) -> dict[str, str]:
        """{pair: its finetuned model}."""
        return {pair: spec["finetuned"] for pair, spec in self.pairs.items()}

    def tested_pair_finetuned(self) -> dict[str, str]:
        """{pair: its finetuned model} of the pairs fig18 tests (those with a held-out accuracy)."""
        return {pair: model for pair, model in self.pair_finetuned().items() if pair in self.tested_pairs}

    def config_accuracies(self) -> dict[str, float | None]:
        """{finetuned model of a pair: the accuracy listed in the config, or None}."""
        return {spec["finetuned"]: self.models[spec["finetuned"]].get("accuracy") for spec in self.pairs.values()}

    def trained_pair_models(self) -> list[str]:
        """The finetuned models of pairs that this workflow trains (their metrics.json hold the accuracy)."""
        return sorted({m for m in self.pair_finetuned().values() if m in self.finetuned})

    def pretrained_of_pairs(self) -> list[str]:
        """Every pretrained model of a pair, sorted."""
        return sorted({p["pretrained"] for p in self.pairs.values()})

    def pair_modality(self) -> dict[str, str]:
        """{pair: 'vision', 'language', 'eeg' or 'fmri'}: the pretrained model's `modality:` or its family's."""
        return {pair: model_modality(self.models[spec["pretrained"]]) for pair, spec in self.pairs.items()}

    def modality_pairs(self, which: str) -> dict[str, dict]:
        """{pair: {pretrained, finetuned}} of the pairs of one modality."""
        modality_of = self.pair_modality()
        return {pair: dict(spec) for pair, spec in self.pairs.items() if modality_of[pair] == which}

    # ------------------------------------------------------------------ interventions

    def pretrained_of(self, model: str) -> str | None:
        """The pretrained model an edited model comes from (its `pretrained` donor)."""
        return interventions.pretrained_of(self._suite, model)

    def cross_donor(self, model: str) -> str | None:
        """An edited model's cross-task donor (interventions.cross), or None."""
        return interventions.cross_donor(self._suite, model)

    def edited_dataset(self, model: str) -> str:
        """The dataset an edited model is evaluated on: its finetune's, else its `evaluate_on` (a fetched model)."""
        spec = self.models[model]
        return spec["finetune"]["dataset"] if "finetune" in spec else spec["evaluate_on"]

    def edited_split(self, model: str) -> dict:
        """How the held-out part is made: the finetune's reader, seed and caps (the same test examples its
        metrics.json measured); for a fetched model, its evaluate_on dataset's reader and task, and its `labels`."""
        if "finetune" in self.models[model]:
            train = self.finetune_settings(model)
            return {"held_out": "finetune", **{k: train.get(k) for k in ("format", "task", "seed", "max_train",
                                                                          "max_eval")}}
        dataset = self.datasets[self.edited_dataset(model)]
        return {"held_out": "evaluate_on", "format": dataset["format"], "task": dataset.get("task"),
                "seed": self.config["seed"], "labels": self.models[model].get("labels")}

    def _edited_common(self, model: str) -> dict:
        return {
            "model": model,
            "family": self.models[model]["family"],
            "device": self.config["device"],
            "split": self.edited_split(model),
            "groups": interventions.intervention_groups(self._suite, model),
            "max_eval": self.interventions["max_eval"],
            "batch_size": self.interventions["batch_size"],
        }

    def swap_settings(self, model: str) -> dict:
        """Swap settings of one model: groups, sources, k grid, donors' names, random seed."""
        return {
            **self._edited_common(model),
            "sources": interventions.intervention_sources(self._suite, model),
            "k": self.interventions["k"],
            "seed": self.interventions.get("seed", self.config["seed"]),
            "pretrained": self.pretrained_of(model),
            "cross": self.cross_donor(model),
        }

    def mask_settings(self, model: str) -> dict:
        """Mask settings of one model: groups, orders, fractions."""
        return {**self._edited_common(model), "orders": self.interventions["orders"],
                "fractions": self.interventions["fractions"]}

    # ------------------------------------------------------------------ pretraining dynamics

    def _dynamics_common(self) -> dict:
        data = dynamics_datasets(self.config)
        return {"seed": self.dynamics.get("seed", self.config["seed"]), "device": self.config["device"],
                "analysed": self.dynamics["analysed"], "pretrain_format": data[self.dynamics["data"]]["format"]}

    def dynamics_pretrain_settings(self, scale: str) -> dict:
        """What pretrain_mae needs for one scale: data format, scale, validation size, MAE spec, TrainSettings."""
        dyn = self.dynamics
        return {**self._dynamics_common(), "format": dynamics_datasets(self.config)[dyn["data"]]["format"],
                "scale": self.scales[scale], "val_images": dyn["val_images"], "spec": dyn["spec"],
                "train": dynamics_settings(dyn["pretrain"])}

    def dynamics_posttrain_section(self, mode: str) -> dict:
        """The config section of a post-training mode: classify_shuffled trains as classify does, fit_shuffled as
        fit (few images, many epochs)."""
        return self.dynamics[{"reconstruct": "reconstruct", "fit": "fit", "fit_shuffled": "fit"}.get(mode, "classify")]

    def dynamics_posttrain_dataset(self, mode: str) -> str:
        """The dataset a post-training mode reads: new_data for reconstruct, else the pretraining data."""
        return self.dynamics["new_data" if mode == "reconstruct" else "data"]

    def dynamics_posttrain_settings(self, scale: str, mode: str) -> dict:
        """What posttrain_mae needs for one scale x mode."""
        dyn, section = self.dynamics, self.dynamics_posttrain_section(mode)
        fmt = dynamics_datasets(self.config)[self.dynamics_posttrain_dataset(mode)]["format"]
        return {**self._dynamics_common(), "format": fmt, "scale": self.scales[scale], "images": section["images"],
                "train": dynamics_settings(section), "track_every": dyn["track_every"], "max_rank": dyn["max_rank"],
                "top": dyn["top"]}

    def posttrain_runs(self, modes, ends: bool = False) -> list[tuple[str, str]]:
        """[(scale, mode)] of the configured modes among `modes`, every scale (ends: the smallest and largest
        scale only), scales from small to large, each scale's modes in the order given."""
        names = sorted(self.scales, key=self.scales.get)
        names = sorted({names[0], names[-1]}, key=self.scales.get) if ends and names else names
        return [(s, m) for s in names for m in modes if m in self.dynamics_modes]

    # ------------------------------------------------------------------ PEFT

    def prefix_cache_name(self, run: peft.Run) -> str:
        """A prefix cache's name: the base model, the task and the first adapted block."""
        return f"{self.peft['base']}-{run.task}-L{run.first_layer}"

    def prefix_cache_of(self, model: str) -> str | None:
        """The prefix cache a fig5 run starts from (peft.sweeps.cache_prefix), or None."""
        run = self.sweep_runs.get(model)
        if run is None or not peft.uses_cache(self.config, run):
            return None
        return self.prefix_cache_name(run)

    def prefix_cache_settings(self, cache: str) -> dict:
        """What a prefix cache is built from: the split and tokenisation of the sweep runs on its task."""
        run = self.prefix_caches[cache]
        return {**self.finetune_settings(run.name), "start": run.first_layer}

    def peft_table_cells(self) -> list[dict]:
        """table1's cells: task, method, seed and the model holding its metrics.json ([] without a peft section)."""
        return peft.table_models(self.config) if self.peft else []

    def peft_reference_cells(self) -> list[dict]:
        """fig5's full-finetuning reference on its task (peft.sweep_reference): [] without one."""
        return peft.sweep_reference(self.config) if self.peft else []

    def peft_sweep_points(self) -> list[dict]:
        """fig5's points ([] without a peft section or its sweeps)."""
        return peft.sweep_models(self.config) if self.peft else []

    def lr_selection_cells(self) -> list[dict]:
        """The learning-rate selection's runs (peft.selection_cells; [] without a peft section or candidates)."""
        return peft.selection_cells(self.config) if self.peft else []

    def table5_settings(self) -> dict:
        """{task: {method: resolved training settings}} of table1's runs ({} without a peft section)."""
        return peft.table5_settings(self.config) if self.peft else {}
