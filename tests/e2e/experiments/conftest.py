"""The rollout tests' models and controller process, for the experiment tests."""

from tests.e2e.rollouts.conftest import env, models

__all__ = ["env", "models"]
