"""Kernels: how the models' mathematics is computed fast, apart from the equations themselves.

The decoders (:mod:`seqvae_zoo.decoders`) and the model (:mod:`seqvae_zoo.model`) state the equations and call what
lives here; tests/test_fast_path.py holds every kernel to a plain step-by-step reference, values and gradients.

- :mod:`~seqvae_zoo.kernels.recurrence`: the packed LSTM recurrence
  (:class:`~seqvae_zoo.kernels.recurrence.PackedLayout`, :class:`~seqvae_zoo.kernels.recurrence.PackedLSTM` with its
  hand-written backward, the step buffers) and the interface of the latent heads that run inside it;
- :mod:`~seqvae_zoo.kernels.latent_heads`: the stochastic and attentive decoders' per-step latents inside that loop,
  forward and backward written by hand;
- :mod:`~seqvae_zoo.kernels.output`: the output layer fused with its softmax cross-entropy;
- :mod:`~seqvae_zoo.kernels.matmul`: float32 products through oneDNN on a CPU;
- :mod:`~seqvae_zoo.kernels.precision`: mixed precision, the bfloat16 products every kernel above runs under autocast
  with float32 state, and the checks of the training precision.
"""
