"""Count-based and latent-state language models: n-grams and HMMs (importable without torch)."""
