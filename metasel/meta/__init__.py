"""Meta-learning parts: features, acquisition functions, selection, baselines, evaluation."""
