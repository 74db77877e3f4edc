"""Developer tools of the ntkserve workspace (not shipped)."""
