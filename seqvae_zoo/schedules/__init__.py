"""Weight schedules for the KL and auxiliary terms over training (KL-cost annealing)."""
