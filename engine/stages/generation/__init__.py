"""Stages that write text with the evolver or responder: evolve, auto-evolve, eliminate, respond, optimize."""
