"""HalfCheetah and Ant with goal-velocity and goal-direction tasks (MAML paper, 5.3).

Both build on Gymnasium's MuJoCo v5 models and replace the forward reward with
the task's: `-|v - goal|` for a goal velocity, `direction * v` for a goal
direction, where v is the forward (x) velocity of the root body, computed from
its x position before and after the step divided by `dt`. Every reward is the
sum of the `reward_*` terms in `info`.

The dynamics are written for a batch of envs (`step_batch`): each env's MuJoCo
data advances `frame_skip` physics steps, then observations, rewards and
terminations are computed for all of them at once in numpy. `step` is
`step_batch` on a batch of one, so a vector env of many copies and a single env
compute the same numbers. Reset is Gymnasium's (`reset_model`).

Actions outside the action space are clipped to it before they are applied and
costed, so a Gaussian policy's raw samples can be passed in.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import mujoco
import numpy as np
from gymnasium.envs.mujoco.ant_v5 import AntEnv
from gymnasium.envs.mujoco.half_cheetah_v5 import HalfCheetahEnv

from metarl_envs.models import compile_model
from metarl_envs.physics_threads import PhysicsThreads
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


class LocomotionMixin(TaskEnvMixin):
    """The batched step shared by the cheetah and the ant; subclasses add their terms."""

    # called on (model, data) right after each env's physics step, in the physics threads
    _after_physics: Callable[[mujoco.MjModel, mujoco.MjData], None] | None = None

    def _advance(
        self, envs: Sequence, actions: np.ndarray, threads: PhysicsThreads | None = None
    ) -> tuple[np.ndarray, ...]:
        """Clip, apply and simulate `actions` [N, nu]; (clipped actions, qpos, qvel, x velocity).

        One pass over the envs with their MjData arrays bound once (`_views`): this
        Python loop is the sampler's hot path around the physics. With `threads`,
        contiguous parts of the envs go to the threads (the same numbers, bitwise).
        """
        count = len(envs)
        if np.shape(actions) != (count, *self.action_space.shape):
            raise ValueError(
                f"{count} env(s) of {type(self).__name__} take actions of shape "
                f"{(count, *self.action_space.shape)} (one env's step: "
                f"{self.action_space.shape}), got {np.shape(actions)}"
            )
        actions = np.clip(actions, self.action_space.low, self.action_space.high)
        x_before = np.empty(count)
        qpos = np.empty((count, self.model.nq))
        qvel = np.empty((count, self.model.nv))
        step, after = mujoco.mj_step, self._after_physics

        def advance(start: int, stop: int) -> None:
            for i in range(start, stop):
                model, data, ctrl, position, velocity, frames = envs[i]._views()
                x_before[i] = position[0]
                ctrl[:] = actions[i]
                step(model, data, frames)
                if after is not None:
                    after(model, data)
                qpos[i] = position
                qvel[i] = velocity

        if threads is None:
            advance(0, count)
        else:
            threads.run(advance, count)
        return actions, qpos, qvel, (qpos[:, 0] - x_before) / self.dt

    def _initialize_simulation(self) -> tuple[mujoco.MjModel, mujoco.MjData]:
        """This env's model and a fresh MjData for it.

        `physics_model` (a constructor argument, for vector envs) is a model to share
        instead of compiling one; it must be the model this env would compile. MuJoCo
        only reads the model while stepping, and a sampler's hundreds of copies stepped
        in turn ran 1.12x (HalfCheetah) and 1.03x (Ant) as fast with one model as with
        a model each (benchmarks/physics_locality.py). Physics is bitwise the same
        (tests/test_vector_env.py).
        """
        model = self._physics_model
        if model is None:
            model = self._compile_model()
        model.vis.global_.offwidth = max(model.vis.global_.offwidth, self.width)
        model.vis.global_.offheight = max(model.vis.global_.offheight, self.height)
        return model, mujoco.MjData(model)

    def _compile_model(self) -> mujoco.MjModel:
        return mujoco.MjModel.from_xml_path(self.fullpath)  # Gymnasium's loader

    def _views(self) -> tuple:
        """(model, data, ctrl, qpos, qvel, frame_skip): numpy views of this env's MjData."""
        views = self.__dict__.get("_data_views")
        if views is None or views[1] is not self.data:
            data = self.data
            views = (self.model, data, data.ctrl, data.qpos, data.qvel, self.frame_skip)
            self._data_views = views
        return views

    def _forward_rewards(self, envs: Sequence, x_velocity: np.ndarray) -> np.ndarray:
        goals = np.array([self.task_family.goal(env._task) for env in envs])
        return self.task_family.forward_reward(goals, x_velocity)

    def _task_features(self, envs: Sequence, observations: np.ndarray) -> np.ndarray:
        if not self.oracle:
            return observations
        features = np.stack([self.task_family.features(env._task) for env in envs])
        return np.concatenate([observations, features], axis=1)

    def step(self, action):
        action = np.asarray(action)
        if action.shape != self.action_space.shape:
            raise ValueError(
                f"{type(self).__name__}.step takes an action of shape "
                f"{self.action_space.shape}, got {action.shape}"
            )
        observations, rewards, terminated, info = self.step_batch([self], action[None])
        info = {key: float(value[0]) for key, value in info.items()}
        return observations[0], float(rewards[0]), bool(terminated[0]), False, info

    def _get_obs(self):
        qpos, qvel = self.data.qpos[None], self.data.qvel[None]
        return self._observations([self], qpos, qvel)[0]


