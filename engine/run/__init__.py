"""Running a recipe: the Ray-free round loop, the Ray executor, the stage chain, counts, accounting and the summary."""
