"""Training: the trainer loop, atomic checkpoints that resume exactly, and the run's logs and plots."""
