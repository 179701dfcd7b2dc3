"""metarl: Model-Agnostic Meta-Learning for policies on Gymnasium/MuJoCo task distributions."""

import metarl_envs  # noqa: F401  (registers the metarl/... gymnasium ids)

__version__ = "0.1.0"
