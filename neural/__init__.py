"""Neural language models: the RNN family, the Transformer and Hugging Face models."""
