"""`python -m engine.bench` keeps working: the command lives in engine/commands/bench.py."""
import runpy

if __name__ == "__main__":
    runpy.run_module("engine.commands.bench", run_name="__main__", alter_sys=True)
