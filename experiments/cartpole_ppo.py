"""Clipped-objective PPO on gymnasium's CartPole-v1: the raysweep quickstart trainable.

One code path serves both of raysweep's trainable modes.  Ray Tune calls
:func:`train` in-process and receives metrics through ``ray.tune.report``; the
external-``command`` mode runs ``python -m experiments.cartpole_ppo --...``,
which calls the same :func:`train` and emits the metrics as JSON lines on
stdout.  Keeping a single implementation means both modes are demonstrated on
identical learning dynamics.

The quickstart sweep has to finish in minutes on two CPU cores, so the
implementation favours low fixed overhead over generality:

* gymnasium's numpy-native ``CartPoleVectorEnv`` steps all environments in a
  single call instead of looping over per-environment Python objects;
* acting needs only the policy logits (one small forward pass without
  autograd per vector step); old log-probabilities and values are recomputed
  for the whole rollout in one batched pass afterwards;
* actions are drawn with the Gumbel-max trick from a seeded numpy generator,
  which is cheaper than building a ``torch.distributions`` object every step;
* Adam uses the fused CPU kernel and torch runs single-threaded, so two trials
  can share two cores without oversubscribing them.
"""

from __future__ import annotations

import argparse
import json
import math
import numbers
import sys
import warnings
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import gymnasium as gym
import numpy as np
import torch
from torch import nn

ENV_ID = "CartPole-v1"
NUM_ENVS = 8
"""Parallel environments; more of them amortise the per-step Python overhead."""
ROLLOUT_STEPS = 128
"""Vector steps per rollout, so one PPO update consumes NUM_ENVS * ROLLOUT_STEPS env steps."""
UPDATE_EPOCHS = 4
"""Passes over each rollout; the common PPO default for classic control."""
MAX_GRAD_NORM = 0.5
HIDDEN_SIZE = 64
RETURN_WINDOW = 20
"""Completed episodes averaged into ``episode_return_mean``."""
TARGET_REPORTS = 20
"""Upper bound on metric reports per run (short runs report after every update).

Inside Tune every report blocks the trial until the driver has consumed the
result, so reporting after each of the ~100 updates of a long run would spend
noticeable wall time on round trips; about twenty points are plenty for early
stopping and for plotting learning curves.
"""

Activation = Literal["tanh", "relu"]
_ACTIVATIONS: dict[Activation, type[nn.Module]] = {"tanh": nn.Tanh, "relu": nn.ReLU}

Metrics = dict[str, float | int]
Reporter = Callable[[Metrics], None]


@dataclass(frozen=True)
class PPOConfig:
    """The tunable knobs of :func:`train`, validated once up front.

    Sweeps hand over whatever their search space produced (numpy scalars,
    floats for integer-valued fidelities, ...), so values are coerced here and
    bad ones fail before any compute is spent.
    """

    learning_rate: float
    gae_lambda: float
    ent_coef: float
    num_minibatches: int
    activation: Activation
    total_timesteps: int
    gamma: float = 0.99
    clip_coef: float = 0.2
    vf_coef: float = 0.5
    seed: int = 0

    @classmethod
    def from_mapping(cls, config: Mapping[str, Any]) -> PPOConfig:
        """Build a config from a sweep's dict, ignoring keys PPO does not use.

        Unknown keys are ignored rather than rejected because raysweep may add
        bookkeeping entries to the trial config.
        """
        required = (
            "learning_rate",
            "gae_lambda",
            "ent_coef",
            "num_minibatches",
            "activation",
            "total_timesteps",
        )
        missing = [key for key in required if key not in config]
        if missing:
            raise KeyError(f"cartpole_ppo config is missing required keys: {missing}")

        parsed = cls(
            learning_rate=float(config["learning_rate"]),
            gae_lambda=float(config["gae_lambda"]),
            ent_coef=float(config["ent_coef"]),
            num_minibatches=_as_int("num_minibatches", config["num_minibatches"]),
            activation=_as_activation(config["activation"]),
            total_timesteps=_as_int("total_timesteps", config["total_timesteps"]),
            gamma=float(config.get("gamma", cls.gamma)),
            clip_coef=float(config.get("clip_coef", cls.clip_coef)),
            vf_coef=float(config.get("vf_coef", cls.vf_coef)),
            seed=_as_int("seed", config.get("seed", cls.seed)),
        )
        parsed._validate()
        return parsed

    def _validate(self) -> None:
        if self.learning_rate <= 0:
            raise ValueError(f"learning_rate must be positive, got {self.learning_rate}")
        for name in ("gae_lambda", "gamma"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must lie in [0, 1], got {value}")
        for name in ("ent_coef", "clip_coef", "vf_coef"):
            value = getattr(self, name)
            if value < 0:
                raise ValueError(f"{name} must be non-negative, got {value}")
        batch_size = NUM_ENVS * ROLLOUT_STEPS
        if not 1 <= self.num_minibatches <= batch_size // 2:
            raise ValueError(
                f"num_minibatches must lie in [1, {batch_size // 2}], got {self.num_minibatches}"
            )
        if self.total_timesteps < 1:
            raise ValueError(f"total_timesteps must be positive, got {self.total_timesteps}")
        if self.seed < 0:
            raise ValueError(f"seed must be non-negative, got {self.seed}")


def _as_int(name: str, value: object) -> int:
    """Coerce sweep-produced numbers (``4``, ``np.int64(4)``, ``4.0``, ``33333.3``) to ``int``.

    Integers pass through exactly (seeds can exceed float precision); other
    finite reals are rounded, since fidelity schedules may compute budgets as
    floats.
    """
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real) and math.isfinite(value):
        return round(float(value))
    raise ValueError(f"{name} must be an integer, got {value!r}")


