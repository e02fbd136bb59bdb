"""Many models, checkpoints and datasets: the spec, the cells on disk, the claims that let many
workers share one folder, cost estimates, and the run that scores what is missing."""
