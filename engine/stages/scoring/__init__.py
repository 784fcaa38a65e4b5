"""Stages that score and select: IFD / IC-IFD scoring and the selection cut."""
