"""The skeleton stage: one day of spine rows with point-in-time features and windows."""

from daedalus.skeleton.stage import DayResult, run_skeleton_stage

__all__ = ["DayResult", "run_skeleton_stage"]
