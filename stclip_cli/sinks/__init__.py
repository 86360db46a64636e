"""Outputs: the detect JSON format (one writer, one reader), files, video, timeline, rows, events, safety."""
