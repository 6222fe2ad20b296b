"""Speech recognisers: PocketSphinx (default, no download) and Whisper exported to ONNX."""
