"""Regenerate OGBench datasets by the published recipe, one episode at a time.

Every episode draws its randomness from ``(seed, episode_index)`` alone, so the result does not
depend on how many worker processes produced it, and a shard can be redone in isolation.
"""

from __future__ import annotations

import numpy as np

from qflow.data.registry import Recipe

# Keys stored per row, in the official files' dtypes.
ROW_DTYPES = {
    "observations": np.float32,
    "actions": np.float32,
    "terminals": bool,
    "qpos": np.float32,
    "qvel": np.float32,
    "button_states": np.int64,
}


def episode_seed(seed: int, episode: int) -> int:
    return int(np.random.SeedSequence([seed, episode]).generate_state(1)[0])


class _ManipspaceCollector:
    """Play data: plan oracles with smoothed noise, a new sub-task whenever one finishes."""

    def __init__(self, recipe: Recipe):
        import gymnasium

        import ogbench.manipspace  # noqa: F401  (registers the envs)
        from ogbench.manipspace.oracles.plan.button_plan import ButtonPlanOracle
        from ogbench.manipspace.oracles.plan.cube_plan import CubePlanOracle
        from ogbench.manipspace.oracles.plan.drawer_plan import DrawerPlanOracle
        from ogbench.manipspace.oracles.plan.window_plan import WindowPlanOracle

        self.recipe = recipe
        self.env = gymnasium.make(
            recipe.env_name,
            terminate_at_goal=False,
            mode="data_collection",
            max_episode_steps=recipe.episode_rows,
        )
        kw = dict(env=self.env, noise=recipe.noise, noise_smoothing=recipe.noise_smoothing)
        name = recipe.env_name
        if name.startswith("cube"):
            self.oracles = {"cube": CubePlanOracle(**kw)}
        elif name.startswith("scene"):
            self.oracles = {
                "cube": CubePlanOracle(**kw),
                "button": ButtonPlanOracle(**kw),
                "drawer": DrawerPlanOracle(**kw),
                "window": WindowPlanOracle(**kw),
            }
        elif name.startswith("puzzle"):
            self.oracles = {"button": ButtonPlanOracle(**kw, gripper_always_closed=True)}
        else:
            raise ValueError(f"no manipspace oracle for {name}")
        self.has_buttons = hasattr(self.env.unwrapped, "_cur_button_states")

    def _stack_probability(self) -> float:
        name = self.recipe.env_name
        if "single" in name:
            return 0.0
        if "double" in name:
            return float(np.random.uniform(0.0, 0.25))
        return 0.5

    def episode(self, seed: int) -> dict[str, np.ndarray]:
        np.random.seed(seed % 2**32)  # the oracles draw from NumPy's global generator
        first_try = True
        while True:  # scene episodes that fail the health check are redrawn
            ob, info = self.env.reset(seed=seed if first_try else None)
            first_try = False
            p_stack = self._stack_probability()
            oracle = self.oracles[info["privileged/target_task"]]
            oracle.reset(ob, info)
            rows = {k: [] for k in ROW_DTYPES if k != "button_states" or self.has_buttons}
            done = False
            while not done:
                action = np.clip(np.asarray(oracle.select_action(ob, info)), -1, 1)
                next_ob, _, terminated, truncated, info = self.env.step(action)
                done = terminated or truncated
                if oracle.done:
                    new_ob, new_info = self.env.unwrapped.set_new_target(p_stack=p_stack)
                    oracle = self.oracles[new_info["privileged/target_task"]]
                    oracle.reset(new_ob, new_info)
                rows["observations"].append(ob)
                rows["actions"].append(action)
                rows["terminals"].append(done)
                rows["qpos"].append(info["prev_qpos"])
                rows["qvel"].append(info["prev_qvel"])
                if self.has_buttons:
                    rows["button_states"].append(info["prev_button_states"])
                ob = next_ob
            if self._healthy(np.asarray(rows["qpos"])):
                return {k: np.asarray(v, dtype=ROW_DTYPES[k]) for k, v in rows.items()}

    def _healthy(self, qpos: np.ndarray) -> bool:
        if not self.recipe.env_name.startswith("scene"):
            return True
        # The cube must stay visible: not too far right, and far left only inside the drawer.
        xyz = qpos[:, 14:17]
        too_right = (xyz[:, 1] >= 0.29).any()
        lost_left = ((xyz[:, 1] <= -0.3) & ((xyz[:, 2] < 0.06) | (xyz[:, 2] > 0.08))).any()
        return not (too_right or lost_left)


