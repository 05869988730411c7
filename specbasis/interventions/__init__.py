"""Interventions on singular vectors (the paper's first claim, by experiment): the edits (swap, randomise,
remove, mask), writing edited matrices back into a live model, and the sweeps that re-evaluate it."""
