"""Leaderboards, terminal tables and report files, all built from trial records."""
