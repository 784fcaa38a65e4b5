"""`python -m engine.export` keeps working: the command lives in engine/commands/export.py."""
import runpy

if __name__ == "__main__":
    runpy.run_module("engine.commands.export", run_name="__main__", alter_sys=True)
