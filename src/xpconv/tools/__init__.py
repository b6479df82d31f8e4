"""xpconv's tools, apart from the library: ``python -m xpconv check | bench | demo``.

- :mod:`xpconv.tools.check`: every backend against torch autograd (or finite differences).
- :mod:`xpconv.tools.gate`: the release gate, drawn cases of every kind of call.
- :mod:`xpconv.tools.bench` and :mod:`xpconv.tools.sweep`: timings against torch's own convolution.
- :mod:`xpconv.tools.demo`: trains :mod:`xpconv.network` on scikit-learn's 8x8 digits.
- :mod:`xpconv.tools.cli`: the command line.

They use only xpconv's public API. ``import xpconv`` loads none of them (nor matplotlib).
"""
