"""Experiments: a candidate version in the shadow of the served one, or an A/B split, judged by
an always-valid sequential test, and promoted through a rollout (docs/experiments.md).

Pure core: :mod:`~controller.experiments.spec` (the request and its checks) and
:mod:`~controller.experiments.results` (windows added up and judged); store, service; api, cli.
"""
