"""metarl: Model-Agnostic Meta-Learning for policies on Gymnasium/MuJoCo task distributions."""

import metarl_envs  # noqa: F401  (registers the metarl/... gymnasium ids)

__version__ = "0.2.0"

# What a training iteration computes. A run resumes under any later metarl with the same
# ALGORITHM_VERSION (faster samplers, new layouts and version bumps do not strand it); bump it
# only when the update itself changes (losses, advantages, the meta-step), so that a resumed
# run never mixes two algorithms. The README's results name the version they were made with.
ALGORITHM_VERSION = 1
