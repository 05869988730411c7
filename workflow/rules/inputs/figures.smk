# The figures stage's input functions and params (its rules: ../figures.smk): names and settings come
# from the plan (specbasis.plan), paths are written out here.


def pair_tables(analysis, suffix=".csv"):
    """results/<analysis>/<pair><suffix> of every pair."""
    return expand(R("{analysis}/{pair}{suffix}"), analysis=analysis, pair=PLAN.pairs, suffix=suffix)


def energy_tables():
    """results/energy/<model>.csv of every pretrained model of a pair."""
    return expand(R("energy/{model}.csv"), model=PLAN.pretrained_of_pairs())


def modality_tables(which):
    """The alignment tables of the pairs of one modality ('vision', 'language', 'eeg', 'fmri')."""
    return [R(f"alignment/{pair}.csv") for pair in PLAN.modality_pairs(which)]


def brain_tables():
    """The alignment tables of the EEG and fMRI pairs (fig7; none in the default suite)."""
    return [table for which in ("eeg", "fmri") for table in modality_tables(which)]