def _as_activation(value: object) -> Activation:
    if value not in _ACTIVATIONS:
        raise ValueError(f"activation must be one of {sorted(_ACTIVATIONS)}, got {value!r}")
    return value


class ActorCritic(nn.Module):
    """Separate policy and value MLPs with two hidden layers each.

    Separate networks are the usual choice for classic-control PPO: the value
    regression cannot distort the policy's features, which keeps the loss
    coefficients from having outsized, hard-to-interpret effects.
    """

    def __init__(self, obs_dim: int, num_actions: int, activation: Activation) -> None:
        super().__init__()
        self.actor = _mlp(obs_dim, num_actions, activation, output_gain=0.01)
        self.critic = _mlp(obs_dim, 1, activation, output_gain=1.0)

    def logits(self, obs: torch.Tensor) -> torch.Tensor:
        """Unnormalised action log-probabilities, shape ``(batch, num_actions)``."""
        logits: torch.Tensor = self.actor(obs)
        return logits

    def value(self, obs: torch.Tensor) -> torch.Tensor:
        """State-value estimates, shape ``(batch,)``."""
        values: torch.Tensor = self.critic(obs)
        return values.squeeze(-1)


def _mlp(in_dim: int, out_dim: int, activation: Activation, output_gain: float) -> nn.Sequential:
    """Build an orthogonally initialised ``in -> 64 -> 64 -> out`` MLP.

    Orthogonal hidden weights keep activations well scaled from the start, and
    the small policy-head gain makes the initial policy nearly uniform so early
    rollouts explore both actions.
    """
    hidden_gain = nn.init.calculate_gain(activation)
    layers: list[nn.Module] = []
    widths = [in_dim, HIDDEN_SIZE, HIDDEN_SIZE]
    for fan_in, fan_out in zip(widths[:-1], widths[1:], strict=True):
        layers += [_orthogonal_linear(fan_in, fan_out, hidden_gain), _ACTIVATIONS[activation]()]
    layers.append(_orthogonal_linear(HIDDEN_SIZE, out_dim, output_gain))
    return nn.Sequential(*layers)


def _orthogonal_linear(fan_in: int, fan_out: int, gain: float) -> nn.Linear:
    layer = nn.Linear(fan_in, fan_out)
    nn.init.orthogonal_(layer.weight, gain)
    nn.init.zeros_(layer.bias)
    return layer


@dataclass
class Rollout:
    """Numpy storage for one rollout of ``steps`` vector steps over ``num_envs`` envs.

    ``obs`` has one extra row: the observation after the last step, needed to
    bootstrap the value of unfinished episodes.

    The vector env uses gymnasium's next-step autoreset: the step after an
    episode ends only resets that sub-environment, ignores the action and
    yields reward 0.  Such steps are marked invalid and excluded from the PPO
    loss, because their action had no consequence to learn from.
    """

    obs: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    terminated: np.ndarray
    done: np.ndarray
    valid: np.ndarray

    @classmethod
    def empty(cls, steps: int, num_envs: int, obs_dim: int) -> Rollout:
        """Allocate the buffers once per run; every rollout overwrites them in place."""
        return cls(
            obs=np.zeros((steps + 1, num_envs, obs_dim), dtype=np.float32),
            actions=np.zeros((steps, num_envs), dtype=np.int64),
            rewards=np.zeros((steps, num_envs), dtype=np.float32),
            terminated=np.zeros((steps, num_envs), dtype=bool),
            done=np.zeros((steps, num_envs), dtype=bool),
            valid=np.zeros((steps, num_envs), dtype=bool),
        )


