"""Translators: Apertium (subprocess, offline fallback) and Marian / OPUS-MT exported to ONNX."""
