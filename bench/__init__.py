"""AlphaSniper benchmarks on the real stack (``make bench`` / ``python -m bench``). See README.md."""
