"""Prompt templates as data: the method's texts, reproduced byte-exactly from the paper and its code."""
