"""Feedback: ground truth joined to predictions, performance, degradation and worst segments."""
