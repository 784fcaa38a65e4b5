"""`python -m engine.analyze` keeps working: the command lives in engine/commands/analyze.py."""
import runpy

if __name__ == "__main__":
    runpy.run_module("engine.commands.analyze", run_name="__main__", alter_sys=True)
