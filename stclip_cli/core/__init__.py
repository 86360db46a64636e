"""The per-frame work of detect: persons, keyframe windows, preprocessing, scoring, tracking."""
