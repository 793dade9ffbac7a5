"""The gin presets, installed as ``seqvae_zoo.configs`` so that a wheel user has them too."""
