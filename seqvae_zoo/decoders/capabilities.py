"""What the built-in recurrent decoders provide other components (``Decoder.provides``)."""

from seqvae_zoo.decoders.attentive import AttentiveDecoder

AttentiveDecoder.provides = frozenset({"context_prior"})
