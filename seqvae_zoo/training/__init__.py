"""Training: the trainer loop, atomic checkpoints that resume exactly, the run's logs and plots, and training over
several processes and machines (``distributed``: torchrun, the process group, DistributedDataParallel)."""
