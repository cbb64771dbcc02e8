"""Baseline compression methods re-implemented on our zoo (GAN Compression, CAT, PPCD-GAN, …)."""
