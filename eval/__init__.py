"""Relevance evaluation: BEIR data, graded metrics, reports and the labelling loop."""
