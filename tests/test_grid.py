from raysweep.grid import grid_design, random_design
from raysweep.space import Parameter, SearchSpace, config_key

SPACE = SearchSpace(
    (
        Parameter("lr", "log_uniform", min=1e-4, max=1e-2),
        Parameter("gae", "logit_normal", min=0.8, max=0.99, mean=0.95),
        Parameter("steps", "int_log_uniform", min=20_000, max=200_000, mean=50_000),
        Parameter("act", "choice", values=("tanh", "relu")),
    )
)


def _distinct(configs):
    names = list(configs[0])
    return len({config_key(c, names) for c in configs}) == len(configs)


def test_grid_larger_than_budget_runs_a_seeded_space_filling_subset():
    design = grid_design(SPACE, 5, 30, seed=3)
    assert design.full_grid_size == 5 * 5 * 5 * 2
    assert len(design.configs) == 30 and design.filled == 0 and _distinct(design.configs)
    assert grid_design(SPACE, 5, 30, seed=3).configs == design.configs  # reproducible
    # every grid level of every axis is used
    for name in ("lr", "gae", "steps"):
        assert len({c[name] for c in design.configs}) == 5


def test_grid_smaller_than_budget_runs_all_of_it_and_fills_the_rest():
    two = SearchSpace(SPACE.parameters[:2])
    design = grid_design(two, 5, 150, seed=0)  # the guide's 5^2 = 25 grid against a 150-run stage
    assert design.full_grid_size == 25 and design.from_grid == 25 and design.filled == 125
    assert len(design.configs) == 150 and _distinct(design.configs)


def test_space_with_fewer_distinct_configs_than_trials_gives_a_shorter_design():
    tiny = SearchSpace((Parameter("mb", "pow2", min=2, max=8), Parameter("act", "choice", values=("a", "b"))))
    for design in (grid_design(tiny, 5, 50, seed=0), random_design(tiny, 50, seed=0)):
        assert len(design.configs) == 6 and _distinct(design.configs)
        assert "only 6 distinct configs" in design.describe(50)


def test_random_design_is_biased_and_inside_bounds():
    design = random_design(SPACE, 200, seed=0)
    assert len(design.configs) == 200 and _distinct(design.configs)
    assert all(0.8 <= c["gae"] <= 0.99 and 20_000 <= c["steps"] <= 200_000 for c in design.configs)
