"""HalfCheetah and Ant with goal-velocity and goal-direction tasks (MAML paper, 5.3).

Both build on Gymnasium's MuJoCo v5 models and replace the forward reward with
the task's: `-|v - goal|` for a goal velocity, `direction * v` for a goal
direction, where v is the forward (x) velocity of the root body, computed from
its x position before and after the step divided by `dt`. Every reward is the
sum of the `reward_*` terms in `info`.

Actions outside the action space are clipped to it before they are applied and
costed, so a Gaussian policy's raw samples can be passed in.
"""

from __future__ import annotations

import mujoco
import numpy as np
from gymnasium.envs.mujoco.ant_v5 import AntEnv
from gymnasium.envs.mujoco.half_cheetah_v5 import HalfCheetahEnv

from metarl_envs.models import compile_model
from metarl_envs.tasks import GoalDirection, GoalVelocity, TaskEnvMixin, TaskFamily

CHEETAH_TASKS: dict[str, TaskFamily] = {
    "velocity": GoalVelocity(low=0.0, high=2.0, default=1.0),
    "direction": GoalDirection(default=1),
}
ANT_TASKS: dict[str, TaskFamily] = {
    "velocity": GoalVelocity(low=0.0, high=3.0, default=1.5),
    "direction": GoalDirection(default=1),
}


def _task_family(families: dict[str, TaskFamily], goal: str) -> TaskFamily:
    if goal not in families:
        raise ValueError(f"goal must be one of {sorted(families)}, got {goal!r}")
    return families[goal]


class HalfCheetahTaskEnv(TaskEnvMixin, HalfCheetahEnv):
    """HalfCheetah-v5 whose forward reward is the task's.

    reward = reward_forward + reward_ctrl, with reward_ctrl = -0.05 * |a|^2 (the paper's
    weight). Default task: velocity 1.0 / direction +1.
    """

    def __init__(self, goal: str, oracle: bool = False, ctrl_cost_weight: float = 0.05, **kwargs):
        self.task_family = _task_family(CHEETAH_TASKS, goal)
        self.oracle = bool(oracle)
        super().__init__(ctrl_cost_weight=ctrl_cost_weight, **kwargs)
        self.observation_space = self._init_task_api(self.observation_space)

    def _initialize_simulation(self) -> tuple[mujoco.MjModel, mujoco.MjData]:
        # Gymnasium's loader, minus the deprecation warning its half_cheetah.xml triggers.
        model = compile_model(self.fullpath)
        model.vis.global_.offwidth = max(model.vis.global_.offwidth, self.width)
        model.vis.global_.offheight = max(model.vis.global_.offheight, self.height)
        return model, mujoco.MjData(model)

    def step(self, action):
        action = np.clip(action, self.action_space.low, self.action_space.high)
        x_before = float(self.data.qpos[0])
        self.do_simulation(action, self.frame_skip)
        x_velocity = (float(self.data.qpos[0]) - x_before) / self.dt
        info = {
            "x_position": float(self.data.qpos[0]),
            "x_velocity": x_velocity,
            "reward_forward": self.task_family.forward_reward(self._task, x_velocity),
            "reward_ctrl": -float(self.control_cost(action)),
        }
        reward = info["reward_forward"] + info["reward_ctrl"]
        return self._get_obs(), reward, False, False, info

    def _get_obs(self):
        return self._with_task_features(super()._get_obs())


class AntTaskEnv(TaskEnvMixin, AntEnv):
    """Ant-v5 whose forward reward is the task's; terminates when unhealthy.

    reward = reward_forward + reward_survive (+1 while healthy, the paper's alive bonus)
    + reward_ctrl (-0.005 * |a|^2, the paper's weight) + reward_contact
    (-5e-4 * |clipped external contact forces|^2). The observation leaves out the
    contact forces (27 dims, see README). Default task: velocity 1.5 / direction +1.
    """

    def __init__(
        self,
        goal: str,
        oracle: bool = False,
        ctrl_cost_weight: float = 0.005,
        include_cfrc_ext_in_observation: bool = False,
        **kwargs,
    ):
        self.task_family = _task_family(ANT_TASKS, goal)
        self.oracle = bool(oracle)
        super().__init__(
            ctrl_cost_weight=ctrl_cost_weight,
            include_cfrc_ext_in_observation=include_cfrc_ext_in_observation,
            **kwargs,
        )
        self.observation_space = self._init_task_api(self.observation_space)

    def step(self, action):
        action = np.clip(action, self.action_space.low, self.action_space.high)
        x_before = float(self.data.qpos[0])
        self.do_simulation(action, self.frame_skip)
        x_velocity = (float(self.data.qpos[0]) - x_before) / self.dt
        healthy = bool(self.is_healthy)
        info = {
            "x_position": float(self.data.qpos[0]),
            "x_velocity": x_velocity,
            "reward_forward": self.task_family.forward_reward(self._task, x_velocity),
            "reward_ctrl": -float(self.control_cost(action)),
            "reward_contact": -float(self.contact_cost),
            "reward_survive": float(self.healthy_reward),
        }
        reward = sum(value for key, value in info.items() if key.startswith("reward_"))
        return self._get_obs(), reward, not healthy, False, info

    def _get_obs(self):
        return self._with_task_features(super()._get_obs())
