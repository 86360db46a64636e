"""Dataset pickles are read by safe_loading.load_data_pickle; this name stays for data/jhmdb.py and data/ava.py."""

from stclip_cli.weights.safe_loading import load_data_pickle  # re-export: the lead switches its importers, then drops this file

__all__ = ["load_data_pickle"]