class HalfCheetahTaskEnv(LocomotionMixin, HalfCheetahEnv):
    """HalfCheetah-v5 whose forward reward is the task's.

    reward = reward_forward + reward_ctrl, with reward_ctrl = -0.05 * |a|^2 (the paper's
    weight). Default task: velocity 1.0 / direction +1.
    """

    def __init__(
        self,
        goal: str,
        oracle: bool = False,
        ctrl_cost_weight: float = 0.05,
        physics_model: mujoco.MjModel | None = None,
        **kwargs,
    ):
        self.task_family = _task_family(CHEETAH_TASKS, goal)
        self.oracle = bool(oracle)
        self._physics_model = physics_model
        super().__init__(ctrl_cost_weight=ctrl_cost_weight, **kwargs)
        self.observation_space = self._init_task_api(self.observation_space)

    def _compile_model(self) -> mujoco.MjModel:
        # Gymnasium's loader, minus the deprecation warning its half_cheetah.xml triggers.
        return compile_model(self.fullpath)

    def _observations(self, envs: Sequence, qpos: np.ndarray, qvel: np.ndarray) -> np.ndarray:
        skip = 1 if self._exclude_current_positions_from_observation else 0
        return self._task_features(envs, np.concatenate([qpos[:, skip:], qvel], axis=1))

    def step_batch(
        self, envs: Sequence, actions: np.ndarray, threads: PhysicsThreads | None = None
    ):
        """Step the cheetahs `envs` (self among them or not) with `actions` [N, 6] at once,
        their physics over `threads` if given.

        Returns (observations [N, obs], rewards [N], terminated [N], info of [N] arrays).
        """
        actions, qpos, qvel, x_velocity = self._advance(envs, actions, threads)
        info = {
            "x_position": qpos[:, 0],
            "x_velocity": x_velocity,
            "reward_forward": self._forward_rewards(envs, x_velocity),
            "reward_ctrl": -self._ctrl_cost_weight * np.sum(np.square(actions), axis=1),
        }
        rewards = info["reward_forward"] + info["reward_ctrl"]
        terminated = np.zeros(len(envs), dtype=bool)
        return self._observations(envs, qpos, qvel), rewards, terminated, info


class AntTaskEnv(LocomotionMixin, AntEnv):
    """Ant-v5 whose forward reward is the task's; terminates when unhealthy.

    reward = reward_forward + reward_survive (+1 while healthy: Gymnasium's; the paper's is 0.05)
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
        physics_model: mujoco.MjModel | None = None,
        **kwargs,
    ):
        self.task_family = _task_family(ANT_TASKS, goal)
        self.oracle = bool(oracle)
        self._physics_model = physics_model
        super().__init__(
            ctrl_cost_weight=ctrl_cost_weight,
            include_cfrc_ext_in_observation=include_cfrc_ext_in_observation,
            **kwargs,
        )
        self.observation_space = self._init_task_api(self.observation_space)

    # cfrc_ext: mj_rnePostConstraint computes the contact forces after each physics step
    _after_physics = staticmethod(mujoco.mj_rnePostConstraint)

    def _contact_forces(self, envs: Sequence, computed: bool = False) -> np.ndarray:
        """Clipped external contact forces [N, bodies, 6] (`computed`: already, by `_advance`)."""
        if not computed:
            for env in envs:
                mujoco.mj_rnePostConstraint(env.model, env.data)
        low, high = self._contact_force_range
        return np.clip(np.stack([env.data.cfrc_ext for env in envs]), low, high)

    def _observations(
        self, envs: Sequence, qpos: np.ndarray, qvel: np.ndarray, contact=None
    ) -> np.ndarray:
        skip = 2 if self._exclude_current_positions_from_observation else 0
        parts = [qpos[:, skip:], qvel]
        if self._include_cfrc_ext_in_observation:
            contact = self._contact_forces(envs) if contact is None else contact
            parts.append(contact[:, 1:].reshape(len(envs), -1))
        return self._task_features(envs, np.concatenate(parts, axis=1))

    def step_batch(
        self, envs: Sequence, actions: np.ndarray, threads: PhysicsThreads | None = None
    ):
        """Step the ants `envs` with `actions` [N, 8] at once (see HalfCheetahTaskEnv)."""
        actions, qpos, qvel, x_velocity = self._advance(envs, actions, threads)
        contact = self._contact_forces(envs, computed=True)
        low, high = self._healthy_z_range
        finite = np.isfinite(qpos).all(axis=1) & np.isfinite(qvel).all(axis=1)
        healthy = finite & (low <= qpos[:, 2]) & (qpos[:, 2] <= high)
        info = {
            "x_position": qpos[:, 0],
            "x_velocity": x_velocity,
            "reward_forward": self._forward_rewards(envs, x_velocity),
            "reward_ctrl": -self._ctrl_cost_weight * np.sum(np.square(actions), axis=1),
            "reward_contact": -self._contact_cost_weight
            * np.sum(np.square(contact).reshape(len(envs), -1), axis=1),
            "reward_survive": healthy * self._healthy_reward,
        }
        rewards = (
            info["reward_forward"]
            + info["reward_ctrl"]
            + info["reward_contact"]
            + info["reward_survive"]
        )
        terminated = ~healthy if self._terminate_when_unhealthy else np.zeros_like(healthy)
        return self._observations(envs, qpos, qvel, contact), rewards, terminated, info
