"""Model cards, where weights come from, safe loading and the reference-checkpoint import."""
