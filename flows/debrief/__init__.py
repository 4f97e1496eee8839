"""Debrief prompts: reflection after the gathering, reminders, a collated report."""