class _MazeNavigateCollector:
    """Navigate data: random start cell, goals in vertex cells, new goal whenever reached.

    The low-level action follows the direction to the maze oracle's subgoal: for the point mass it is
    that direction itself; for the ant it is the expert's deterministic action on the ant's state
    without its xy plus that direction (what the expert saw in ``online-ant-xy-v0``). Then Gaussian
    noise (``recipe.noise``), clipped to [-1, 1]."""

    def __init__(self, recipe: Recipe, expert=None):
        import gymnasium

        import ogbench.locomaze  # noqa: F401

        if recipe.kind == "antmaze" and expert is None:
            raise ValueError(f"{recipe.env_name} data needs the ant expert (pass --expert)")
        self.recipe, self.expert = recipe, expert
        self._subgoals = {}  # (cell, goal cell) -> oracle subgoal xy
        self.env = gymnasium.make(recipe.env_name, terminate_at_goal=False, max_episode_steps=recipe.episode_rows)
        maze = self.env.unwrapped.maze_map
        self.free_cells, self.vertex_cells = [], []
        for i in range(maze.shape[0]):
            for j in range(maze.shape[1]):
                if maze[i, j] != 0:
                    continue
                self.free_cells.append((i, j))
                vertical_corridor = maze[i - 1, j] == 0 and maze[i + 1, j] == 0 and maze[i, j - 1] == 1 and maze[i, j + 1] == 1
                horizontal_corridor = maze[i, j - 1] == 0 and maze[i, j + 1] == 0 and maze[i - 1, j] == 1 and maze[i + 1, j] == 1
                if not (vertical_corridor or horizontal_corridor):
                    self.vertex_cells.append((i, j))

    def _subgoal_direction(self) -> np.ndarray:
        """Unit vector to the oracle's subgoal. The oracle (a BFS over the maze in Python, every step)
        depends only on the current and goal cells, so its answers are memoised: same values, faster."""
        env = self.env.unwrapped
        xy = env.get_xy()
        key = (env.xy_to_ij(xy), env.xy_to_ij(env.cur_goal_xy))
        if key not in self._subgoals:
            self._subgoals[key] = env.get_oracle_subgoal(xy, env.cur_goal_xy)[0]
        direction = self._subgoals[key] - xy
        return direction / (np.linalg.norm(direction) + 1e-6)

    def _base_action(self, direction: np.ndarray) -> np.ndarray:
        if self.expert is None:
            return direction
        states = self.env.unwrapped.get_ob(ob_type="states")
        return self.expert.act(np.concatenate([states[2:], direction])[None])[0]

    def episode(self, seed: int) -> dict[str, np.ndarray]:
        rng = np.random.default_rng(seed)
        np.random.seed(seed % 2**32)  # the maze's reset draws start noise from NumPy's global generator
        self.env.action_space.seed(seed)  # ... and takes a few random settling actions
        env = self.env.unwrapped
        action_dim = self.env.action_space.shape[0]
        start = self.free_cells[rng.integers(len(self.free_cells))]
        goal = self.vertex_cells[rng.integers(len(self.vertex_cells))]
        ob, _ = self.env.reset(seed=seed, options=dict(task_info=dict(init_ij=start, goal_ij=goal)))
        rows = {k: [] for k in ROW_DTYPES if k != "button_states"}
        done = False
        while not done:
            direction = self._subgoal_direction()
            noise = rng.normal(0.0, self.recipe.noise, size=action_dim)
            action = np.clip(self._base_action(direction) + noise, -1, 1)
            next_ob, _, terminated, truncated, info = self.env.step(action)
            done = terminated or truncated
            if info["success"]:
                env.set_goal(self.vertex_cells[rng.integers(len(self.vertex_cells))])
            rows["observations"].append(ob)
            rows["actions"].append(action)
            rows["terminals"].append(done)
            rows["qpos"].append(info["prev_qpos"])
            rows["qvel"].append(info["prev_qvel"])
            ob = next_ob
        return {k: np.asarray(v, dtype=ROW_DTYPES[k]) for k, v in rows.items()}


def make_collector(recipe: Recipe, expert=None):
    """The collector for ``recipe``; ``expert`` (a ``qflow.agents.expert_policy.Expert``) drives the ant."""
    from qflow.utils import quiet_env_warnings

    quiet_env_warnings()
    if recipe.kind == "manipspace":
        return _ManipspaceCollector(recipe)
    if recipe.kind in ("pointmaze", "antmaze"):
        return _MazeNavigateCollector(recipe, expert)
    raise ValueError(f"unknown recipe kind {recipe.kind!r}")
