"""Trainers: the TBPTT engine, the sequence and classifier loops, optimizers."""
