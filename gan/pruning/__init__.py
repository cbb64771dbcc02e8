"""Channel groups, saliency and physical pruning to a dense smaller model."""
