"""Data sources (IDX files, TFDS, embedded sets) and the sequence data toolkit."""
