"""A model and a corpus in, a rank histogram and its summary out: the scoring engine, its
torchrun sharding, the result folder and the Python API that drives them."""
