"""The demo story: simulated participants on embedded defaults."""
