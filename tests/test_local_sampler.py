"""The local sampler's determinism: its rollouts do not depend on how many envs or threads
step at once, on the tasks beside a task, or on how the tasks are chunked; its advantages
are its own rollouts'; another seed gives other rollouts."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers import assert_meta_batches_equal, small_navigation_config

from metarl.episodes import MetaBatch
from metarl.experiment import build_policy, iteration_tasks, sampler_settings
from metarl.policies import GaussianMLPPolicy, gaussian_mlp, policy_params
from metarl.sampling.local import LocalSampler
from metarl.sampling.meta_batch import sample_meta_batch
from metarl.sampling.rollouts import WaveActions, make_vector_env
from metarl.value_baseline import estimate_advantages

small_config = small_navigation_config


@pytest.mark.parametrize("env_id", ["metarl/Navigation2D-v0", "metarl/HalfCheetahVel-v0"])
def test_local_sampler_result_does_not_depend_on_envs_or_threads_stepped_at_once(env_id):
    config = small_config(env=env_id, inner_steps=2, horizon=15, rollouts_per_task=3)
    policy = build_policy(config)
    params = policy_params(policy)
    tasks = iteration_tasks(config, iteration=0)
    batches = []
    # one task per wave, two per wave, the whole meta-batch; and its physics over 2 threads
    shapes = [(3, 1), (6, 1), (12, 1)] + [(12, 2)] * ("Cheetah" in env_id)
    for num_envs, threads in shapes:
        sampler = LocalSampler(sampler_settings(config), policy, num_envs, threads)
        batches.append(sampler.sample(params, tasks, iteration=0))
        sampler.close()
    for batch in batches[1:]:
        assert_meta_batches_equal(batches[0], batch)
    # the inner steps changed the policy: post-adaptation rollouts differ from theta's
    assert not torch.equal(batches[0].train[0].actions, batches[0].valid.actions)


@pytest.mark.parametrize(
    "rollouts, observation_dim, hidden_sizes, activation, context",
    [
        (3, 17, [16, 16], "tanh", 0),  # shapes where unpadded baddbmm changed with the batch
        (2, 17, [100, 100], "relu", 0),
        (20, 2, [64, 64], "tanh", 0),
        (40, 27, [100, 100], "relu", 0),
        (5, 2, [16], "tanh", 4),
    ],
)
def test_a_tasks_actions_do_not_depend_on_the_tasks_beside_it(
    rollouts, observation_dim, hidden_sizes, activation, context
):
    """WaveActions computes each task's actions bitwise alike alone and in any wave."""
    policy = GaussianMLPPolicy(observation_dim, 6, hidden_sizes, activation, 0.0, context)
    generator = torch.Generator().manual_seed(0)
    rng = np.random.default_rng(0)
    reference = None
    for size in (1, 2, 3, 5, 8, 13):
        for position in sorted({0, size // 2, size - 1}):
            # per-task parameters (as after an inner step), the same for our task
            stacks = {
                n: torch.randn(size, *p.shape, generator=generator)
                for n, p in policy.named_parameters()
            }
            for n, p in policy.named_parameters():
                stacks[n][position] = p.detach() * 1.5
            noise = rng.standard_normal((size, rollouts, 4, 6)).astype(np.float32)
            noise[position] = np.linspace(-1, 1, rollouts * 24, dtype=np.float32).reshape(
                rollouts, 4, 6
            )
            observations = rng.standard_normal((size, rollouts, observation_dim)).astype(np.float32)
            observations[position] = np.cos(np.arange(rollouts * observation_dim)).reshape(
                rollouts, observation_dim
            )
            actions = WaveActions(policy, stacks, range(size), noise)(observations, 2)[position]
            if reference is None:
                reference = actions
            assert torch.equal(actions, reference), (size, position)
    # and the padded batched computation is the policy's own (up to rounding)
    params = {n: p.detach() * 1.5 for n, p in policy.named_parameters()}
    obs = torch.from_numpy(np.cos(np.arange(rollouts * observation_dim, dtype=np.float32)))
    mean, log_std = gaussian_mlp(params, obs.reshape(rollouts, observation_dim), activation)
    eps = torch.linspace(-1, 1, rollouts * 24).reshape(rollouts, 4, 6)[:, 2]
    torch.testing.assert_close(reference, mean + eps * log_std.exp(), rtol=1e-5, atol=1e-5)


def test_tasks_sampled_in_chunks_equal_the_whole_meta_batch():
    """What the Ray sampler relies on: a task's rollouts depend on its id, not its companions."""
    config = small_config(inner_steps=2)
    policy = build_policy(config)
    params = policy_params(policy)
    settings = sampler_settings(config)
    tasks = iteration_tasks(config, iteration=1)
    env = make_vector_env(config.env, 20, settings.horizon)
    whole = sample_meta_batch(env, policy, params, tasks, np.arange(4), 1, settings)
    chunks = [
        sample_meta_batch(env, policy, params, tasks[i:j], np.arange(i, j), 1, settings)
        for i, j in [(0, 1), (1, 3), (3, 4)]
    ]
    env.close()
    assert_meta_batches_equal(whole, MetaBatch.concatenate(chunks))


@pytest.mark.parametrize("env_id", ["metarl/Navigation2D-v0", "metarl/AntDir-v0"])
def test_sampler_hands_over_the_advantages_of_its_own_rollouts(env_id):
    """Advantages are computed once, by the sampler: they are GAE against the value
    baseline fitted per task on the very rollouts they come with."""
    config = small_config(env=env_id, horizon=30, rollouts_per_task=4)
    policy = build_policy(config)
    sampler = LocalSampler(sampler_settings(config), policy, 16)
    batch = sampler.sample(policy_params(policy), iteration_tasks(config, 0), 0)
    sampler.close()
    for rollouts in batch.phases:
        for task in range(rollouts.num_tasks):
            one = rollouts.select([task])
            expected, explained = estimate_advantages(
                one.observations, one.rewards, one.mask, config.gamma, config.gae_lambda, True
            )
            torch.testing.assert_close(one.advantages, expected.float(), rtol=0, atol=1e-6)
            torch.testing.assert_close(one.explained_variance, explained)
        assert (rollouts.advantages[rollouts.mask == 0] == 0).all()
        # the reward terms add up to the rewards
        terms = sum(rollouts.reward_terms.values())
        torch.testing.assert_close(terms.float(), rollouts.episode_returns(), rtol=1e-5, atol=1e-4)


def test_different_seeds_give_different_rollouts():
    policy = build_policy(small_config())
    params = policy_params(policy)
    batches = []
    for seed in (0, 1):
        config = small_config(seed=seed)
        tasks = [{"goal": [0.2, -0.3]}] * 4
        sampler = LocalSampler(sampler_settings(config), policy, 20)
        batches.append(sampler.sample(params, tasks, iteration=0))
        sampler.close()
    assert not torch.equal(batches[0].valid.actions, batches[1].valid.actions)
