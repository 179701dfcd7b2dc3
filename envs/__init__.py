"""metarl task-distribution environments; importing this registers their gymnasium ids.

Each id has an entry point (`gymnasium.make`) and a vector entry point
(`gymnasium.make_vec(id, n, vectorization_mode="vector_entry_point")`, see
`metarl_envs.vector`) for samplers that step many copies with different tasks.
"""

import gymnasium

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

ENV_IDS = tuple(_SPECS)

for _env_id, ((_entry_point, _vector_entry_point), _horizon, _kwargs) in _SPECS.items():
    if _env_id not in gymnasium.registry:
        gymnasium.register(
            id=_env_id,
            entry_point=_entry_point,
            vector_entry_point=_vector_entry_point,
            max_episode_steps=_horizon,
            kwargs=_kwargs,
        )
