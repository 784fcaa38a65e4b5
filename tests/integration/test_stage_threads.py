"""Stage actors run their batches on the thread that built the stage chain (runner.stage_pool).

Ray Data's default for a callable class builds it on the actor's main thread and calls it on a helper thread.
torch's OpenMP then holds a thread team per calling thread, and with more OpenMP threads than cores libgomp
stops spinning between parallel regions: on 2 cores the same generate() ran 1.4x slower in wall time. The
runner's pools must keep loading and calling on one thread."""

import threading

import numpy as np
import ray

from engine.run.runner import stage_pool


def test_pool_actors_call_on_the_thread_that_built_them(local_ray):
    class ThreadProbe:  # defined here, so Ray ships it by value (the test module is not importable in workers)
        """Answers, for every row, whether the call ran on the thread that constructed the probe."""

        def __init__(self):
            self.built_on = threading.get_ident()

        def __call__(self, batch):
            return {"same_thread": np.full(len(batch["id"]), threading.get_ident() == self.built_on)}

    ds = ray.data.range(6, override_num_blocks=3).map_batches(ThreadProbe, batch_size=2, compute=stage_pool(1),
                                                              num_cpus=0.25)
    rows = ds.take_all()
    assert len(rows) == 6 and all(row["same_thread"] for row in rows)