def compute_gae(
    rollout: Rollout, values: np.ndarray, gamma: float, gae_lambda: float
) -> np.ndarray:
    """Generalised advantage estimates for every stored transition.

    ``values`` holds V(obs) for all ``steps + 1`` observation rows.  Because of
    next-step autoreset, the row after a finished episode still contains that
    episode's final observation, so a time-limit truncation can be bootstrapped
    from V(final obs) while a true termination contributes no future value.
    The recursion is cut at every episode end, so the invalid reset steps never
    leak into the advantages of real transitions.
    """
    steps = rollout.rewards.shape[0]
    advantages = np.zeros_like(rollout.rewards)
    next_advantage = np.zeros(rollout.rewards.shape[1], dtype=np.float32)
    for t in reversed(range(steps)):
        next_value = values[t + 1] * ~rollout.terminated[t]
        delta = rollout.rewards[t] + gamma * next_value - values[t]
        next_advantage = delta + gamma * gae_lambda * ~rollout.done[t] * next_advantage
        advantages[t] = next_advantage
    return advantages


def _sample_actions(logits: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Draw one categorical sample per row via the Gumbel-max trick."""
    actions: np.ndarray = np.argmax(logits + rng.gumbel(size=logits.shape), axis=1)
    return actions


def _print_json_line(metrics: Metrics) -> None:
    """Report outside Tune: one JSON object per line, flushed so a parent process sees it live."""
    sys.stdout.write(json.dumps(metrics) + "\n")
    sys.stdout.flush()


def _select_reporter() -> Reporter:
    """Return ``ray.tune.report`` inside a Tune trial, a JSON-line printer otherwise.

    A Tune trial always runs in a worker that has already imported
    ``ray.tune`` (the function-trainable wrapper lives there), so when it is
    absent from ``sys.modules`` we skip the ~2 s ray import entirely; this
    keeps the CLI and the standalone path fast.  Otherwise the public
    ``ray.tune.get_context().get_trial_id()`` tells us whether a trial session
    exists.  Outside a session it returns ``None`` after emitting a
    "meant to only be called inside a Tuner" warning; that warning is the
    expected answer to our question, so it is silenced locally.
    """
    if "ray.tune" not in sys.modules:
        return _print_json_line
    import ray.tune

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trial_id = ray.tune.get_context().get_trial_id()
    if trial_id is None:
        return _print_json_line
    tune_report: Reporter = ray.tune.report
    return tune_report


def train(config: Mapping[str, Any], report: Reporter | None = None) -> None:
    """Train PPO on CartPole-v1 and report learning progress along the way.

    Each report carries ``episode_return_mean`` (mean undiscounted return of
    the last ``RETURN_WINDOW`` completed episodes), ``episode_return_auc``
    (that value averaged over every update so far, i.e. the normalised area
    under the learning curve; it still separates configs once several of them
    reach CartPole's cap of 500, by rewarding the ones that got there sooner),
    ``timesteps`` (env steps collected so far, counting every
    sub-environment), ``episodes`` and ``updates``.

    Runtime is linear in ``total_timesteps``, which is rounded up to whole
    rollouts of ``NUM_ENVS * ROLLOUT_STEPS`` steps.  Results are deterministic
    for a given ``seed``, and with the constant learning rate a shorter run is
    an exact prefix of a longer one.

    ``report`` receives each report in place of Tune's ``report`` (or the
    JSON-line printer outside Tune); an exception it raises ends the run, which
    is how a caller outside Tune prunes a run early.
    """
    cfg = PPOConfig.from_mapping(config)
    report = report or _select_reporter()
    torch.set_num_threads(1)
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)

    envs = gym.make_vec(ENV_ID, num_envs=NUM_ENVS, vectorization_mode="vector_entry_point")
    try:
        _run_ppo(cfg, envs, rng, report)
    finally:
        envs.close()


def _run_ppo(
    cfg: PPOConfig, envs: gym.vector.VectorEnv, rng: np.random.Generator, report: Reporter
) -> None:
    """Run the PPO loop proper: alternate rollouts and clipped-objective updates."""
    obs, _ = envs.reset(seed=cfg.seed)
    obs_dim = obs.shape[1]
    assert isinstance(envs.single_action_space, gym.spaces.Discrete)
    num_actions = int(envs.single_action_space.n)
    agent = ActorCritic(obs_dim, num_actions, cfg.activation)
    # Fused Adam is several times faster than the default per-tensor loop for
    # these tiny tensors, where per-op overhead dominates.  The learning rate
    # stays constant (no annealing) on purpose: then the first N steps of a
    # run do not depend on ``total_timesteps``, so a low-fidelity trial is an
    # exact prefix of a high-fidelity one with the same config and seed, which
    # is what multi-fidelity sweeps implicitly assume.
    optimizer = torch.optim.Adam(agent.parameters(), lr=cfg.learning_rate, eps=1e-5, fused=True)

    batch_size = NUM_ENVS * ROLLOUT_STEPS
    num_updates = math.ceil(cfg.total_timesteps / batch_size)
    report_every = math.ceil(num_updates / TARGET_REPORTS)

    rollout = Rollout.empty(ROLLOUT_STEPS, NUM_ENVS, obs_dim)
    stats = EpisodeStats(NUM_ENVS)
    prev_done = np.zeros(NUM_ENVS, dtype=bool)
    return_curve_sum = 0.0

    for update in range(1, num_updates + 1):
        obs, prev_done = _collect_rollout(agent, envs, obs, prev_done, rollout, stats, rng)
        _update(agent, optimizer, rollout, cfg, rng)
        mean_return = stats.mean_return()
        return_curve_sum += mean_return

        if update % report_every == 0 or update == num_updates:
            report(
                {
                    "episode_return_mean": mean_return,
                    "episode_return_auc": return_curve_sum / update,
                    "timesteps": update * batch_size,
                    "episodes": stats.episodes,
                    "updates": update,
                }
            )


class EpisodeStats:
    """Undiscounted episode returns, accumulated across rollout boundaries."""

    def __init__(self, num_envs: int) -> None:
        self.episodes = 0
        self._running = np.zeros(num_envs, dtype=np.float64)
        self._recent: deque[float] = deque(maxlen=RETURN_WINDOW)

    def record(self, rewards: np.ndarray, done: np.ndarray) -> None:
        """Add one vector step; next-step autoreset steps carry reward 0, so they are harmless."""
        self._running += rewards
        if done.any():
            self._recent.extend(self._running[done].tolist())
            self.episodes += int(done.sum())
            self._running[done] = 0.0

    def mean_return(self) -> float:
        """Mean return of the last ``RETURN_WINDOW`` completed episodes.

        Before the first episode ends there is nothing to average; the return
        accumulated so far by the unfinished episodes is then reported as the
        honest lower bound.  (An untrained CartPole policy ends episodes within
        the first rollout, so this only matters for toy budgets.)
        """
        if self._recent:
            return float(np.mean(self._recent))
        return float(self._running.mean())


def _collect_rollout(
    agent: ActorCritic,
    envs: gym.vector.VectorEnv,
    obs: np.ndarray,
    prev_done: np.ndarray,
    rollout: Rollout,
    stats: EpisodeStats,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """Fill ``rollout`` in place and return the env state needed to continue.

    ``prev_done`` is threaded through because an episode ending on the last
    step of one rollout makes the first step of the next one a reset step.
    """
    steps = rollout.actions.shape[0]
    with torch.inference_mode():
        for t in range(steps):
            rollout.obs[t] = obs
            logits = agent.logits(torch.from_numpy(obs)).numpy()
            actions = _sample_actions(logits, rng)
            obs, rewards, terminated, truncated, _ = envs.step(actions)
            done = terminated | truncated

            rollout.actions[t] = actions
            rollout.rewards[t] = rewards
            rollout.terminated[t] = terminated
            rollout.done[t] = done
            rollout.valid[t] = ~prev_done
            prev_done = done
            stats.record(rewards, done)
    rollout.obs[steps] = obs
    return obs, prev_done


def _update(
    agent: ActorCritic,
    optimizer: torch.optim.Optimizer,
    rollout: Rollout,
    cfg: PPOConfig,
    rng: np.random.Generator,
) -> None:
    """Run ``UPDATE_EPOCHS`` epochs of clipped-objective minibatch SGD on one rollout."""
    steps, num_envs = rollout.actions.shape
    obs_dim = rollout.obs.shape[2]
    all_obs = torch.from_numpy(rollout.obs.reshape(-1, obs_dim))
    with torch.no_grad():
        values = agent.value(all_obs).numpy().reshape(steps + 1, num_envs)
        log_probs = torch.log_softmax(agent.logits(all_obs[: steps * num_envs]), dim=-1)
    advantages = compute_gae(rollout, values, cfg.gamma, cfg.gae_lambda)
    returns = advantages + values[:steps]

    # Flatten (step, env) into one sample axis and drop the reset steps.
    valid = torch.from_numpy(rollout.valid.reshape(-1))
    b_obs = all_obs[: steps * num_envs][valid]
    b_actions = torch.from_numpy(rollout.actions.reshape(-1))[valid]
    b_old_log_probs = log_probs[valid].gather(1, b_actions.unsqueeze(1)).squeeze(1)
    b_advantages = torch.from_numpy(advantages.reshape(-1))[valid]
    b_returns = torch.from_numpy(returns.reshape(-1))[valid]

    num_samples = b_obs.shape[0]
    for _ in range(UPDATE_EPOCHS):
        for indices in np.array_split(rng.permutation(num_samples), cfg.num_minibatches):
            index = torch.from_numpy(indices)
            loss = _ppo_loss(
                agent,
                cfg,
                b_obs[index],
                b_actions[index],
                b_old_log_probs[index],
                b_advantages[index],
                b_returns[index],
            )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()  # type: ignore[no-untyped-call]
            nn.utils.clip_grad_norm_(agent.parameters(), MAX_GRAD_NORM)
            optimizer.step()


def _ppo_loss(
    agent: ActorCritic,
    cfg: PPOConfig,
    obs: torch.Tensor,
    actions: torch.Tensor,
    old_log_probs: torch.Tensor,
    advantages: torch.Tensor,
    returns: torch.Tensor,
) -> torch.Tensor:
    """Clipped surrogate policy loss + weighted value loss - entropy bonus.

    Advantages are normalised per minibatch so the policy step size does not
    depend on the (changing) scale of returns.
    """
    log_probs = torch.log_softmax(agent.logits(obs), dim=-1)
    new_log_probs = log_probs.gather(1, actions.unsqueeze(1)).squeeze(1)
    entropy = -(log_probs.exp() * log_probs).sum(dim=-1).mean()

    ratio = torch.exp(new_log_probs - old_log_probs)
    advantages = (advantages - advantages.mean()) / (advantages.std() + 1e-8)
    unclipped = ratio * advantages
    clipped = ratio.clamp(1.0 - cfg.clip_coef, 1.0 + cfg.clip_coef) * advantages
    policy_loss = -torch.min(unclipped, clipped).mean()

    value_loss = 0.5 * (agent.value(obs) - returns).pow(2).mean()
    return policy_loss - cfg.ent_coef * entropy + cfg.vf_coef * value_loss


def _parse_args(argv: Sequence[str] | None) -> dict[str, Any]:
    """Mirror :class:`PPOConfig` on the command line (external-command trainable mode)."""
    parser = argparse.ArgumentParser(
        prog="python -m experiments.cartpole_ppo",
        description="Train PPO on CartPole-v1 and print metrics as JSON lines on stdout.",
    )
    parser.add_argument("--learning_rate", type=float, required=True)
    parser.add_argument("--gae_lambda", type=float, required=True)
    parser.add_argument("--ent_coef", type=float, required=True)
    parser.add_argument("--num_minibatches", type=int, required=True)
    parser.add_argument("--activation", choices=sorted(_ACTIVATIONS), required=True)
    parser.add_argument("--total_timesteps", type=int, required=True)
    parser.add_argument("--gamma", type=float, default=PPOConfig.gamma)
    parser.add_argument("--clip_coef", type=float, default=PPOConfig.clip_coef)
    parser.add_argument("--vf_coef", type=float, default=PPOConfig.vf_coef)
    parser.add_argument("--seed", type=int, default=PPOConfig.seed)
    return vars(parser.parse_args(argv))


def main(argv: Sequence[str] | None = None) -> None:
    """CLI entry point; stdout carries nothing but the JSON metric lines."""
    train(_parse_args(argv))


if __name__ == "__main__":
    main()
