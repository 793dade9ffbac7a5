"""Training procedures: how the trainer learns from the stream of training batches (one module per procedure,
registered under ``procedures``; gin selects one with ``training.TrainingSettings.procedure = @procedures.<name>()``).
"""
