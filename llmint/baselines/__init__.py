"""Baselines for next-category and next-item prediction, in integer token space."""

from .base import Ranker, check_sequences
from .sasrec import SASRec, SASRecConfig
from .simple import LastCategory, Markov, MostPopular, UserMostFrequent

__all__ = [
    "LastCategory",
    "Markov",
    "MostPopular",
    "Ranker",
    "SASRec",
    "SASRecConfig",
    "UserMostFrequent",
    "check_sequences",
]
