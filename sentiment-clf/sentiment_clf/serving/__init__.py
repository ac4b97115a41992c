"""Text in, probabilities out: the fast and accurate tiers' models, read from their saved
files. numpy, onnxruntime and tokenizers; no HTTP, no SQL."""
