"""The lab: the book's experiments and the command line's work (training, sweeps, benchmarks)."""
