"""xpconv's tools, apart from the library: ``python -m xpconv check | bench | demo``.

- :mod:`xpconv.tools.check`: every backend against torch autograd (or finite differences).
- :mod:`xpconv.tools.gate`: the release gate, drawn cases of every kind of call.
- :mod:`xpconv.tools.bench`: the ``bench`` command; its geometries are data in
  :mod:`xpconv.tools.suites`, its timing in :mod:`xpconv.tools.runner` (a worker process per
  candidate), its tables and plots in :mod:`xpconv.tools.report`; :mod:`xpconv.tools.sweep` (batch
  and image size), :mod:`xpconv.tools.models` (training steps of model blocks),
  :mod:`xpconv.tools.regret` (``"auto"`` against the fastest method) and :mod:`xpconv.tools.signals`
  (one-channel signals against scipy.signal) are its other suites.
- :mod:`xpconv.tools.demo`: trains :mod:`xpconv.network` on scikit-learn's 8x8 digits.
- :mod:`xpconv.tools.cli`: the command line.

They use only xpconv's public API. ``import xpconv`` loads none of them (nor matplotlib).
"""
