"""`stclip detect` over a corpus on Ray Data, and how corpus inputs are found."""
