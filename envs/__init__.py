"""metarl task-distribution environments; importing this registers their gymnasium ids."""

import gymnasium

# id -> (entry point, horizon = max_episode_steps, constructor kwargs)
_SPECS = {
    "metarl/Navigation2D-v0": ("metarl_envs.navigation:Navigation2DEnv", 100, {}),
    "metarl/HalfCheetahVel-v0": (
        "metarl_envs.locomotion:HalfCheetahTaskEnv",
        200,
        {"goal": "velocity"},
    ),
    "metarl/HalfCheetahDir-v0": (
        "metarl_envs.locomotion:HalfCheetahTaskEnv",
        200,
        {"goal": "direction"},
    ),
    "metarl/AntVel-v0": ("metarl_envs.locomotion:AntTaskEnv", 200, {"goal": "velocity"}),
    "metarl/AntDir-v0": ("metarl_envs.locomotion:AntTaskEnv", 200, {"goal": "direction"}),
}

ENV_IDS = tuple(_SPECS)

for _env_id, (_entry_point, _horizon, _kwargs) in _SPECS.items():
    if _env_id not in gymnasium.registry:
        gymnasium.register(
            id=_env_id, entry_point=_entry_point, max_episode_steps=_horizon, kwargs=_kwargs
        )
