"""Training and evaluation on the benchmarks: trainer, evaluator, persons, metrics, losses."""
