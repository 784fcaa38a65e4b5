"""`python -m engine.pairwise` keeps working: the command lives in engine/commands/pairwise.py."""
import runpy

if __name__ == "__main__":
    runpy.run_module("engine.commands.pairwise", run_name="__main__", alter_sys=True)
