"""What the workflow builds, computed from the validated config; torch-free (the workflow imports it while it
parses the config)."""
