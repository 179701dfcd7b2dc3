"""metarl task-distribution environments; importing this registers their gymnasium ids.

Each id has an entry point (`gymnasium.make`) and a vector entry point
(`gymnasium.make_vec(id, n, vectorization_mode="vector_entry_point")`, see
`metarl_envs.vector`) for samplers that step many copies with different tasks.
"""

import gymnasium

from metarl_envs.meta_world import HORIZON as _METAWORLD_HORIZON
from metarl_envs.meta_world import ML1_ENV_NAMES
from metarl_envs.meta_world import missing_extra as _metaworld_missing

_NAVIGATION = (
    "metarl_envs.navigation:Navigation2DEnv",
    "metarl_envs.navigation:Navigation2DVectorEnv",
)
_CHEETAH = (
    "metarl_envs.locomotion:HalfCheetahTaskEnv",
    "metarl_envs.vector:half_cheetah_vector_env",
)
_ANT = ("metarl_envs.locomotion:AntTaskEnv", "metarl_envs.vector:ant_vector_env")

# id -> ((entry point, vector entry point), horizon = max_episode_steps, constructor kwargs)
_SPECS = {
    "metarl/Navigation2D-v0": (_NAVIGATION, 100, {}),
    "metarl/HalfCheetahVel-v0": (_CHEETAH, 200, {"goal": "velocity"}),
    "metarl/HalfCheetahDir-v0": (_CHEETAH, 200, {"goal": "direction"}),
    "metarl/AntVel-v0": (_ANT, 200, {"goal": "velocity"}),
    "metarl/AntDir-v0": (_ANT, 200, {"goal": "direction"}),
}
# the paper's task distributions (each has an oracle variant and a reward made of info terms)
ENV_IDS = tuple(_SPECS)


def _add_variants(env_ids: tuple[str, ...], suffix: str, kwargs: dict) -> None:
    """Register each of `env_ids`, the id without `suffix` plus constructor `kwargs`."""
    for env_id in env_ids:
        entry_points, horizon, base_kwargs = _SPECS[env_id.replace(suffix, "")]
        _SPECS[env_id] = (entry_points, horizon, {**base_kwargs, **kwargs})


# The Ant tasks without termination: an episode always lasts the horizon, and the survive
# bonus is paid only on healthy steps. AntVel-v0 and AntDir-v0 (Gymnasium's and the paper's
# rule) end an episode when the torso leaves the healthy height range, which on AntVel pays
# for ending an episode more than 1 m/s off the goal (README). Same spaces, tasks and reward
# terms as theirs.
NO_TERMINATION_ENV_IDS = ("metarl/AntVelNoTermination-v0", "metarl/AntDirNoTermination-v0")
_add_variants(NO_TERMINATION_ENV_IDS, "NoTermination", {"terminate_when_unhealthy": False})
# The cheetah tasks on the paper's clock: one physics step (0.01 s) per action, as in the
# paper's code (rllab), so that a 200-step episode is 2 s of simulated time; the v0 ids
# step Gymnasium's 5 times (0.05 s, 10 s an episode). Same spaces, tasks and reward terms
# (README, "HalfCheetah on the paper's clock").
PAPER_CLOCK_ENV_IDS = ("metarl/HalfCheetahVelPaperClock-v0", "metarl/HalfCheetahDirPaperClock-v0")
_add_variants(PAPER_CLOCK_ENV_IDS, "PaperClock", {"frame_skip": 1})
# the envs whose vector env can step its copies over threads (`physics_threads`)
PHYSICS_THREADS_ENV_IDS = tuple(i for i, spec in _SPECS.items() if spec[0] in (_CHEETAH, _ANT))

# Meta-World (the `metaworld` extra, imported only when such an env is made): ML1 of each
# v3 environment, and ML10. The "-v3" is Meta-World's env version.
_METAWORLD = (
    "metarl_envs.meta_world:MetaWorldTaskEnv",
    "metarl_envs.meta_world_vector:metaworld_vector_env",
)
METAWORLD_ENV_IDS = (
    *(f"metarl/ML1-{name}" for name in ML1_ENV_NAMES),
    "metarl/ML10-v3",
)
for _name in ML1_ENV_NAMES:
    _SPECS[f"metarl/ML1-{_name}"] = (
        _METAWORLD,
        _METAWORLD_HORIZON,
        {"benchmark": "ML1", "env_name": _name},
    )
_SPECS["metarl/ML10-v3"] = (_METAWORLD, _METAWORLD_HORIZON, {"benchmark": "ML10"})
ALL_ENV_IDS = tuple(_SPECS)


def missing_extra(env_id: str) -> str | None:
    """Why `env_id` cannot be made here (naming the extra to install), or None."""
    return _metaworld_missing() if env_id in METAWORLD_ENV_IDS else None


for _env_id, ((_entry_point, _vector_entry_point), _horizon, _kwargs) in _SPECS.items():
    if _env_id not in gymnasium.registry:
        gymnasium.register(
            id=_env_id,
            entry_point=_entry_point,
            vector_entry_point=_vector_entry_point,
            max_episode_steps=_horizon,
            kwargs=_kwargs,
        )
