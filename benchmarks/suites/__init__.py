"""Benchmark suites, installed as ``seqvae_zoo.suites`` so that ``seqvae bench`` finds them after pip install."""
