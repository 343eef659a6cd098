"""Models: the reference decoder ``gpt`` (GPT, GPTConfig, create_model_for_scaling)."""
